"""Building loggers and callbacks from their config groups, and closing the TensorBoard run."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

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


def build_loggers(config: DictConfig | None) -> list[Logger]:
    """One logger per entry of the ``logger`` group (none for ``logger=none``)."""
    return [instantiate(entry) for entry in (config or {}).values() if entry]


def build_callbacks(
    config: DictConfig | None, has_logger: bool, progress_bar: bool
) -> list[Callback]:
    """One callback per non-null entry of the ``callbacks`` group.

    The learning-rate monitor needs a logger, and Lightning refuses a progress bar
    callback with ``trainer.enable_progress_bar=false``: each is left out when it cannot work.
    """
    callbacks = [instantiate(entry) for entry in (config or {}).values() if entry]
    if not has_logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not progress_bar:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def log_hyperparameters(
    loggers: list[Logger], cfg: DictConfig, metrics: Mapping[str, float]
) -> None:
    """Fill TensorBoard's HPARAMS tab: the run's config against its real final metrics.

    The metric values themselves come from the scalars already logged under the same
    names; this writes only the session summary that links them, so no placeholder
    (Lightning's ``hp_metric = -1``) and no duplicate scalar appear.
    """
    from torch.utils.tensorboard.summary import hparams

    params = _flatten(OmegaConf.to_container(cfg, resolve=True))
    params = {
        key: value
        for key, value in params.items()
        if not key.startswith(("paths/", "callbacks/", "logger/"))
    }
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()
            for summary in hparams(params, dict(metrics)):
                writer.add_summary(summary)
            logger.experiment.flush()


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
