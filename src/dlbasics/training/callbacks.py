"""Callbacks: checkpoints that cost little, a progress display that costs little (a table of
epochs in a notebook), the run's history of epoch metrics, and a graceful stop."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ProgressBar
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dlbasics.errors import RunDirectoryRemoved, TrainingDiverged

log = logging.getLogger(__name__)


class BestAndLastCheckpoint(Checkpoint):
    """Keep ``best.ckpt`` (lowest ``monitor``) and ``last.ckpt`` without saving every epoch.

    Saving a checkpoint every epoch dominates runs made of many short epochs. Instead the
    best weights are copied in memory whenever ``monitor`` improves (a copy of a small
    model costs microseconds), and both files are written every ``every_n_seconds``, every
    ``every_n_epochs`` if set, when training ends, and when it is interrupted. Each file is
    written to a temporary name and renamed, so a crash mid-write never truncates the last
    good checkpoint.

    Args:
        dirpath: folder of the two files.
        monitor: logged metric to minimise; if it is never logged (no validation split),
            ``fallback_monitor`` is used.
        every_n_seconds: write at the first epoch end after this many seconds (``None``: never).
        every_n_epochs: also write every N epochs (``None``: never).
    """

    def __init__(
        self,
        dirpath: str | Path,
        monitor: str = "val/loss",
        fallback_monitor: str = "train/loss",
        every_n_seconds: float | None = 60.0,
        every_n_epochs: int | None = None,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.fallback_monitor = fallback_monitor
        self.every_n_seconds = every_n_seconds
        self.every_n_epochs = every_n_epochs
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None  # not yet on disk
        self._writing_best = False
        self._finished = False
        self._started = False  # training began (after any checkpoint was restored)
        self._last_write = time.monotonic()

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.ckpt"

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    # -- tracking the best weights ------------------------------------------------------

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._track(trainer, pl_module, self.monitor)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the module's own hook, so this epoch's train loss is logged already.
        if self.monitor not in trainer.callback_metrics:
            self._track(trainer, pl_module, self.fallback_monitor)
        epoch = trainer.current_epoch + 1
        due_by_time = (
            self.every_n_seconds is not None
            and time.monotonic() - self._last_write >= self.every_n_seconds
        )
        due_by_epoch = self.every_n_epochs is not None and epoch % self.every_n_epochs == 0
        # Under DDP saving is collective: the first process's clock decides for every one.
        if trainer.strategy.broadcast(due_by_time or due_by_epoch):
            self.write(trainer)

    def _track(self, trainer: pl.Trainer, pl_module: pl.LightningModule, key: str) -> None:
        value = trainer.callback_metrics.get(key)
        if value is None:
            return
        score = float(value)  # one read per epoch
        if not math.isfinite(score):
            return  # diverged weights are never "best"
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self._best_weights = {
                name: tensor.detach().clone() for name, tensor in pl_module.state_dict().items()
            }

    # -- writing ------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = True
        # The run's directory: if it is deleted while training, it is not made again.
        self._run_dir = self.dirpath.parent if self.dirpath.parent.is_dir() else None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stopped_by_signal = any(
            isinstance(c, GracefulStop) and c.stopped for c in trainer.callbacks
        )
        self._finished = not stopped_by_signal
        self.write(trainer)
        self._finished = False

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not self._started or self._removed():
            return  # failed while starting (e.g. restoring a checkpoint): nothing new to keep
        if isinstance(exception, TrainingDiverged):
            self.write(trainer, last=False)  # the current weights are not finite: keep last.ckpt
        elif trainer.training:
            self.write(trainer)

    def write(self, trainer: pl.Trainer, last: bool = True) -> None:
        """Write ``last.ckpt``, and ``best.ckpt`` if the best weights changed since the last write."""
        if self._removed():
            raise RunDirectoryRemoved.of(self._run_dir)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        # Every process joins each save (it ends in a barrier); the first one's view decides.
        if trainer.strategy.broadcast(self._best_weights is not None):
            self._writing_best = True
            try:
                _atomic_save(trainer, self.best_path)
            finally:
                self._writing_best = False
            self._best_weights = None
        if last:
            _atomic_save(trainer, self.last_path)
        self._last_write = time.monotonic()

    def _removed(self) -> bool:
        run_dir = getattr(self, "_run_dir", None)
        return run_dir is not None and not run_dir.is_dir()

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Whether this run ran to its end (not stopped by a signal): resume says "finished".
        checkpoint["dlbasics_finished"] = self._finished
        if self._writing_best:
            checkpoint["state_dict"] = self._best_weights
            checkpoint["best_epoch"] = self.best_epoch

    # -- state kept in checkpoints (for resuming) ---------------------------------------

    def state_dict(self) -> dict[str, Any]:
        # The random state too (dropout), so a resumed run continues exactly.
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "torch_rng_state": torch.get_rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]
        if "torch_rng_state" in state_dict:
            torch.set_rng_state(state_dict["torch_rng_state"])


def _atomic_save(trainer: pl.Trainer, path: Path) -> None:
    """Save a checkpoint to a temporary file, then rename it over ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(temporary, weights_only=False)  # every process; rank 0 writes
    if trainer.is_global_zero:
        os.replace(temporary, path)


# The latest epoch's metrics on the bar: loss and the task's headline metric, train
# beside val (the full set is in TensorBoard and the closing table).
_ON_THE_BAR = tuple(
    f"{split}/{name}" for split in ("train", "val") for name in ("loss", "acc", "r2")
)


class EpochProgressBar(ProgressBar):
    """A progress bar over epochs, with the latest epoch metrics, that costs microseconds.

    Lightning's Rich progress bar redraws on every batch and rebuilds its bars every
    epoch (about 2 ms per epoch here, more than a whole epoch of a small model). This one
    updates one Rich task at most ``refresh_per_second`` times a second (an inner bar
    over chunks of batches shows for long epochs), and Rich redraws it from its own thread.
    """

    # Its batch hook only moves the inner bar: a chunk of minibatches is as good a tick.
    chunk_safe = True

    def __init__(self, refresh_per_second: float = 4.0) -> None:
        super().__init__()
        self.refresh_per_second = refresh_per_second
        self._enabled = True
        self._progress: Progress | None = None
        self._epochs: TaskID | None = None
        self._chunks: TaskID | None = None
        self._updated_at = 0.0
        self._table = None  # in a notebook: dlbasics.training.notebook.EpochTable

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        from dlbasics.training.report import console

        if console.is_jupyter:  # a notebook: a table of epochs, updated in place
            from dlbasics.training.notebook import EpochTable

            self._table = EpochTable(trainer.max_epochs, done=trainer.current_epoch)
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            refresh_per_second=self.refresh_per_second,
        )
        self._progress.start()
        self._epochs = self._progress.add_task(
            "Epochs", total=trainer.max_epochs, completed=trainer.current_epoch, metrics=""
        )
        self._chunks = self._progress.add_task("Batches", total=None, metrics="", visible=False)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._table is not None and trainer.current_epoch > self._table.resumed_at:
            # The module publishes an epoch's metrics after the callbacks' epoch-end hooks:
            # the row of the epoch just trained is complete now.
            self._table.add(trainer.current_epoch, trainer.callback_metrics, self._due())
        if self._progress is not None and trainer.num_training_batches > 1:
            self._progress.reset(self._chunks, total=trainer.num_training_batches, visible=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The inner bar only appears for epochs long enough to watch.
        if self._progress is not None and trainer.num_training_batches > 1 and self._due():
            self._progress.update(self._chunks, completed=batch_idx + 1, visible=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._progress is not None and self._due():
            self._show_epoch(trainer, epochs_done=trainer.current_epoch + 1)

    def _due(self) -> bool:
        """At most ``refresh_per_second`` updates: formatting metrics every epoch of a
        sub-millisecond epoch would cost more than the epoch."""
        now = time.monotonic()
        if now - self._updated_at < 1.0 / self.refresh_per_second:
            return False
        self._updated_at = now
        return True

    def _show_epoch(self, trainer: pl.Trainer, epochs_done: int) -> None:
        shown = trainer.callback_metrics
        metrics = "  ".join(
            f"{name} {float(shown[name]):.3g}" for name in _ON_THE_BAR if name in shown
        )
        self._progress.update(self._epochs, completed=epochs_done, metrics=metrics)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._table is not None:
            self._table.add(trainer.current_epoch, trainer.callback_metrics, show=True)
            self._table = None
        if self._progress is not None:
            # The final state, whatever the throttle skipped (the epoch counter has moved on);
            # the inner bar of the last epoch would stay behind, half full.
            self._show_epoch(trainer, epochs_done=trainer.current_epoch)
            self._progress.update(self._chunks, visible=False)
        self._stop()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._table is not None:
            self._table.show()
            self._table = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class GracefulStop(Callback):
    """Ctrl-C or SIGTERM ends training at the next epoch's end, with a checkpoint.

    Stopping between epochs makes the resumed run exact: every epoch's batch order depends
    only on the seed and the epoch number. An epoch still running after ``grace_seconds``
    is cut short at the next chunk of batches instead (one process only). A second signal
    stops at once.

    It builds on Lightning's own signal handling. When fit starts, Lightning's signal
    connector installs a SIGTERM handler that sets ``trainer.received_sigterm`` and passes
    the signal on (to the processes its launcher started, and under DDP to the other
    ranks); Lightning then stops after the current batch with ``SIGTERMException``, which in
    the middle of an epoch a resumed run could not repeat exactly. For SIGINT Lightning
    installs nothing: a KeyboardInterrupt ends ``trainer.fit`` through its graceful shutdown
    (``on_exception``, then ``SystemExit(1)``). So, while training runs:

    * the first SIGINT or SIGTERM is noted by a handler put in front of the one found
      there (Lightning's, for SIGTERM), and the run stops at the epoch's end through
      ``trainer.should_stop``, as :class:`~lightning.pytorch.callbacks.EarlyStopping` stops
      it; under DDP the processes decide together, so a signal to any of them stops all at
      the same epoch;
    * a second signal goes to the handler found there: Lightning's for SIGTERM (Lightning
      stops after the current batch), the process's own for SIGINT (Python's, or a notebook
      kernel's: a KeyboardInterrupt, which Lightning shuts down from);
    * the handlers found are put back when training ends or fails.

    :func:`dlbasics.training.train.train` turns either stop into a
    :class:`~dlbasics.errors.RunInterrupted` (exit 128 + the signal's number).
    """

    # Its batch hook only watches the clock: a chunk of minibatches is as good a tick.
    chunk_safe = True

    def __init__(self, grace_seconds: float = 3.0) -> None:
        self.grace_seconds = grace_seconds
        self.received: signal.Signals | None = None  # the first signal to this process
        self.again: signal.Signals | None = None  # a second one: handed on, training stops now
        self.stopped = False  # training was stopped by a signal (to this or another process)
        self._received_at = 0.0
        self._previous: dict[signal.Signals, Any] = {}  # the handlers found, put back after

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = self.again = None
        self.stopped = False
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        signum = signal.Signals(signum)
        if self.received is None:
            self.received, self._received_at = signum, time.monotonic()
            log.warning(
                "%s received: stopping after this epoch and saving a checkpoint "
                "(send it again to stop at once).",
                signum.name,
            )
            return
        # A second signal: the handler found there stops training now.
        self.again = signum
        previous = self._previous.get(signum)
        self._restore()
        log.warning("%s again: stopping now.", signum.name)
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL or SIG_IGN: stop as Python's own SIGINT handler would
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.world_size > 1:
            return  # DDP: processes must stop at the same step, so at the epoch's end
        if self.received and time.monotonic() - self._received_at > self.grace_seconds:
            trainer.should_stop = self.stopped = True  # a long epoch: stop within the grace

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Under DDP a signal may reach one process only: any process that got one stops all.
        if trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            trainer.should_stop = self.stopped = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Only where the handler is still this one's: while Lightning shuts down after a
        # KeyboardInterrupt it ignores SIGINT, and puts back what it found when it is done.
        self._restore(only_own=True)

    def _restore(self, only_own: bool = False) -> None:
        for signum, handler in self._previous.items():
            if not only_own or signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, handler)
        self._previous = {}


class TrackBest(Callback):
    """Remember the best value of the run's objective (``val/acc`` or ``val/loss``, see
    :mod:`dlbasics.training.objective`) and the epoch that reached it: what a sweep compares runs by.

    The value is read once per validation, from what the module logged. The training
    split's metric of the same name is tracked beside it and used only by a run that never
    validated (no validation split): the two are never compared with each other. Kept in
    checkpoints, so a resumed run still knows its best epoch.
    """

    chunk_safe = True  # no per-step hooks

    def __init__(self, metric: str, direction: str) -> None:
        from dlbasics.training.objective import Objective

        self.objective = Objective(metric, direction)
        # metric name -> (best value, epoch counted from 1), for the metric and its fallback
        self.best: dict[str, tuple[float, int]] = {}

    @property
    def fallback(self) -> str:
        return "train/" + self.objective.metric.split("/", 1)[-1]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._track(trainer, self.objective.metric, epoch=trainer.current_epoch + 1)

    # The module publishes an epoch's training metrics in its own on_train_epoch_end, which
    # Lightning calls after this callback's: they are read when the next epoch starts, and
    # when training ends (current_epoch then counts the epochs trained).
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._track(trainer, self.fallback, epoch=trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._track(trainer, self.fallback, epoch=trainer.current_epoch)

    def _track(self, trainer: pl.Trainer, key: str, epoch: int) -> None:
        value = trainer.callback_metrics.get(key)
        best = self.best.get(key)
        if value is not None and self.objective.better(float(value), best[0] if best else None):
            self.best[key] = (float(value), epoch)

    def outcome(self):
        """The run's :class:`~dlbasics.training.objective.Outcome`: the objective's best, or the
        training split's where the run never validated (the outcome names which)."""
        from dlbasics.training.objective import Outcome

        metric = self.objective.metric if self.objective.metric in self.best else self.fallback
        value, epoch = self.best.get(metric, (None, None))
        return Outcome(metric, self.objective.direction, value, epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"best": {key: list(pair) for key, pair in self.best.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = {key: (pair[0], pair[1]) for key, pair in state_dict["best"].items()}


class History(Callback):
    """One row per epoch of every train/ and val/ metric the module logged, written to
    ``<run dir>/history.csv`` when training ends or stops (what ``Run.history`` reads, as
    Keras' ``History`` and fastai's ``Recorder`` keep it). A resumed run keeps the rows of
    the epochs its checkpoint holds and appends its own."""

    chunk_safe = True  # no per-step hooks
    FILE = "history.csv"

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / self.FILE
        self.rows: dict[int, dict[str, float]] = {}  # epoch counted from 1 -> metrics

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = {}
        if self.path.is_file():  # resumed: the epochs before the checkpoint's
            import csv

            with open(self.path, newline="") as handle:
                for row in csv.DictReader(handle):
                    epoch = int(row.pop("epoch"))
                    if epoch <= trainer.current_epoch:
                        self.rows[epoch] = {k: float(v) for k, v in row.items() if v != ""}

    # As in TrackBest: an epoch's training metrics are published after the callbacks'
    # epoch-end hooks, so its row is taken when the next epoch starts, or when training ends.
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_run_dir()
        if trainer.current_epoch > 0:
            self._take(trainer, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_run_dir()  # before the module logs the epoch (a logger would fail)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_run_dir()
        if trainer.current_epoch > 0:
            self._take(trainer, trainer.current_epoch)
        self.write()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.path.parent.is_dir():  # else the run directory was deleted: nothing to keep
            self.write()

    def _check_run_dir(self) -> None:
        """Stop once the run's directory is deleted (writing on would make parts of it)."""
        if not self.path.parent.is_dir():
            raise RunDirectoryRemoved.of(self.path.parent)

    def _take(self, trainer: pl.Trainer, epoch: int) -> None:
        row = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(("train/", "val/"))
        }
        if row:  # none right after a resume: that epoch's row came from the file
            self.rows[epoch] = row

    def write(self) -> None:
        import csv

        if not self.rows:
            return
        names = sorted({name for row in self.rows.values() for name in row})
        partial = self.path.with_name(f".{self.path.name}.partial")
        with open(partial, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["epoch", *names])
            writer.writeheader()
            for epoch in sorted(self.rows):
                writer.writerow({"epoch": epoch, **self.rows[epoch]})
        partial.replace(self.path)
