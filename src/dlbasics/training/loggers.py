"""Lightning's TensorBoard and CSV loggers with one record per epoch, stepped by the number
of epochs trained, and TensorBoard's metrics of a record in one event, in one events file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary

Record = tuple[dict[str, Any], "int | None"]  # metrics and the step to write them at


class EpochRecords:
    """Gathers what Lightning logs during one epoch into one record, whose step is the
    number of epochs trained when its values were measured.

    Lightning writes each hook's ``self.log`` values as a record of its own (a training
    epoch's validation metrics, then its training metrics), at a step it chooses itself (its
    count of training batches, which the fast path's chunks would make meaningless), with
    ``epoch``: the trainer's ``current_epoch``, which Lightning advances only after an
    epoch's end hooks. So:

    * records with the same ``epoch`` are merged, in the order logged: one TensorBoard
      event, one CSV row per epoch;
    * the record holding an epoch's ``train/`` metrics ends that epoch: it is written at
      once, at ``epoch + 1`` (1 after the first epoch), whatever came before it that epoch;
    * a record of another epoch without them (the test, or a validation, after training)
      is written when the next record or the end comes, at ``epoch``: the epochs trained;
    * a record without ``epoch`` was logged straight to the logger with its own step
      (``best/...``) and is written as it comes.

    Curves of runs with other batch sizes or lengths line up, and a resumed run goes on
    where the checkpoint's epoch count left off.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gathered: dict[str, Any] = {}  # an epoch's record, not yet written

    def gather(self, metrics: Mapping[str, Any], step: int | None) -> list[Record]:
        """The records to write now that Lightning logged ``metrics`` at ``step``."""
        epoch = metrics.get("epoch")
        ready = []
        if self._gathered and self._gathered["epoch"] != epoch:
            ready = self.release()
        if epoch is None:
            return [*ready, (dict(metrics), step)]
        self._gathered.update(metrics)
        if any(name.startswith("train/") for name in metrics):
            record, self._gathered = self._gathered, {}
            ready.append((record, int(epoch) + 1))
        return ready

    def release(self) -> list[Record]:
        """The record still gathered (measured after training: at ``epoch``), if any."""
        record, self._gathered = self._gathered, {}
        return [(record, int(record["epoch"]))] if record else []


class TensorBoardLogger(EpochRecords, LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, one event per epoch (:class:`EpochRecords`).

    * Each event written costs about 90 µs here (the writer hands it to a background
      thread), so one event per epoch instead of one per metric keeps logging cheap for
      runs made of many short epochs. TensorBoard reads the values exactly as before.
    * Lightning calls :meth:`save` after every record, and its own flushes the events file
      each time: here the writer flushes on its own timer, and when training ends.
    * The ``epoch`` value that Lightning's loggers receive (the CSV logger keeps it as a
      column) is the step already, so it is not written as a scalar of its own.
    * Lightning closes the writer when ``fit`` ends, and the test metrics and the HPARAMS
      session's end that follow would start a second events file: a successful
      :meth:`finalize` only flushes, and :meth:`close` ends the file.
    """

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for record, at in self.gather(metrics, step):
            self._write_record(record, at)

    def _write_record(self, metrics: Mapping[str, float], step: int | None) -> None:
        values = [
            Summary.Value(tag=name, simple_value=float(value))
            for name, value in metrics.items()
            if name != "epoch" and not isinstance(value, Mapping)
        ]
        self.write(Summary(value=values), step)

    @rank_zero_only
    def write(self, summary: Summary, step: int | None = None) -> None:
        """Append one summary (any number of values) to the events file as one event."""
        self.experiment.file_writer.add_summary(summary, global_step=step)

    _saved_once = False

    @rank_zero_only
    def save(self) -> None:
        """Lightning's (a flush, and ``hparams.yaml`` if missing) the first time and when
        training ends; between, nothing (see the class docstring)."""
        if not self._saved_once:
            super().save()
            self._saved_once = True

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status != "success":  # failed or stopped: nothing more will be written
            self.release()  # a failed epoch's validation, say: not a point of the curves
            super().finalize(status)
            return
        for record, at in self.release():
            self._write_record(record, at)
        self.experiment.flush()
        super().save()

    @rank_zero_only
    def close(self) -> None:
        """Flush and close the events file (and save ``hparams.yaml``): the run is over."""
        for record, at in self.release():
            self._write_record(record, at)
        self._saved_once = False  # Lightning's finalize ends with a save: the last one
        super().finalize("success")


class CSVLogger(EpochRecords, LightningCSVLogger):
    """Lightning's CSV logger, one row per epoch (:class:`EpochRecords`): the ``step``
    column is the number of epochs trained, as in TensorBoard, beside Lightning's ``epoch``
    (counted from 0)."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for record, at in self.gather(metrics, step):
            super().log_metrics(record, at)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        records = self.release()
        if status == "success":
            for record, at in records:
                super().log_metrics(record, at)
        super().finalize(status)
