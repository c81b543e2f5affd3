"""Checking the user's overrides and the composed config before anything heavy starts.

Two steps, both free of torch and Lightning imports:

* :func:`check_overrides` composes the command line's overrides the way Hydra will. The
  config schema (:mod:`dlbasics.config.schema`) makes Hydra refuse an unknown key or a value
  of the wrong type, in a config file or on the command line; its refusal, and an unknown
  option, become one line here that names the key, the value and what works, with the
  closest valid key or option.
* :func:`check_config` checks what a type cannot say: ranges (a learning rate above 0,
  fractions in [0, 1)), the names a string may take (activation, accelerator), keys that
  depend on each other (a validation split for early stopping), the devices of this machine.

Both raise :class:`dlbasics.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from numbers import Number
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    ConfigTypeError,
    OmegaConfBaseException,
)

from dlbasics.config.members import is_stacked, seeds_of, varied
from dlbasics.config.schema import ACTIVATIONS, AUGMENTATIONS, SCHEMAS, keys_of
from dlbasics.config.schema import Data as DATA_DEFAULTS
from dlbasics.config.tree import CONFIG_DIR, group_options
from dlbasics.errors import ConfigError
from dlbasics.search.hparams import search_selected, sweep_values, usable_cores
from dlbasics.training.objective import check_direction, check_metric, objective_settings

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
MATMUL_PRECISIONS = ("highest", "high", "medium")


# -- overrides -------------------------------------------------------------------------


def check_overrides(
    overrides: list[str], config_dirs: Iterable[str] = (), here: bool = True
) -> list[DictConfig]:
    """Raise :class:`ConfigError` if the overrides would not compose, or if a config they
    select has a value that cannot work (see :func:`check_config`); else return the
    composed configs (one, or one per value of a sweep).

    A sweep (``-m model=linreg,mlp optimizer.lr=0.1,-1``) is checked value by value, so a
    bad value stops the whole sweep before its first job starts. With ``here=False`` (jobs
    sent to a cluster) the devices are not checked against this machine. ``config_dirs``
    (``--config-dir``) and a ``hydra.searchpath=[...]`` override add the user's own config
    folders, whose options are checked like the package's.
    """
    every = parse_overrides(overrides)
    _check_template_keys(every)
    search_path = _user_search_path(config_dirs, every)
    searching = _searching(search_path)
    ours = [o for o in every if _is_ours(o)]
    options = group_options(search_path)
    first = [_with_value(override, _values(override)[0]) for override in ours]
    grouped = [o for o, p in zip(first, ours, strict=True) if _is_group(p, options)]
    context = _Context(every, searching, search_path, options, grouped)
    configs = [context.compose(first)]
    for override in ours:
        # +data.path on data=moons composes (a key added), and fails only when built.
        key = override.get_key_element()
        if key.startswith("+") and not _is_group(override, options):
            context.key_of_another_option(key[1:], configs[0], added=True)
    _check_hydra_keys(every, searching, grouped)
    for index, override in enumerate(ours):
        for value in _values(override)[1:]:
            variant = [*first[:index], _with_value(override, value), *first[index + 1 :]]
            configs.append(context.compose(variant))
    for cfg in configs:
        check_config(cfg, here=here)
    return configs


class _Context:
    """One command line's overrides, for composing its configs and naming what is wrong."""

    def __init__(self, every, searching, search_path, options, grouped) -> None:
        self.every, self.searching, self.search_path = every, searching, search_path
        self.options, self.grouped = options, grouped

    def compose(self, overrides: list[str]) -> DictConfig:
        try:
            return _compose([*self.searching, *overrides])
        except UnknownKey as error:
            if error.on_command_line:
                structure = _compose([*self.searching, *self.grouped])
                self.key_of_another_option(error.key, structure)
            raise

    def key_of_another_option(self, key: str, structure: DictConfig, added: bool = False):
        _check_key_of_another_option(
            key,
            structure,
            self.options,
            self.search_path,
            self.every,
            [*self.searching, *self.grouped],
            added=added,
        )


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parsed overrides, or one line naming the one it cannot read and why; for an
    override the shell split at a space, or a value Hydra reads only in quotes (``~``), the
    line shows the quoted form to type."""
    parser = OverridesParser.create()
    for index, override in enumerate(overrides):
        try:
            parser.parse_overrides([override])
        except OverrideParseException as error:
            hint = _quoting_hint(overrides, index)
            raise ConfigError(
                f"cannot read the override {override!r}: {hint or _parse_error(error)}"
            ) from None
    return parser.parse_overrides(overrides)


def _parse_error(error: OverrideParseException) -> str:
    """Hydra's reason in a few words (its message spans lines: the input, a caret, a link)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip(" ^")]
    why = next((line for line in lines if " while evaluating " in line), None)
    if why:
        return why
    if lines[0].startswith("LexerNoViableAltException"):
        return (
            "Hydra's override grammar does not accept a character of it unquoted; quote the "
            "value, e.g. 'key=\"value\"'"
        )
    reasons = [line for line in lines if not line.startswith(("See ", "Error parsing override"))]
    return reasons[-1] if reasons else lines[-1]


def _parses(text: str):
    """Hydra's override parsed from ``text``, or None."""
    try:
        return OverridesParser.create().parse_overrides([text])[0]
    except OverrideParseException:
        return None


def _quoting_hint(words: list[str], index: int) -> str | None:
    """What to type for ``words[index]``, which Hydra cannot read: the words the shell made
    of one override at its spaces (``data.path=my file.csv``, ``data.drop=[Unnamed: 0]``)
    joined and quoted, or a value Hydra reads only in quotes (``~/x.csv``) quoted."""
    start = index
    while start >= 0 and "=" not in words[start]:
        start -= 1  # a word without '=': the tail of the override before it
    if start < 0:
        return None
    end = index + 1
    while end < len(words) and "=" not in words[end]:
        end += 1  # the words after it without '=': the rest of this one
    text = " ".join(words[start:end])
    for candidate in (text, _value_quoted(text)):
        if candidate and _parses(candidate):
            typed = _shell_quoted(_items_quoted(candidate))
            if end - start > 1:
                return (
                    f"the shell split {text!r} into {end - start} words at its spaces; "
                    f"quote the whole override: {typed}"
                )
            value = text.partition("=")[2]
            home = (
                f" (or {text.partition('=')[0]}=$HOME{value[1:]})"
                if value.startswith("~/") and " " not in value
                else ""
            )
            return f"Hydra reads such a value only in quotes; type {typed}{home}"
    return None


def _value_quoted(text: str) -> str | None:
    """``key=value`` with the value in Hydra's quotes (a plain value, not a list or a sweep)."""
    key, _, value = text.partition("=")
    if not value or value[0] in "[{'\"" or "(" in value or "," in value:
        return None
    quote = '"' if '"' not in value else "'"
    return None if quote in value else f"{key}={quote}{value}{quote}"


def _items_quoted(text: str) -> str:
    """``data.drop=[Unnamed: 0]`` -> ``data.drop=['Unnamed: 0']``: the entries of a list that
    hold more than letters, digits and ``._-/`` in Hydra's quotes (the same list, safer)."""
    import re

    override = _parses(text)
    value = override.value() if override else None
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        return text
    items = [
        v if not isinstance(v, str) or re.fullmatch(r"[\w./-]+", v) or "'" in v else f"'{v}'"
        for v in value
    ]
    quoted = f"{text.partition('=')[0]}=[{','.join(str(item) for item in items)}]"
    again = _parses(quoted)
    return quoted if again is not None and again.value() == value else text


def _shell_quoted(text: str) -> str:
    """``text`` as one word of a shell command, in the quotes that keep Hydra's inside."""
    import shlex

    if "'" not in text:
        return f"'{text}'"
    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


# Launchers that come with an extra of dlbasics: (plugin module, the extra).
LAUNCHER_EXTRAS = {
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "sweep"),
}
_PLUGIN_PACKAGES = {
    "hydra_plugins.hydra_submitit_launcher": "hydra-submitit-launcher",
    "hydra_plugins.hydra_joblib_launcher": "hydra-joblib-launcher",
}


def launcher_settings(overrides: list[str], config_dirs: Iterable[str] = ()) -> DictConfig:
    """``hydra.launcher`` as Hydra will compose it for ``overrides`` (a copy of
    ``conf/hydra/launcher/slurm.yaml`` in the user's own folder included)."""
    return _launcher_settings(tuple(overrides), tuple(config_dirs))


@functools.cache  # asked by several checks of one command line
def _launcher_settings(overrides: tuple[str, ...], config_dirs: tuple[str, ...]) -> DictConfig:
    searching = _searching(_user_search_path(config_dirs, parse_overrides(overrides)))
    chosen = [
        o for o in overrides if o.lstrip("+").startswith(("hydra/launcher=", "hydra.launcher."))
    ]
    return _compose([*searching, *chosen], hydra=True).hydra.launcher


def _user_search_path(config_dirs: Iterable[str], parsed: list) -> list[str]:
    """The user's own config folders: ``--config-dir`` and a ``hydra.searchpath`` override."""
    return [*(_as_search_path(d) for d in config_dirs), *_search_path_override(parsed)]


def _searching(search_path: list[str]) -> list[str]:
    """The override that adds ``search_path`` to Hydra's, or none."""
    return [f"hydra.searchpath=[{','.join(search_path)}]"] if search_path else []


def with_search_path(overrides: list[str], config_dirs: Iterable[str] = ()) -> list[str]:
    """``overrides`` with the user's config folders (``config_dirs`` and any
    ``hydra.searchpath=[...]`` among them) as one ``hydra.searchpath`` override, first."""
    parsed = parse_overrides(overrides)
    rest = [
        text
        for text, override in zip(overrides, parsed, strict=True)
        if override.get_key_element().lstrip("+") != "hydra.searchpath"
    ]
    return [*_searching(_user_search_path(config_dirs, parsed)), *rest]


def runs_here(overrides: list[str], config_dirs: Iterable[str] = ()) -> bool:
    """Whether the jobs run on this machine: not with a SLURM launcher."""
    chosen = any(
        o.lstrip("+").startswith(("hydra/launcher=", "hydra.launcher.")) for o in overrides
    )
    if not chosen and not _user_search_path(config_dirs, parse_overrides(overrides)):
        # The package's own tree chooses no launcher but Hydra's basic one, here: no need
        # to compose Hydra's config (about 0.4 s of every run's checks) to find that out.
        return True
    return "SlurmLauncher" not in str(launcher_settings(overrides, config_dirs).get("_target_"))


def check_launcher(overrides: list[str], multirun: bool) -> None:
    """``hydra/launcher=...`` needs its plugin (one line naming the extra that installs it)
    and a multirun (``-m``): Hydra sends only a multirun's jobs to a launcher, and would
    otherwise train here, in this process, without a word."""
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") != "hydra/launcher" or value in ("", "basic"):
            continue
        if value in LAUNCHER_EXTRAS:
            plugin, extra = LAUNCHER_EXTRAS[value]
            if not _has_module(plugin):
                raise ConfigError(
                    f"hydra/launcher={value} needs {_PLUGIN_PACKAGES[plugin]}, which comes "
                    f"with the {extra} extra: pip install 'dlbasics[{extra}]'"
                )
        if not multirun:
            raise ConfigError(
                f"hydra/launcher={value} launches the jobs of a multirun: add -m, e.g. "
                f"python -m dlbasics.train -m hydra/launcher={value} seed=0"
            )


def check_search_command(
    overrides: list[str], configs: list[DictConfig], multirun: bool, config_dirs: Iterable[str]
) -> list[DictConfig]:
    """A search (``hparams_search=...``) needs ``-m`` and Optuna, and every value its space
    can take must pass the same checks as a plain run's; an interval or a log scale is a
    search's, not a plain sweep's. Returns the configs to check further (one per value)."""
    from dlbasics.search.hparams import EMPTY_SPACE, parse_space, space_entries

    parsed = parse_overrides(overrides)
    for override in parsed:
        key = override.get_key_element().lstrip("+")
        if override.is_sweep_override() and key.startswith("hparams_search.space."):
            searched = key[len("hparams_search.space.") :]
            raise ConfigError(
                f"{override.input_line}: write a search on the command line as the key "
                f"itself, e.g. '{searched}={override.input_line.split('=', 1)[1]}'"
            )
    intervals = [o.input_line for o in parsed if o.is_sweep_override() and o.is_interval_sweep()]
    search = configs[0].get("hparams_search")
    if not search_selected(configs[0]):
        if intervals:
            raise ConfigError(
                f"{intervals[0]}: an interval is searched, not listed; add "
                "hparams_search=optuna (a plain -m runs lists: a,b,c or range(a, b))"
            )
        return configs
    if not multirun:
        raise ConfigError(
            "hparams_search runs a search of many trials: add -m, e.g. "
            "python -m dlbasics.train -m hparams_search=optuna"
        )
    if not _has_module("optuna"):
        raise ConfigError(
            "hparams_search=optuna needs optuna, which comes with the sweep extra: "
            "pip install 'dlbasics[sweep]'"
        )
    for entry in space_entries(search.get("space")):
        key = entry.split("=", 1)[0]
        if OmegaConf.select(configs[0], key, default=_MISSING) is _MISSING:
            parent, _, name = key.rpartition(".")
            owner = _owner(configs[0], parent, overrides)
            raise ConfigError(
                f"hparams_search.space.{key}: {owner} has no key '{name}' to search; leave it "
                f"out with hparams_search.space.{key}=null (or search another key)"
            )
    space = parse_space(search.get("space"), overrides)
    searched = [sweep.input_line for sweep in space.sweeps.values()]
    if not searched:
        raise ConfigError(EMPTY_SPACE)
    here = runs_here(overrides, config_dirs)
    return check_overrides([*space.fixed, *searched], config_dirs, here=here)


_MISSING = object()


def _owner(cfg: DictConfig, parent: str, overrides: list[str]) -> str:
    """Who lacks a key: ``model=linreg`` (as chosen on the command line), ``model
    (LinearRegression)`` (chosen elsewhere), or the parent key."""
    group = parent.split(".", 1)[0]
    chosen = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == group]
    if group and chosen:
        return f"{group}={chosen[-1]}"
    target = OmegaConf.select(cfg, f"{group}._target_", default=None) if group else None
    if target:
        return f"{group} ({str(target).rsplit('.', 1)[-1]})"
    return parent or "the config"


def check_multirun_processes(
    overrides: list[str], configs: list[DictConfig], config_dirs: Iterable[str] = ()
) -> None:
    """A multirun whose jobs start several processes (``trainer=ddp``) needs a launcher that
    gives each job its own processes (SLURM): Hydra's basic launcher runs the jobs in this
    process, joblib's in its worker processes, and Lightning would start each helper with
    the whole sweep's command line."""
    if not runs_here(overrides, config_dirs):
        check_slurm_tasks(launcher_settings(overrides, config_dirs), configs)
        return
    for cfg in configs:
        devices = str(cfg.trainer.get("devices", 1))
        if cfg.trainer.get("strategy") == "ddp" or (devices.isdigit() and int(devices) > 1):
            raise ConfigError(
                f"-m with trainer.devices={devices} ({cfg.trainer.get('strategy') or 'auto'}): "
                "a sweep of multi-process jobs needs hydra/launcher=slurm (or submitit_slurm); "
                "here, run each setting as its own command without -m"
            )


def check_slurm_tasks(launcher: DictConfig, configs: list[DictConfig]) -> None:
    """A job with several devices needs one SLURM task per device, on as many nodes as it
    trains on: Lightning reads its processes from SLURM and stops the job on the cluster
    when ``--ntasks-per-node`` or the node count does not match."""
    tasks, nodes = launcher.get("tasks_per_node") or 1, launcher.get("nodes") or 1
    for cfg in configs:
        devices, num_nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes") or 1
        if not str(devices).isdigit() or (int(devices) == 1 and num_nodes == 1):
            continue
        if int(devices) != tasks or num_nodes != nodes:
            raise ConfigError(
                f"trainer.devices={devices} on {num_nodes} node(s) needs one SLURM task per "
                f"device: hydra.launcher.tasks_per_node={devices} hydra.launcher.nodes="
                f"{num_nodes} (the launcher has tasks_per_node={tasks}, nodes={nodes})"
            )


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def check_run_dir_free(overrides: list[str], multirun: bool) -> None:
    """A ``hydra.run.dir`` (``hydra.sweep.dir``) forced onto an earlier run is refused:
    the new run would write over that run's config and mix its files with the old ones. So
    is a ``hydra.run.dir`` holding files of the user's own: they would be mixed with the
    run's (and a failed run cleans up only its own files)."""
    from dlbasics.config.rundir import holds_run, other_files

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+") != key or not value:
            continue
        directory = Path(value).expanduser()
        taken = (directory / "multirun.yaml").is_file() if multirun else holds_run(directory)
        if taken:
            hint = (
                f"; to continue it: python -m dlbasics.train resume={directory}"
                if not multirun
                else ""
            )
            raise ConfigError(
                f"{key}={value}: already holds an earlier run; choose a new directory{hint}"
            )
        others = [] if multirun else other_files(directory)
        if others:  # the run's files would land among the user's own
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise ConfigError(
                f"{key}={value}: a folder that is not a run and holds other files ({shown}); "
                f"choose a new or empty directory, e.g. {key}={directory / 'run'}"
            )


def _as_search_path(directory: str) -> str:
    """``--config-dir my_conf`` as a search-path entry (an absolute ``file://`` path)."""
    return f"file://{Path(directory).expanduser().resolve()}"


def _search_path_override(overrides) -> list[str]:
    """The entries of a ``hydra.searchpath=[...]`` override, relative files made absolute."""
    for override in overrides:
        if override.get_key_element().lstrip("+") == "hydra.searchpath":
            entries = override.value()
            entries = entries if isinstance(entries, list) else [entries]
            return [
                _as_search_path(e[len("file://") :]) if str(e).startswith("file://") else str(e)
                for e in entries
            ]
    return []


def _check_key_of_another_option(
    key: str,
    structure: DictConfig,
    options: dict[str, list[str]],
    search_path: list[str],
    every: list,
    choosing: list[str],
    added: bool = False,
) -> None:
    """Raise a ConfigError naming the options of ``key``'s group that have it (``data.path``
    is a key of ``data=csv``), if any: the user meant one of them, not a new key. For a key
    being added (``+data.path``) only options of another class count: an option of the
    same class (``data=blobs``, ``data=classification``) may pass on keys it lacks."""
    group, _, rest = key.partition(".")
    if not rest or group in ("experiment", "hydra") or group not in options:
        return
    if any(o.is_delete() and o.get_key_element() == f"~{group}" for o in every):
        return  # ~model +model._target_=...: a config of the user's own, on the command line
    target = OmegaConf.select(structure, f"{group}._target_", default=None)
    having = _options_with_key(group, rest, options[group], search_path)
    if added:
        having = {name: other for name, other in having.items() if other != target}
    shared = SCHEMAS.get(group)  # schema.Data: keys of every data option, of the user's too
    if not having or (shared and rest.split(".")[0] in keys_of(shared)):
        return
    chosen = _compose(choosing, hydra=True).hydra.runtime.choices.get(group)
    picked = {o.get_key_element().lstrip("+~") for o in every}
    now = f"{group}={chosen}" + (
        "" if group in picked else " (the preset's)" if "experiment" in picked else " (the default)"
    )
    given = [
        o.input_line.lstrip("+")
        for o in every
        if o.get_key_element().lstrip("+~").startswith(group + ".") and not o.is_delete()
    ]
    choices = " or ".join(f"{group}={name}" for name in having)
    example = " ".join([f"{group}={next(iter(having))}", *given])
    raise ConfigError(
        f"{key}: {now} has no key '{rest}'; it is a key of {choices}: choose that option, "
        f"e.g. {example}"
    )


def _options_with_key(
    group: str, key: str, names: list[str], search_path: list[str]
) -> dict[str, str | None]:
    """The options of ``group`` whose YAML file (the package's or the user's) sets ``key``,
    each with its ``_target_``."""
    from dlbasics.config.tree import _folder

    folders = [CONFIG_DIR, *(f for entry in search_path if (f := _folder(entry)))]
    found: dict[str, str | None] = {}
    for name in names:
        for folder in folders:
            file = folder / group / f"{name}.yaml"
            if not file.is_file():
                continue
            content = OmegaConf.load(file)
            if not isinstance(content, DictConfig):
                continue
            if "@package _global_" in file.read_text():
                content = content.get(group)
                if not isinstance(content, DictConfig):
                    continue
            in_schema = key.split(".")[0] in _schema_fields(content)
            if in_schema or OmegaConf.select(content, key, default=_MISSING) is not _MISSING:
                found[name] = content.get("_target_")
                break
    return found


def _schema_fields(content: DictConfig) -> set[str]:
    """The keys of the schema an option's defaults list names (``/schema_data_csv@_here_``)."""
    named = (re.match(r"/?schema_(\w+)@", str(entry)) for entry in content.get("defaults", []))
    schemas = [SCHEMAS[m.group(1)] for m in named if m and m.group(1) in SCHEMAS]
    return {key for schema in schemas for key in keys_of(schema)}


# lightning-hydra-template's search settings (hydra.sweeper.*, for Hydra's Optuna sweeper)
# -> dlbasics' own (conf/hparams_search/optuna.yaml).
HYDRA_SWEEPER_KEYS = {
    "hydra.sweeper.n_trials": "hparams_search.n_trials",
    "hydra.sweeper.direction": "hparams_search.direction",
    "hydra.sweeper.study_name": "hparams_search.study_name",
    "hydra.sweeper.storage": "hparams_search.storage",
    "hydra.sweeper.n_jobs": "hparams_search.parallel_trials",
    "hydra.sweeper.sampler.seed": "hparams_search.sampler_seed",
    "hydra.sweeper.sampler.n_startup_trials": "hparams_search.n_startup_trials",
}


def _check_template_keys(every: list) -> None:
    """lightning-hydra-template's search settings (``hydra.sweeper.n_trials``, ...) named
    as dlbasics' own (``hparams_search.n_trials``)."""
    for override in every:
        if override.is_delete():
            continue
        key = override.get_key_element().lstrip("+")
        value = override.input_line.split("=", 1)[1]
        if key.startswith("hydra.sweeper.params."):
            searched = key[len("hydra.sweeper.params.") :]
            raise ConfigError(
                f"{override.input_line}: dlbasics searches a key written as itself, e.g. "
                f"-m hparams_search=optuna '{searched}={value}' (or "
                f"hparams_search.space.{searched}=...)"
            )
        if key in HYDRA_SWEEPER_KEYS:
            selected = any(o.get_key_element().lstrip("+") == "hparams_search" for o in every)
            need = "" if selected else " with -m hparams_search=optuna"
            raise ConfigError(
                f"{override.input_line}: dlbasics keeps the search's settings under "
                f"hparams_search; write {HYDRA_SWEEPER_KEYS[key]}={value}{need} "
                "(see conf/hparams_search/optuna.yaml)"
            )


def _check_hydra_keys(every: list, searching: list[str], grouped: list[str]) -> None:
    """``hydra.*`` overrides name keys of Hydra's config as composed (its launcher and
    sweeper chosen), checked like the others (``+hydra.*`` adds a key: Hydra's to check)."""
    hydra_keys = [
        o
        for o in every
        if not o.is_delete()
        and o.get_key_element().startswith("hydra.")
        and o.get_key_element() != "hydra.searchpath"
    ]
    if not hydra_keys:
        return
    chosen = [o.input_line for o in every if o.get_key_element().lstrip("+").startswith("hydra/")]
    structure = _compose([*searching, *grouped, *chosen], hydra=True)
    for override in hydra_keys:
        check_key_exists(structure, override.get_key_element())


def _is_ours(override) -> bool:
    """Hydra's own settings are Hydra's to check."""
    return not override.get_key_element().lstrip("~+").startswith("hydra")


def _values(override) -> list[str]:
    """The values an override sets: one, or each value of a sweep (both ends of an interval)."""
    if override.is_sweep_override():
        return sweep_values(override)
    return [override.get_value_element_as_str()]


def _with_value(override, value: str) -> str:
    if not override.is_sweep_override():
        return override.input_line
    return f"{override.get_key_element()}={value}"


def _is_group(override, options: dict[str, list[str]]) -> bool:
    return override.get_key_element().lstrip("+~") in options


class UnknownKey(ConfigError):
    """A key that neither the config nor its schema has; ``on_command_line``: an override
    named it (else a config file did)."""

    def __init__(self, message: str, key: str, on_command_line: bool) -> None:
        super().__init__(message)
        self.key, self.on_command_line = key, on_command_line


def check_key_exists(config: DictConfig, key: str) -> None:
    """Raise :class:`ConfigError` naming the closest valid key if ``key`` is not in ``config``."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(config, parent_key, default=None) if parent_key else config
    if isinstance(parent, DictConfig) and name in parent.keys():
        return  # present, possibly still mandatory (???)
    if not isinstance(parent, DictConfig):
        raise ConfigError(f"{key}: no such key ('{parent_key}' holds no keys)")
    raise ConfigError(_no_such_key(key, parent))


def _no_such_key(key: str, parent: DictConfig | None, where: str = "") -> str:
    """``trainer.max_epoch: no such key. Did you mean trainer.max_epochs? (...)``."""
    parent_key, _, name = key.rpartition(".")
    keys = [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []
    hint = difflib.get_close_matches(name, keys, n=1, cutoff=0.5)
    prefix = f"{parent_key}." if parent_key else ""
    maybe = f" Did you mean {prefix}{hint[0]}?" if hint else f" Valid keys: {', '.join(keys)}."
    if not keys:
        maybe = f" ('{parent_key}' holds no keys yet.)"
    if where:  # a config file: a key is added on the command line, not in the file
        return f"{where}: {key}: no such key.{maybe}"
    return f"{key}: no such key.{maybe} (Add a new key with +{key}=...)"


def compose_config(overrides: list[str], hydra: bool = False) -> DictConfig:
    """``train.yaml`` composed with ``overrides`` (and Hydra's own node if ``hydra``), or a
    ConfigError in dlbasics' one line (see :func:`composition_error`)."""
    return _compose(overrides, hydra)


def _compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=hydra)
    except ConfigCompositionException as error:  # MissingConfigException too
        raise composition_error(error) from None


def composition_error(error: ConfigCompositionException) -> ConfigError:
    """Hydra's refusal to compose as one line: an unknown option with the group's options,
    an unknown key with the closest valid one (:class:`UnknownKey`), a value of the wrong
    type (the schema's) with what works; anything else as Hydra's first line."""
    if isinstance(error, MissingConfigException):
        return ConfigError(_unknown_option(error))
    cause = error.__cause__ or error.__context__  # an override's; a config file's
    text = str(error).strip()
    typed = re.match(r"Error merging override (.*)", text) or re.match(
        r"Could not override '.*'\.\nTo append to your config use \+(.*)", text
    )
    given = typed.group(1).strip() if typed else None  # the override, as typed
    where = re.match(r"In '([^']+)': ", text)
    in_file = where.group(1) if where and not given else ""
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
        key = str(cause.full_key)
        return UnknownKey(_no_such_key(key, cause.parent_node, in_file), key, not in_file)
    if isinstance(cause, ConfigTypeError) and "does not support deletion" in str(cause):
        return ConfigError(_undeletable(str(cause.full_key), given))
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        return ConfigError(_wrong_type(cause, given, in_file))
    return ConfigError(_first_line(error) + (f" ({_first_line(cause)})" if cause else ""))


def _undeletable(key: str, given: str | None) -> str:
    """``~model.hidden_sizes``: an option's keys are its schema's, all of them."""
    group = key.split(".")[0]
    return (
        f"{given or '~' + key}: the keys of a {group} option are fixed by its schema "
        f"(dlbasics.config.schema); for a {group} of your own, leave the option out and give "
        f"its keys, e.g. ~{group} +{group}._target_=my_module.MyClass, or write "
        f"{group}/<name>.yaml in a folder of your own (--config-dir)"
    )


def _unknown_option(error: MissingConfigException) -> str:
    """``model=transformer: no such option in group 'model'. Available: cnn, linreg, mlp.``"""
    missing = str(error.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    if not group or error.options is None:
        return _first_line(error)
    known = sorted(str(name) for name in error.options)
    hint = difflib.get_close_matches(option, known, n=1)
    maybe = f" Did you mean {group}={hint[0]}?" if hint else ""
    return (
        f"{group}={option}: no such option in group '{group}'. "
        f"Available: {', '.join(known)}.{maybe}"
    )


# What a value of the schema's type looks like, by the words of OmegaConf's refusal.
_KINDS = {
    "converted to Integer": "a whole number",
    "converted to Float": "a number",
    "converted to Boolean": "true or false",
    "is not a valid bool": "true or false",
    "is not a ListConfig": "a list",
    "is not a DictConfig": "a group of keys (key: value)",
    "is not Optional": "a value (not null)",
}


def _wrong_type(cause: OmegaConfBaseException, given: str | None, in_file: str) -> str:
    """``optimizer.lr=fast: must be a number, e.g. optimizer.lr=0.001``: a value the
    schema's type refuses, what the key takes, and its value before (as an example)."""
    full_key = str(cause.full_key)
    key = re.sub(r"\[\d+\]$", "", full_key)  # an entry of a list: name the list
    reason = str(cause.msg).strip().splitlines()[0]
    typed = given.partition("=")[2] if given else None
    value = re.search(r"Value '(.*)' of type", reason)
    shown = typed if typed is not None else (value.group(1) if value else "")
    what = f"{key}={shown}" if shown else key
    if in_file:
        what = f"{in_file}: {what}"
    kind = next((words for clue, words in _KINDS.items() if clue in reason), None)
    if kind is None:
        return f"{what}: {reason}"
    name = key.rpartition(".")[2]
    example = _example(key, cause.parent_node, name) if full_key == key else ""
    if kind == "a list" and _is_number(_parsed(shown)):
        return f"{what}: must be a list; for one entry write {key}=[{shown}]"
    if full_key != key:  # one entry of a list
        entry = value.group(1) if value else "?"
        return f"{what}: the entry {entry} must be {kind}"
    if kind == "a whole number" and value and _is_whole_float(value.group(1)):
        number = float(value.group(1))
        return (
            f"{what}: must be a whole number; {shown} is read as the decimal number {number}; "
            f"write it as a whole number: {key}={int(number)}"
        )
    nullable = " (or null)" if _may_be_null(cause.object_type, name) else ""
    return f"{what}: must be {kind}{nullable}{example}"


def _example(key: str, parent, name: str) -> str:
    """``, e.g. optimizer.lr=0.001``: the key's value before the override, if it had one."""
    if not isinstance(parent, DictConfig):
        return ""
    value = OmegaConf.to_container(parent, resolve=False).get(name)
    if isinstance(value, list):
        value = "[" + ",".join(str(v) for v in value) + "]"
    if value is None or isinstance(value, dict) or str(value).startswith(("${", "???")):
        return ""
    return f", e.g. {key}={str(value).lower() if isinstance(value, bool) else value}"


def _may_be_null(schema, name: str) -> bool:
    """Whether the schema's field ``name`` is ``X | None``."""
    import dataclasses
    import typing

    if not dataclasses.is_dataclass(schema):
        return False
    hint = typing.get_type_hints(schema).get(name)
    return type(None) in typing.get_args(hint)


def _is_whole_float(text: str) -> bool:
    try:
        return float(text).is_integer()
    except ValueError:
        return False


def _parsed(text: str):
    """A value as Hydra reads it from the command line (``64`` is a number), or the text."""
    override = _parses(f"key={text}")
    return override.value() if override is not None else text


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0]


# -- values ----------------------------------------------------------------------------
#
# The schema has given every key of the package's options its type (Hydra refused the
# rest while composing). What follows are the ranges and names a type cannot say, and the
# keys that depend on each other. A value of another type still gets a line here, not a
# traceback: a user's own option has no schema, nor has a resumed run's saved config.


def check_config(cfg: DictConfig, here: bool = True) -> None:
    """Raise :class:`ConfigError` naming the first key whose value cannot work; ``here``:
    the run will run on this machine, so the GPUs and cores it asks for must be here."""
    missing = [str(key) for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:  # ~data: a group left without an option
        raise ConfigError(
            f"{missing[0]}: no value and no option chosen; choose one, e.g. "
            f"{missing[0]}=<option> (python -m dlbasics.train --help lists them)"
        )
    _at_least(cfg, "seed", 0, whole=True)
    _above_zero(cfg, "optimizer.lr")
    _at_least(cfg, "trainer.max_epochs", 1, whole=True)
    if cfg.trainer.get("threads", "auto") != "auto":
        threads = cfg.trainer.threads
        if not _is_whole(threads, 1):
            raise ConfigError(
                f"trainer.threads={_shown(threads)}: must be auto (chosen from the work of a "
                "step) or a whole number >= 1, e.g. trainer.threads=1"
            )
    if cfg.get("gradient_clip_val") is not None:
        _above_zero(cfg, "gradient_clip_val")
    _one_of(cfg, "float32_matmul_precision", MATMUL_PRECISIONS)
    check_data_values(cfg)
    check_model(cfg)
    check_scheduler(cfg)
    check_search(cfg)
    check_seeds(cfg)
    check_ckpt_path(cfg)
    check_callbacks(cfg)
    check_figures(cfg)
    if here:
        check_accelerator(cfg)


def check_data_values(cfg: DictConfig) -> None:
    """The batch size, the split's fractions and the generated rows (a user's own data
    config may have none of these keys)."""
    data = cfg.data
    if data.get("batch_size") is not None:
        _at_least(cfg, "data.batch_size", 1, whole=True)
    fractions = [_fraction(cfg, f"data.{name}") for name in _FRACTIONS if name in data]
    if sum(fractions) >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {sum(fractions):g} leaves no training "
            "data; their sum must be below 1 (e.g. 0.1 and 0.1)"
        )
    if "noise" in data:
        _at_least(cfg, "data.noise", 0)
    if "n_samples" in data:
        _at_least(cfg, "data.n_samples", 1, whole=True)
    unknown = [name for name in data.get("augment") or [] if name not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(
            f"data.augment: {unknown[0]!r} is not an augmentation; use any of "
            f"{', '.join(AUGMENTATIONS)}, e.g. data.augment=[flip,crop]"
        )


_FRACTIONS = ("val_fraction", "test_fraction")


def has_validation_split(cfg: DictConfig) -> bool:
    """Whether the run holds out a validation split (a data config without the key gets
    the datamodule's default)."""
    return float(cfg.data.get("val_fraction", DATA_DEFAULTS.val_fraction) or 0) > 0


def check_model(cfg: DictConfig) -> None:
    """Layer sizes of at least 1, a known activation, a kernel and a dropout that work."""
    model = cfg.model
    for key in ("hidden_sizes", "channels"):
        if key in model:
            _layer_sizes(cfg, f"model.{key}")
    if "activation" in model:
        _one_of(cfg, "model.activation", tuple(ACTIVATIONS))
    if "kernel_size" in model:
        _at_least(cfg, "model.kernel_size", 1, whole=True)
    if "dropout" in model:
        dropout = model.dropout
        if not _is_number(dropout) or not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout={_shown(dropout)}: must be a probability in [0, 1)")


def check_search(cfg: DictConfig) -> None:
    """The values of ``hparams_search`` that can be checked before any trial runs."""
    if not search_selected(cfg):
        return
    search = cfg.hparams_search
    _at_least(cfg, "hparams_search.n_trials", 1, whole=True)
    chosen = search.get("parallel_trials", "auto")
    if chosen not in (None, "auto") and not _is_whole(chosen, 1):
        raise ConfigError(f"hparams_search.parallel_trials={chosen}: auto, or a whole number >= 1")
    if search.get("sampler_seed") is not None:
        _at_least(cfg, "hparams_search.sampler_seed", 0, whole=True)
    if "n_startup_trials" in search:
        _at_least(cfg, "hparams_search.n_startup_trials", 0, whole=True)
    metric, direction = objective_settings(cfg)
    check_metric(metric)
    check_direction(direction)
    if not has_validation_split(cfg):
        raise ConfigError(
            "hparams_search with data.val_fraction=0: trials are compared on the validation "
            "split, and there is none; set data.val_fraction=0.1 (or another share)"
        )


# What ``seeds=`` can stack (dlbasics.training.stacked), and optimizers that act on each
# weight on its own, so that one optimizer over the stacked weights is K separate ones.
STACKABLE_NETS = ("dlbasics.nets.LinearRegression", "dlbasics.nets.MLP", "dlbasics.nets.CNN")
ELEMENTWISE_OPTIMIZERS = (
    "torch.optim.SGD",
    "torch.optim.Adam",
    "torch.optim.AdamW",
    "torch.optim.RMSprop",
)
# Callbacks of a seeds= run: each member gets its own checkpoint (and history, best epoch,
# figures); the progress bar, model summary and graceful stop serve the whole run.
SEEDS_CALLBACKS = ("checkpoint", "progress_bar", "model_summary", "graceful_stop")


def check_seeds(cfg: DictConfig) -> None:
    """``seeds`` and ``members.*``: lists of values that work, and a run that its stacked
    members can be (a net dlbasics can stack, an optimizer and schedule that treat each
    member as its own run)."""
    if not is_stacked(cfg):
        return
    seeds = cfg.get("seeds")
    if seeds is not None:
        values = list(seeds) if isinstance(seeds, ListConfig) else None
        if not values or not all(_is_whole(seed, 0) for seed in values):
            raise ConfigError(
                f"seeds={_shown(seeds)}: a list of whole numbers >= 0, e.g. seeds=[0,1,2,3,4]"
            )
        repeated = next((seed for seed in values if values.count(seed) > 1), None)
        if repeated is not None:
            raise ConfigError(
                f"seeds={_shown(values)}: seed {repeated} is listed twice; each member needs a "
                "seed of its own"
            )
    lists = varied(cfg)
    for key, values in lists.items():
        low, what = (0, "above 0") if key == "lr" else (None, ">= 0")
        if (
            not values
            or not all(_is_number(v) and v >= 0 and (low is None or v > low) for v in values)
            or (key == "momentum" and not all(v < 1 for v in values))
            or len(set(values)) < len(values)
        ):
            bound = "between 0 and 1" if key == "momentum" else what
            raise ConfigError(
                f"members.{key}=[{', '.join(_shown(v) for v in values)}]: a list of different "
                f"numbers {bound}, one "
                f"optimizer.{key} for each setting, e.g. members.{key}=[0.001,0.01,0.1]"
            )
    words = [f"seeds={_shown(seeds)}".replace(" ", "")] if seeds is not None else []
    words += [f"members.{k}={_shown(v)}".replace(" ", "") for k, v in lists.items()]
    shown = " ".join(words)
    sweep = " ".join(
        [f"seed={','.join(str(s) for s in seeds_of(cfg))}"]
        + [f"optimizer.{k}={','.join(str(v) for v in values)}" for k, values in lists.items()]
    )
    instead = f"; or train each as a run of its own: python -m dlbasics.train -m {sweep}"
    model = str(cfg.model.get("_target_"))
    if model not in STACKABLE_NETS:
        raise ConfigError(
            f"{shown}: stacks dlbasics' own nets (model=linreg, mlp or cnn), not "
            f"model._target_={model}{instead}"
        )
    optimizer = str(cfg.optimizer.get("_target_"))
    if optimizer not in ELEMENTWISE_OPTIMIZERS:
        raise ConfigError(
            f"{shown}: the members share one optimizer over their stacked weights, which is "
            f"each member's own only for SGD, Adam, AdamW and RMSprop, not {optimizer}{instead}"
        )
    if "momentum" in lists and optimizer.split(".")[-1] not in ("SGD", "RMSprop"):
        raise ConfigError(
            f"{shown}: {optimizer} has no momentum (Adam's is its betas); members.momentum "
            "suits optimizer=sgd or rmsprop"
        )
    flags = [k for k in ("amsgrad", "maximize") if cfg.optimizer.get(k)]
    if lists and flags:
        raise ConfigError(
            f"{shown} with optimizer.{flags[0]}=true: members with values of their own are "
            f"stepped by dlbasics' copy of torch's {optimizer}, which leaves {flags[0]} out"
            f"{instead}"
        )
    scheduler = str((cfg.get("scheduler") or {}).get("_target_", ""))
    if "lr" in lists and scheduler:
        raise ConfigError(
            f"{shown} with a scheduler: members with learning rates of their own keep them "
            f"fixed; use scheduler=none{instead}"
        )
    if scheduler.endswith("ReduceLROnPlateau"):
        raise ConfigError(
            f"{shown}: scheduler=plateau lowers the learning rate on one run's plateau, and "
            f"the members share one learning rate; use scheduler=step or cosine{instead}"
        )
    if search_selected(cfg):
        raise ConfigError(f"{shown}: not inside hparams_search (each trial is one run){instead}")
    if cfg.get("ckpt_path"):
        raise ConfigError(
            f"{shown} with ckpt_path: seeds= starts new runs; each member of a seeds= run "
            "goes on as an ordinary run with resume=<run dir>/<member>"
        )
    for name, callback in (cfg.get("callbacks") or {}).items():
        if callback and name not in SEEDS_CALLBACKS:
            raise ConfigError(
                f"{shown} with callbacks.{name}: each member gets dlbasics' own checkpoint, "
                f"history and figures; another callback would see all members as one run, "
                f"and a member cannot stop early alone; drop it (callbacks.{name}=null){instead}"
            )
    devices = str(cfg.trainer.get("devices", 1))
    if cfg.trainer.get("strategy") == "ddp" or (devices.isdigit() and int(devices) > 1):
        raise ConfigError(
            f"{shown}: the members train in one process on one device; use trainer=default "
            f"(trainer.devices=1){instead}"
        )


def check_ckpt_path(cfg: DictConfig) -> None:
    """``ckpt_path`` must name an existing file (its contents are checked once the model exists)."""
    path = cfg.get("ckpt_path")
    if path is None:
        return
    file = Path(str(path)).expanduser()
    if not file.is_file():
        where = "" if file.is_absolute() else f" (read from {Path.cwd()})"
        what = "a directory, not a .ckpt file" if file.is_dir() else "no such file"
        raise ConfigError(
            f"ckpt_path={path}: {what}{where}; give a checkpoint such as "
            "outputs/train/runs/<run>/checkpoints/last.ckpt, or resume=<run dir>"
        )


def check_callbacks(cfg: DictConfig) -> None:
    """Values of the callbacks that Lightning would only trip over mid-run."""
    callbacks = cfg.get("callbacks") or {}
    checkpoint = callbacks.get("checkpoint")
    if checkpoint:
        if checkpoint.get("every_n_epochs") is not None:
            _at_least(cfg, "callbacks.checkpoint.every_n_epochs", 1, whole=True)
        if checkpoint.get("every_n_seconds") is not None:
            _above_zero(cfg, "callbacks.checkpoint.every_n_seconds")
    if has_validation_split(cfg):
        return
    for name, callback in callbacks.items():
        monitor = str((callback or {}).get("monitor", ""))
        # The checkpoint falls back to the training loss; a monitor of Lightning's does not.
        if name != "checkpoint" and monitor.startswith("val/"):
            raise ConfigError(
                f"callbacks.{name}.monitor={monitor}: data.val_fraction=0 leaves no validation "
                f"split to measure it on; set data.val_fraction=0.1 (or another share), or "
                f"callbacks.{name}.monitor=train/loss"
            )


def check_figures(cfg: DictConfig) -> None:
    """How often figures are taken and drawn (``figures=none`` has nothing to check)."""
    figures = cfg.get("figures") or {}
    for key, minimum, whole in (
        ("every_n_epochs", 1, True),
        ("frames", 1, True),
        ("draw_every_seconds", 0, False),
        ("max_images", 0, True),
    ):
        if figures.get(key) is not None:
            _at_least(cfg, f"figures.{key}", minimum, whole=whole)


def check_accelerator(cfg: DictConfig) -> None:
    """One of :data:`ACCELERATORS`; ``gpu`` needs a visible CUDA GPU (imports torch, so last)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"trainer.accelerator={accelerator}: not supported by dlbasics; use one of "
            f"{', '.join(ACCELERATORS)} (auto: a GPU when there is one)"
        )
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator}: no CUDA GPU is visible to PyTorch "
                f"(torch {torch.__version__}). Use trainer.accelerator=cpu or "
                "trainer.accelerator=auto (GPU when there is one)."
            )
    check_devices(cfg, accelerator)


def check_devices(cfg: DictConfig, accelerator: str) -> None:
    """``trainer.devices``: a count the machine has (one process each under DDP), ``auto``
    or -1 (all). More CPU processes than cores, or more GPUs than exist, stop here."""
    devices = cfg.trainer.get("devices", 1)
    if str(devices) in ("auto", "-1") or not str(devices).lstrip("-").isdigit():
        return  # Lightning's other forms (a list of GPU indices) are Lightning's to check
    count = int(devices)
    if count < 1:
        raise ConfigError(f"trainer.devices={devices}: at least 1 (or auto, or -1 for all)")
    if count == 1:
        return
    import torch

    gpus = torch.cuda.device_count()
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    if on_gpu and count > gpus:
        raise ConfigError(
            f"trainer.devices={devices}: {gpus} GPU(s) visible; use trainer.devices={gpus} or fewer"
        )
    cores = usable_cores()
    if not on_gpu and count > cores:
        raise ConfigError(
            f"trainer.devices={devices}: this CPU has {cores} cores, and each device is a "
            f"process of its own; use trainer.devices={cores} or fewer"
        )


def check_scheduler(cfg: DictConfig) -> None:
    """The schedules' settings that torch accepts when building but that fail or do
    nonsense later: ``step_size=0`` divides by zero after the first epoch, a negative
    ``gamma`` makes the learning rate negative, ``factor=0`` sets it to zero."""
    scheduler = cfg.get("scheduler") or {}
    for key in ("step_size", "T_max"):
        if key in scheduler:
            _at_least(cfg, f"scheduler.{key}", 1, whole=True)
    if "patience" in scheduler:
        _at_least(cfg, "scheduler.patience", 0, whole=True)
    if "eta_min" in scheduler:
        _at_least(cfg, "scheduler.eta_min", 0)
    if "gamma" in scheduler:
        _above_zero(cfg, "scheduler.gamma")
    factor = scheduler.get("factor")
    if factor is not None and (not _is_number(factor) or not 0 < factor < 1):
        raise ConfigError(
            f"scheduler.factor={_shown(factor)}: the learning rate is multiplied by it on a plateau; "
            "a number between 0 and 1 (e.g. 0.5)"
        )


def _shown(value) -> str:
    """A value as the user typed it: the schema made ``optimizer.lr=-1`` the float -1.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _is_whole(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _above_zero(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{key}={_shown(value)}: must be a number above 0 (e.g. {key}=0.01)")


def _at_least(cfg: DictConfig, key: str, minimum: int, whole: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    fits = _is_whole(value, minimum) if whole else _is_number(value) and value >= minimum
    if not fits:
        what = "a whole number" if whole else "a number"
        raise ConfigError(f"{key}={_shown(value)}: must be {what} >= {minimum}")


def _fraction(cfg: DictConfig, key: str) -> float:
    value = OmegaConf.select(cfg, key)
    if not _is_number(value) or not 0 <= value < 1:
        raise ConfigError(
            f"{key}={_shown(value)}: must be a fraction in [0, 1) (0 = no such split)"
        )
    return float(value)


def _one_of(cfg: DictConfig, key: str, names: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and value not in names:
        raise ConfigError(f"{key}={value}: not one of {', '.join(names)}")


def _layer_sizes(cfg: DictConfig, key: str) -> None:
    values = OmegaConf.select(cfg, key)
    listed = list(values) if isinstance(values, ListConfig | list) else None
    if listed is None or not all(_is_whole(v, 1) for v in listed):
        shown = listed if listed is not None else values
        raise ConfigError(
            f"{key}={shown}: every entry must be a whole number >= 1 (e.g. {key}=[64,64])"
        )
