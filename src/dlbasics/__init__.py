"""dlbasics: the classic first deep-learning exercises as config-driven experiments.

In Python or a notebook::

    import dlbasics
    run = dlbasics.fit("experiment=cnn_digits", "trainer.max_epochs=5")
    run.metrics, run.history, run.figures, run.predict(rows)
    dlbasics.load("outputs/train/runs/<run>")        # any finished run
    dlbasics.sweep("optimizer.lr=0.01,0.1", "seed=0,1,2").summary

The same override strings as ``python -m dlbasics.train``. A mistake raises a
:class:`DlbasicsError` whose message is the line the command line prints. The package stays
light to import: torch, Lightning and Hydra load when a function needs them.
"""

from dlbasics.errors import (
    ConfigError,
    DataError,
    DlbasicsError,
    RunInterrupted,
    TrainingDiverged,
)

__version__ = "0.1.0"
__all__ = [
    "fit",
    "load",
    "load_sweep",
    "sweep",
    "lr_find",
    "Run",
    "Sweep",
    "DlbasicsError",
    "ConfigError",
    "DataError",
    "TrainingDiverged",
    "RunInterrupted",
]

_FROM = {
    "fit": "dlbasics.api",
    "load": "dlbasics.api",
    "load_sweep": "dlbasics.api",
    "sweep": "dlbasics.api",
    "lr_find": "dlbasics.training.lr_find",
    "Run": "dlbasics.using.run",
    "Sweep": "dlbasics.using.run",
}


def __getattr__(name: str):
    """``dlbasics.fit`` and the others, imported when first used."""
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(_FROM[name]), name)
    raise AttributeError(f"module 'dlbasics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FROM])
