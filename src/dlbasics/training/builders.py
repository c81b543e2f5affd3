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

# Lightning messages that no dlbasics user can act on.
_NOT_ACTIONABLE = ("💡 Tip", "TPU available", "HPU available")


def quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's logging once, minus hints that do not apply.

    Lightning adds its own console handler on import; Hydra's handlers already print the
    same records and write them to the run's log file.
    """
    logging.getLogger("lightning").handlers.clear()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith(_NOT_ACTIONABLE)
    )
    # Raised inside Lightning by newer torch releases; nothing to change on our side.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


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
