"""Where the config tree lives, and how the experiment presets join it.

Kept free of torch and Lightning imports: `--help` and `--cfg job` go through here only.
"""

from __future__ import annotations

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
