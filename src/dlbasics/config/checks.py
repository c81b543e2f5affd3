"""Checking the user's overrides and the composed config before anything heavy starts.

Two steps, both free of torch and Lightning imports:

* :func:`check_overrides` composes the command line's overrides the way Hydra will and
  turns Hydra's composition errors into one line: an unknown option lists the group's
  options, an unknown key names the closest valid key.
* :func:`check_config` checks the values of a composed config (learning rate, epochs,
  fractions, sizes, activation, accelerator) and names the key, the value and what works.

Both raise :class:`dlbasics.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable
from numbers import Number
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from dlbasics.config.tree import CONFIG_DIR, group_options
from dlbasics.errors import ConfigError
from dlbasics.search.hparams import search_selected, sweep_values
from dlbasics.training.objective import check_direction, check_metric, objective_settings

ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "elu")  # as in dlbasics.nets
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


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
    search_path = _user_search_path(config_dirs, every)
    searching = _searching(search_path)
    parsed = [o for o in every if _is_ours(o)]
    options = group_options(search_path)
    for override in parsed:
        if _is_group(override, options):
            for value in _values(override):
                _check_option(override.get_key_element().lstrip("+~"), value, options)
    first = [_with_value(override, _values(override)[0]) for override in parsed]
    grouped = [o for o, p in zip(first, parsed, strict=True) if _is_group(p, options)]
    _check_template_keys(every)
    structure = _compose([*searching, *grouped])
    for override in parsed:
        key = override.get_key_element()
        if _is_group(override, options) or key.startswith("~"):
            continue
        # A key of another option of its group (data.path without data=csv) names it.
        named = (key.lstrip("+"), structure, options, search_path, every, [*searching, *grouped])
        if key.startswith("+"):
            if not _has_key(structure, key[1:]):
                _check_key_of_another_option(*named, added=True)
            continue
        try:
            check_key_exists(structure, key)
        except ConfigError:
            _check_key_of_another_option(*named)
            raise
    _check_hydra_keys(every, searching, grouped)
    configs = [_compose([*searching, *first])]
    for index, override in enumerate(parsed):
        for value in _values(override)[1:]:
            variant = [*first[:index], _with_value(override, value), *first[index + 1 :]]
            configs.append(_compose([*searching, *variant]))
    for cfg in configs:
        check_config(cfg, here=here)
    return configs


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


def _has_key(structure: DictConfig, key: str) -> bool:
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(structure, parent_key, default=None) if parent_key else structure
    return isinstance(parent, DictConfig) and name in parent


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
    target = OmegaConf.select(structure, f"{group}._target_", default=None)
    having = _options_with_key(group, rest, options[group], search_path)
    if added:
        having = {name: other for name, other in having.items() if other != target}
    if not having:
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
            if OmegaConf.select(content, key, default=_MISSING) is not _MISSING:
                found[name] = content.get("_target_")
                break
    return found


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
    """Hydra's own settings and deletions are Hydra's to check."""
    return not override.is_delete() and not override.get_key_element().startswith("hydra")


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


def _check_option(group: str, option: str, options: dict[str, list[str]]) -> None:
    known = options[group]
    if option not in known and option != "null":
        hint = difflib.get_close_matches(option, known, n=1)
        maybe = f" Did you mean {group}={hint[0]}?" if hint else ""
        raise ConfigError(
            f"{group}={option}: no such option in group '{group}'. "
            f"Available: {', '.join(sorted(known))}.{maybe}"
        )


def check_key_exists(config: DictConfig, key: str) -> None:
    """Raise :class:`ConfigError` naming the closest valid key if ``key`` is not in ``config``."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(config, parent_key, default=None) if parent_key else config
    if isinstance(parent, DictConfig) and name in parent.keys():
        return  # present, possibly still mandatory (???)
    if not isinstance(parent, DictConfig):
        raise ConfigError(f"{key}: no such key ('{parent_key}' holds no keys)")
    keys = [str(k) for k in parent.keys()]
    hint = difflib.get_close_matches(name, keys, n=1, cutoff=0.5)
    where = f"{parent_key}." if parent_key else ""
    maybe = f" Did you mean {where}{hint[0]}?" if hint else f" Valid keys: {', '.join(keys)}."
    if not keys:
        maybe = f" ('{parent_key}' holds no keys yet.)"
    raise ConfigError(f"{key}: no such key.{maybe} (Add a new key with +{key}=...)")


def compose_config(overrides: list[str], hydra: bool = False) -> DictConfig:
    """``train.yaml`` composed with ``overrides`` (and Hydra's own node if ``hydra``), or a
    ConfigError with Hydra's first line."""
    return _compose(overrides, hydra)


def _compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=hydra)
    except MissingConfigException as error:
        raise ConfigError(_first_line(error)) from None
    except ConfigCompositionException as error:
        cause = f" ({_first_line(error.__cause__)})" if error.__cause__ else ""
        raise ConfigError(_first_line(error) + cause) from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0]


# -- values ----------------------------------------------------------------------------


def check_config(cfg: DictConfig, here: bool = True) -> None:
    """Raise :class:`ConfigError` naming the first key whose value cannot work; ``here``:
    the run will run on this machine, so the GPUs and cores it asks for must be here."""
    _integer_at_least(cfg, "seed", 0)
    _positive_number(cfg, "optimizer.lr")
    _integer_at_least(cfg, "trainer.max_epochs", 1)
    if cfg.data.get("batch_size") is not None:
        _integer_at_least(cfg, "data.batch_size", 1)
    fractions = [  # a user's own datamodule may have neither key
        _fraction(cfg, f"data.{name}")
        for name in ("val_fraction", "test_fraction")
        if name in cfg.data
    ]
    if sum(fractions) >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {sum(fractions):g} leaves no training "
            "data; their sum must be below 1 (e.g. 0.1 and 0.1)"
        )
    if "noise" in cfg.data:
        _number_at_least(cfg, "data.noise", 0)
    if "n_samples" in cfg.data:
        _integer_at_least(cfg, "data.n_samples", 1)
    model = cfg.model
    for key in ("hidden_sizes", "channels"):
        if key in model:
            _positive_integers(model[key], f"model.{key}")
    if "activation" in model and model.activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation={model.activation}: unknown activation; "
            f"choose one of {', '.join(ACTIVATIONS)}"
        )
    if "kernel_size" in model:
        _integer_at_least(cfg, "model.kernel_size", 1)
    if "dropout" in model:
        dropout = model.dropout
        if not _is_number(dropout) or not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout={dropout}: must be a probability in [0, 1)")
    if cfg.get("gradient_clip_val") is not None:
        _positive_number(cfg, "gradient_clip_val")
    check_scheduler(cfg)
    precision = cfg.get("float32_matmul_precision")
    if precision is not None and precision not in ("highest", "high", "medium"):
        raise ConfigError(f"float32_matmul_precision={precision}: one of highest, high, medium")
    check_search(cfg)
    check_ckpt_path(cfg)
    check_callbacks(cfg)
    check_figures(cfg)
    if here:
        check_accelerator(cfg)


def check_search(cfg: DictConfig) -> None:
    """The values of ``hparams_search`` that can be checked before any trial runs."""
    if not search_selected(cfg):
        return
    search = cfg.hparams_search
    _integer_at_least(cfg, "hparams_search.n_trials", 1)
    chosen = search.get("parallel_trials", "auto")
    if chosen not in (None, "auto") and not _is_whole(chosen, 1):
        raise ConfigError(f"hparams_search.parallel_trials={chosen}: auto, or a whole number >= 1")
    seed = search.get("sampler_seed")
    if seed is not None and not _is_whole(seed, 0):
        raise ConfigError(f"hparams_search.sampler_seed={seed}: a whole number >= 0, or null")
    if "n_startup_trials" in search:
        _integer_at_least(cfg, "hparams_search.n_startup_trials", 0)
    metric, direction = objective_settings(cfg)
    check_metric(metric)
    check_direction(direction)
    if float(cfg.data.get("val_fraction", 0.1) or 0) == 0:
        raise ConfigError(
            "hparams_search with data.val_fraction=0: trials are compared on the validation "
            "split, and there is none; set data.val_fraction=0.1 (or another share)"
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
            _integer_at_least(cfg, "callbacks.checkpoint.every_n_epochs", 1)
        if checkpoint.get("every_n_seconds") is not None:
            _positive_number(cfg, "callbacks.checkpoint.every_n_seconds")
    if float(cfg.data.get("val_fraction", 0.1) or 0) > 0:
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
    for key, check in (
        ("every_n_epochs", lambda k: _integer_at_least(cfg, k, 1)),
        ("frames", lambda k: _integer_at_least(cfg, k, 1)),
        ("draw_every_seconds", lambda k: _number_at_least(cfg, k, 0)),
        ("max_images", lambda k: _integer_at_least(cfg, k, 0)),
    ):
        if figures.get(key) is not None:
            check(f"figures.{key}")


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
            _integer_at_least(cfg, f"scheduler.{key}", 1)
    if "patience" in scheduler:
        _integer_at_least(cfg, "scheduler.patience", 0)
    if "eta_min" in scheduler:
        _number_at_least(cfg, "scheduler.eta_min", 0)
    if "gamma" in scheduler:
        _positive_number(cfg, "scheduler.gamma")
    factor = scheduler.get("factor")
    if factor is not None and (not _is_number(factor) or not 0 < factor < 1):
        raise ConfigError(
            f"scheduler.factor={factor}: the learning rate is multiplied by it on a plateau; "
            "a number between 0 and 1 (e.g. 0.5)"
        )


def usable_cores() -> int:
    """The CPU cores this process may run on (a container or ``taskset`` may allow fewer
    than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key)


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _positive_number(cfg: DictConfig, key: str) -> None:
    value = _value(cfg, key)
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{key}={value}: must be a number above 0 (e.g. {key}=0.01)")


def _number_at_least(cfg: DictConfig, key: str, minimum: float) -> None:
    value = _value(cfg, key)
    if not _is_number(value) or value < minimum:
        raise ConfigError(f"{key}={value}: must be a number >= {minimum}")


def _is_whole(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _integer_at_least(cfg: DictConfig, key: str, minimum: int) -> None:
    value = _value(cfg, key)
    if isinstance(value, float) and value.is_integer() and value >= minimum:
        # 1e3 or 1000.0 on the command line: YAML and Hydra read a decimal number.
        mantissa, exponent = f"{value:e}".split("e")
        short = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}" if value else "0e0"
        raise ConfigError(
            f"{key}={value}: must be a whole number; {short} (like {value}) is read as the "
            f"decimal number {value}; write it as a whole number: {key}={int(value)}"
        )
    if not _is_whole(value, minimum):
        raise ConfigError(f"{key}={value}: must be a whole number >= {minimum}")


def _fraction(cfg: DictConfig, key: str) -> float:
    value = _value(cfg, key)
    if not _is_number(value) or not 0 <= value < 1:
        raise ConfigError(f"{key}={value}: must be a fraction in [0, 1) (0 = no such split)")
    return float(value)


def _positive_integers(values: Iterable, key: str) -> None:
    if isinstance(values, Number) and _is_whole(values, 1):
        raise ConfigError(
            f"{key}={values}: a list of layer sizes, one per layer; for one layer of "
            f"{values} write {key}=[{values}]"
        )
    values = list(values) if not isinstance(values, (str, Number)) else [values]
    bad = [v for v in values if not _is_whole(v, 1)]
    if bad:
        raise ConfigError(
            f"{key}={values}: every entry must be a whole number >= 1 (e.g. {key}=[64,64])"
        )
