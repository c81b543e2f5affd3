"""Building objects from their config groups, and closing the TensorBoard run.

Every object a config describes is built through :func:`build` or under
:func:`config_errors`, so a value the library refuses (``optimizer.momentum=-1``) is one
line naming the key and what the library said, not Hydra's traceback.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from dlbasics.errors import ConfigError, DlbasicsError

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
            if not str(name).startswith("_") and re.search(rf"\b{re.escape(str(name))}\b", reason)
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
