"""Where the config tree lives (presets included, in ``conf/experiment/``), and what a run
was started with.

Kept free of torch and Lightning imports: `--help` and `--cfg job` go through here only.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/dlbasics (or the wheel's dlbasics)


def _find(name: str) -> Path:
    """A folder shipped inside the wheel, or the project's top-level folder in a checkout."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"dlbasics cannot find its {name}/ folder next to {_PACKAGE_DIR}")


CONFIG_DIR = _find("conf")


def _stamped(parent: str) -> str:
    """``<parent>/<date>_<time>_<process id>`` (see conf/hydra/default.yaml): processes alive
    at the same time have different ids, so directories named in the same second differ."""
    return f"{parent}/{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}"


# Cached like Hydra's own ${now:}, and for the same reason: each reading of a config's
# directory gives the same name, and every job of a multirun, in a launcher's worker process
# too, gets its sweep's (Hydra copies the master config's resolver cache into each job's
# config, OmegaConf.copy_cache). No side effect: whoever needs a run's directory reads it
# from the composed config (``paths.output_dir``).
if not OmegaConf.has_resolver("dlbasics_run_dir"):
    OmegaConf.register_new_resolver("dlbasics_run_dir", _stamped, use_cache=True)
if not OmegaConf.has_resolver("dlbasics_sweep_dir"):
    OmegaConf.register_new_resolver("dlbasics_sweep_dir", _stamped, use_cache=True)


# -- what a run was started with, and a name that says it -------------------------------

# Overrides that say nothing about what was trained: where files go, what is shown.
_NOT_IN_NAMES = (
    "paths.",
    "callbacks.",
    "logger",
    "figures",
    "ckpt_path",
    "trainer.enable_",
    "hparams_search",
)
_NAME_LIMIT = 100  # characters: a file name may have 255, and TensorBoard shows less


def run_record(output_dir: str | Path | None = None) -> tuple[dict[str, str], list[str]]:
    """The option chosen in each config group and the command line's overrides of a run.

    Inside a Hydra job they come from ``HydraConfig``; a resumed run (no Hydra job) reads
    them from its own ``<output_dir>/.hydra/hydra.yaml``. Empty where neither exists (a
    config composed in a test).
    """
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        choices, overrides = hydra_cfg.runtime.choices, hydra_cfg.overrides.task
    else:
        saved = Path(output_dir or ".") / ".hydra" / "hydra.yaml"
        if not saved.is_file():
            return {}, []
        hydra_cfg = OmegaConf.load(saved).hydra
        choices, overrides = hydra_cfg.runtime.choices, hydra_cfg.overrides.task
    return (
        {str(group): option for group, option in choices.items() if option is not None},
        [str(override) for override in overrides],
    )


def changes_what_is_trained(override: str) -> bool:
    """False for overrides that only change where files go, what is shown or how a search
    runs (``logger=csv``, ``paths.log_dir=...``, ``hparams_search.n_trials=40``)."""
    return not override.lstrip("+~").startswith(_NOT_IN_NAMES)


def run_name(choices: dict[str, str], overrides: list[str]) -> str:
    """A folder name that says what a run trained: ``mlp-moons,optimizer.lr=0.1``.

    Model and data first, then the command line's other overrides (a sweep's job has its
    own values there), leaving out those that change only where files go or what is
    shown. Cut at a whole override beyond :data:`_NAME_LIMIT` characters.
    """
    model, data = choices.get("model"), choices.get("data")
    if not (model and data):
        return "run"
    said = {f"model={model}", f"data={data}"}
    rest = [
        _safe_in_path(override)
        for override in overrides
        if override not in said and changes_what_is_trained(override)
    ]
    name = f"{model}-{data}"
    for index, override in enumerate(rest):
        if len(name) + len(override) + 1 > _NAME_LIMIT:
            return f"{name},+{len(rest) - index}_more"
        name = f"{name},{override}"
    return name


def _safe_in_path(text: str) -> str:
    """``data.path=data/x.csv`` -> ``data.path=data_x.csv``: one folder, no shell quoting."""
    return re.sub(r"[^\w.,=+~\-\[\]]", "_", text)


def _run_name_resolver(*, _root_: DictConfig) -> str:
    """``${dlbasics_run_name:}``: :func:`run_name` of the run whose config this is."""
    from hydra.core.hydra_config import HydraConfig

    output_dir = None if HydraConfig.initialized() else _root_.paths.output_dir
    return run_name(*run_record(output_dir))


# Names the run's TensorBoard folder (conf/logger/tensorboard.yaml), so that
# `tensorboard --logdir outputs` lists runs by what they trained.
if not OmegaConf.has_resolver("dlbasics_run_name"):
    OmegaConf.register_new_resolver("dlbasics_run_name", _run_name_resolver)


def group_options(search_path: list[str] = ()) -> dict[str, list[str]]:
    """Every config group and its options: the YAML files of ``conf/`` (presets included) and
    the folders of a search path (``file://`` or ``pkg://`` entries, the user's own)."""
    folders = [CONFIG_DIR, *(folder for entry in search_path if (folder := _folder(entry)))]
    groups: dict[str, set[str]] = {}
    for root in folders:
        for folder in root.iterdir():
            if folder.is_dir() and not folder.name.startswith((".", "_")):
                names = {path.stem for path in folder.glob("*.yaml")}
                groups.setdefault(folder.name, set()).update(names)
    return {group: sorted(names) for group, names in groups.items()}


def _folder(entry: str) -> Path | None:
    """The folder of a Hydra search-path entry, if it exists."""
    if entry.startswith("pkg://"):
        from importlib.resources import files

        try:
            folder = Path(str(files(entry[len("pkg://") :].replace("/", "."))))
        except ModuleNotFoundError:
            return None
    else:
        folder = Path(entry.removeprefix("file://")).expanduser()
    return folder if folder.is_dir() else None
