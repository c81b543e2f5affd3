"""Building objects from their config groups, and a run's row in TensorBoard's HPARAMS tab.

Every object a config describes is built through :func:`build` or under
:func:`config_errors`, so a value the library refuses (``optimizer.momentum=-1``) is one
line naming the key and what the library said, not Hydra's traceback.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from dlbasics.errors import ConfigError, DlbasicsError
from dlbasics.training.loggers import TensorBoardLogger
from dlbasics.training.report import FILE_ONLY


def quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's logging once; its notes go to the log file.

    Lightning adds its own console handler on import; Hydra's handlers already print the
    same records and write them to the run's log file. Lightning's notes (its
    ``rank_zero_info``, all from one logger) say which accelerators exist, suggest
    installing its cloud logger, name the checkpoint ``trainer.test`` loads and why fit
    stopped; no Trainer argument turns them off. The config tree, the progress bar and the
    closing table say on the console what applies to a dlbasics run, so the notes are kept
    for ``train.log`` only (:class:`LightningNotesToFile`). Lightning's warnings, which can
    be acted on, are Python warnings and still show.
    """
    # Lightning's handlers: on "lightning", or, when it was imported before any logging was
    # set up (a notebook's lr_find, then fit), on "lightning.pytorch" and "lightning.fabric",
    # which it then stops from propagating. Records go on to Hydra's handlers instead.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    notes = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, LightningNotesToFile) for f in notes.filters):
        notes.addFilter(LightningNotesToFile())
    # The one warning matched by its text: torch (2.13 here) deprecates its LeafSpec class,
    # which Lightning 2.6's own pytree helper still builds: "`isinstance(treespec, LeafSpec)`
    # is deprecated, use ...". A FutureWarning from torch's module about Lightning's code:
    # nothing for a dlbasics user to change, and torch's other FutureWarnings still show.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )


class LightningNotesToFile(logging.Filter):
    """Marks the records below WARNING of the logger it is added to for the run's log file
    only (:data:`dlbasics.training.report.FILE_ONLY`, which the console's handler leaves out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            record.__dict__.update(FILE_ONLY)
        return True


@contextlib.contextmanager
def config_errors(config: Any, key: str) -> Iterator[None]:
    """Turn an error raised while building ``config`` (found at ``key``) into a ConfigError.

    The message names the key, the class, what the library said, and the keys of the node
    that the library's message mentions (``optimizer.momentum=-1``).
    """
    try:
        yield
    except DlbasicsError:
        raise
    except Exception as error:  # whatever the library raises about its arguments
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        cause = cause or error
        reason = " ".join(str(cause).split()) or type(cause).__name__
        target = config.get("_target_", "?") if isinstance(config, Mapping) else "?"
        named = [
            f"{key}.{name}={value}"
            for name, value in (config.items() if isinstance(config, Mapping) else [])
            if not str(name).startswith("_")
            and re.search(rf"\b{re.escape(str(name))}\b", reason, re.IGNORECASE)
        ]
        check = f" (check {', '.join(named)})" if named else ""
        raise ConfigError(f"{key}: {target} refused its config: {reason}{check}") from None


def build(config: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(config, **kwargs)``, with errors as in :func:`config_errors`."""
    with config_errors(config, key):
        return instantiate(config, **kwargs)


def build_loggers(config: DictConfig | None) -> list[Logger]:
    """One logger per entry of the ``logger`` group (none for ``logger=none``)."""
    return [build(entry, f"logger.{name}") for name, entry in (config or {}).items() if entry]


def build_callbacks(
    config: DictConfig | None, has_logger: bool, progress_bar: bool
) -> list[Callback]:
    """One callback per non-null entry of the ``callbacks`` group.

    The learning-rate monitor needs a logger, and Lightning refuses a progress bar
    callback with ``trainer.enable_progress_bar=false``: each is left out when it cannot work.
    """
    callbacks = [
        build(entry, f"callbacks.{name}") for name, entry in (config or {}).items() if entry
    ]
    if not has_logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not progress_bar:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


# Config keys that say nothing about what a run learned: left out of the HPARAMS table,
# so that its columns are the ones that tell runs apart.
_NOT_HPARAMS = (
    "paths/*",
    "callbacks/*",
    "logger/*",
    "figures/*",
    "hparams_search/*",  # how a search ran, the same for all its trials
    "lr_find/*",  # settings of python -m dlbasics.lr_find, not of the run
    "ckpt_path",
    "*/_partial_",
    "trainer/default_root_dir",
    "trainer/enable_progress_bar",
    "trainer/enable_model_summary",
    "trainer/log_every_n_steps",
    "trainer/num_sanity_val_steps",
    "data/shuffle_seed",  # the run's seed again
)
# Config groups whose chosen option is not a setting of the experiment.
_NOT_CHOICES = ("hydra", "paths", "logger", "callbacks", "figures", "hparams_search")


def run_hparams(cfg: DictConfig) -> dict[str, object]:
    """A run's row of TensorBoard's HPARAMS table: the option chosen in each config group
    (``model: mlp``, ``optimizer: adam``) and the config values that can change what is
    learned (``optimizer/lr``, ``model/hidden_sizes``, ``seed``, ...).

    A group's ``_target_`` is left out where its option is known (it names the same thing).
    """
    from dlbasics.config.tree import run_record

    choices, _ = run_record(cfg.paths.output_dir)
    chosen = {
        group: option
        for group, option in choices.items()
        if "/" not in group and group not in _NOT_CHOICES
    }
    left_out = (*_NOT_HPARAMS, *(f"{group}/_target_" for group in chosen))
    values = _flatten(OmegaConf.to_container(cfg, resolve=True))
    return {
        **chosen,
        **{
            # TensorBoard would show a bool as 1 or 0: "True" reads as what it is.
            key: str(value) if isinstance(value, bool) else value
            for key, value in values.items()
            if not _matches(key, left_out)
        },
    }


def start_session(loggers: list[Logger], cfg: DictConfig) -> None:
    """Open the run's row in TensorBoard's HPARAMS tab: its :func:`run_hparams`.

    Only a session's start and end are written, no experiment summary: TensorBoard then
    builds one table over all runs, with the union of their hyperparameters as columns
    and every scalar they logged as metrics (one run's summary would set the columns of
    all). The metric values are the last points of those scalars, the final ones.
    """
    from torch.utils.tensorboard.summary import hparams

    _, session_start, _ = hparams(run_hparams(cfg), {})
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.write(session_start)


def end_session(loggers: list[Logger]) -> None:
    """Mark the run's HPARAMS row finished and close its events file."""
    from torch.utils.tensorboard.summary import hparams

    _, _, session_end = hparams({}, {})
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.write(session_end)
            logger.close()


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"model": {"dropout": 0.1}}`` -> ``{"model/dropout": 0.1}``; lists become strings."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "/"))
        elif value is None or isinstance(value, (list, tuple)):
            flat[name] = str(value)
        else:
            flat[name] = value
    return flat
