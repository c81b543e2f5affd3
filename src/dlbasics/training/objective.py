"""What a run is judged by when runs are compared: one metric, its direction, its best value.

A sweep or a search compares runs by the best epoch's value of the task's validation
metric: the accuracy for classification (higher is better), the loss for regression (lower
is better). Every run writes its own to ``<run dir>/objective.json``, so a sweep's summary
and the search can read it whichever process or machine ran the job.

Free of torch and Lightning imports.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from dlbasics.errors import ConfigError

OBJECTIVE_FILE = "objective.json"
DIRECTIONS = ("minimize", "maximize")
# The metric compared when none is named (hparams_search.metric=auto), by task.
TASK_METRICS = {"classification": "val/acc", "regression": "val/loss"}
# The validation metrics a run logs, by task (dlbasics.training.module), and which way is better.
VALIDATION_METRICS = {
    "classification": ("val/loss", "val/acc", "val/f1"),
    "regression": ("val/loss", "val/mse", "val/mae", "val/r2"),
}
_HIGHER_IS_BETTER = ("acc", "f1", "r2")  # the others (loss, mse, mae): lower is better


@dataclass(frozen=True)
class Objective:
    metric: str  # a logged metric, e.g. "val/acc"
    direction: str  # "minimize" or "maximize"

    def better(self, value: float, than: float | None) -> bool:
        """Whether ``value`` improves on ``than`` (None: nothing yet). NaN never does."""
        if not math.isfinite(value):
            return False
        if than is None:
            return True
        return value < than if self.direction == "minimize" else value > than

    def sort_key(self, value: float | None) -> float:
        """Best first when sorted ascending; runs without a value last."""
        if value is None or not math.isfinite(value):
            return math.inf
        return value if self.direction == "minimize" else -value


def choose_objective(task: str, metric: str = "auto", direction: str = "auto") -> Objective:
    """The metric to compare runs by (``auto``: :data:`TASK_METRICS` of the task) and its
    direction (``auto``: from the metric's name)."""
    if metric in (None, "auto"):
        metric = TASK_METRICS[task]
    check_metric(metric, VALIDATION_METRICS[task], f"{task} runs")
    if direction in (None, "auto"):  # every metric checked above has a known direction
        name = str(metric).rsplit("/", 1)[-1]
        direction = "maximize" if name in _HIGHER_IS_BETTER else "minimize"
    check_direction(direction)
    return Objective(str(metric), str(direction))


def check_metric(metric: str, known=None, what: str = "runs") -> None:
    """``hparams_search.metric`` must be one of the validation metrics runs log."""
    known = known or sorted({m for names in VALIDATION_METRICS.values() for m in names})
    if metric not in ("auto", *known):
        raise ConfigError(
            f"hparams_search.metric={metric}: not a validation metric of {what}; "
            f"use auto or one of {', '.join(known)}"
        )


def check_direction(direction: str) -> None:
    if direction not in ("auto", *DIRECTIONS):
        raise ConfigError(
            f"hparams_search.direction={direction}: one of auto, {', '.join(DIRECTIONS)}"
        )


def objective_settings(cfg) -> tuple[str, str]:
    """``hparams_search.metric`` and ``.direction`` of a config (``auto`` without a search)."""
    search = cfg.get("hparams_search") or {}
    return str(search.get("metric") or "auto"), str(search.get("direction") or "auto")


@dataclass(frozen=True)
class Outcome:
    """A run's best value of its objective, and the epoch (counted from 1) that reached it."""

    metric: str
    direction: str
    value: float | None  # None: never measured (no epoch finished, or every value was NaN)
    epoch: int | None

    def save(self, run_dir: str | Path) -> Path:
        file = Path(run_dir) / OBJECTIVE_FILE
        file.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return file

    @classmethod
    def read(cls, run_dir: str | Path) -> Outcome | None:
        """The outcome saved in ``run_dir``, or None if the run wrote none (it failed)."""
        file = Path(run_dir) / OBJECTIVE_FILE
        try:
            return cls(**json.loads(file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def objective(self) -> Objective:
        return Objective(self.metric, self.direction)
