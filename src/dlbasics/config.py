"""Where the config tree lives, and how the experiment presets join it.

Kept free of torch and Lightning imports: `--help` and `--cfg job` go through here only.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

_PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    """A folder shipped inside the wheel, or the project's top-level folder in a checkout."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"dlbasics cannot find its {name}/ folder next to {_PACKAGE_DIR}")


CONFIG_DIR = _find("conf")
EXPERIMENTS_DIR = _find("experiments")

# Part of every run directory's name (see conf/hydra/default.yaml): processes alive at the
# same time have different ids, so runs started in the same second get different folders.
if not OmegaConf.has_resolver("dlbasics_pid"):
    OmegaConf.register_new_resolver("dlbasics_pid", os.getpid, use_cache=True)


def register_experiments(directory: Path = EXPERIMENTS_DIR) -> list[str]:
    """Make every ``experiments/NAME.yaml`` selectable as ``experiment=NAME``.

    The presets live in the top-level ``experiments/`` folder rather than inside
    ``conf/``; registering them in Hydra's config store puts them in the ``experiment``
    group, where their own ``defaults`` lists and ``# @package _global_`` apply as usual.
    """
    store = ConfigStore.instance()
    names = []
    for path in sorted(directory.glob("*.yaml")):
        store.store(
            group="experiment", name=path.stem, node=OmegaConf.load(path), package="_global_"
        )
        names.append(path.stem)
    return names


def group_options(search_path: list[str] = ()) -> dict[str, list[str]]:
    """Every config group and its options: the YAML files of ``conf/``, the presets, and
    the folders of a search path (``file://`` or ``pkg://`` entries, the user's own)."""
    folders = [CONFIG_DIR, *(folder for entry in search_path if (folder := _folder(entry)))]
    groups: dict[str, set[str]] = {"experiment": {p.stem for p in EXPERIMENTS_DIR.glob("*.yaml")}}
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
