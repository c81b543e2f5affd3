"""One LightningModule that trains any net on any task.

:class:`SupervisedModule` picks loss and metrics from the task (MSE + MSE/MAE/R² for
regression, cross-entropy + accuracy/macro F1 for classification), builds the net,
optimizer and scheduler from their Hydra configs, and logs per epoch, with the number of
epochs trained as the step: ``train/loss``, the task's metrics on the training steps
(``train/acc``, or ``train/mse`` and ``train/r2``), ``train/lr``, and the loss and task
metrics of the ``val/`` and ``test/`` splits.

It optimises manually, one ``LightningOptimizer.step`` per minibatch (so
``trainer.global_step`` counts optimizer steps). While nothing listens to per-step hooks
it asks the datamodule for *chunks* of minibatches (:attr:`SupervisedModule.takes_chunks`),
so Lightning's fixed cost per step is paid once per chunk; otherwise each minibatch is a
Lightning step with every hook (see :mod:`dlbasics.training.batches`). Losses and the train
metrics' sums stay on the device and are read once per epoch, so no step waits for it.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics.functional as FM
from hydra.utils import instantiate
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.model_helpers import is_overridden
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from dlbasics.errors import TrainingDiverged
from dlbasics.training.batches import Batch


def task_metrics(
    task: str, prediction: torch.Tensor, target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The task's metrics over a whole split, keyed by the name they are logged under.

    Computed once per epoch on all predictions with torchmetrics' functional API: exact
    (macro F1 needs the counts of the whole split) and free of the per-batch bookkeeping
    of metric objects, which costs more than evaluating a small model.
    """
    if task == "classification":
        num_classes = prediction.shape[1]
        return {
            "acc": multiclass_accuracy(
                prediction, target, num_classes, average="micro", validate_args=False
            ),
            "f1": multiclass_f1_score(
                prediction, target, num_classes, average="macro", validate_args=False
            ),
        }
    return {
        "mse": FM.mean_squared_error(prediction, target),
        "mae": FM.mean_absolute_error(prediction, target),
        "r2": FM.r2_score(prediction, target, multioutput="uniform_average"),
    }


# Hooks that run once per optimizer step (or per Lightning batch, which a chunk stretches
# over many steps). While no callback and no subclass overrides them, nothing can notice
# the fast path: several optimizer steps per Lightning step, and a plain backward.
PER_STEP_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)


def listens_per_step(callback: pl.Callback) -> bool:
    """Whether ``callback`` overrides a per-step hook (dlbasics' own callbacks that only
    watch the clock or the epoch's progress say ``chunk_safe = True`` in their own class
    body; a subclass of theirs is judged by its hooks)."""
    if type(callback).__dict__.get("chunk_safe", False):
        return False
    return any(is_overridden(hook, callback, parent=pl.Callback) for hook in PER_STEP_HOOKS)


def limits_in_steps(trainer: pl.Trainer) -> bool:
    """Whether a limit of ``trainer`` counts Lightning steps (``max_steps``, a number or a
    part of the training batches, validation within an epoch): a chunk would count as one."""

    def whole_epoch(value: int | float | None) -> bool:
        return value is None or (isinstance(value, float) and value == 1.0)

    return (
        trainer.max_steps != -1
        or not whole_epoch(trainer.limit_train_batches)
        or not whole_epoch(trainer.val_check_interval)
    )


def _to_dict(config: Any) -> Any:
    """Hydra nodes become plain dicts, so hyperparameters pickle into checkpoints."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config


class _TensorScaling:
    """A datamodule's scaling statistics as tensors, on the device of what they scale."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean.to(values.device)) / self.std.to(values.device)

    def undo(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.std.to(values.device) + self.mean.to(values.device)


def _scaling(data: dict | None, key: str) -> _TensorScaling | None:
    saved = (data or {}).get(key)
    return _TensorScaling(saved["mean"], saved["std"]) if saved else None


def _spread(targets: torch.Tensor | None) -> torch.Tensor | None:
    """Each target column's sum of squared deviations from its mean (R²'s denominator),
    in float64 on the host; None if unknown or zero (a constant target has no R²)."""
    if targets is None:
        return None
    y = targets.detach().cpu().double().reshape(len(targets), -1)
    spread = (y - y.mean(dim=0)).square().sum(dim=0)
    return spread if bool((spread > 0).all()) else None


class SupervisedModule(pl.LightningModule):
    """Train a net built from ``net`` (a Hydra config) for ``task``.

    Args:
        net: config of a ``torch.nn.Module`` whose constructor takes ``input_shape`` and
            ``num_outputs`` (see :mod:`dlbasics.nets`).
        task: ``"regression"`` or ``"classification"``.
        input_shape: shape of one sample, as reported by the datamodule.
        num_outputs: number of classes or target columns, as reported by the datamodule.
        optimizer: partial config of a ``torch.optim.Optimizer`` (``_partial_: true``).
        scheduler: partial config of a learning-rate scheduler, or ``None``. It is stepped
            once per epoch; ``ReduceLROnPlateau`` sees the monitored loss.
        gradient_clip_val: clip the gradient norm to this value before each step.
        data: the datamodule's :meth:`~dlbasics.data.base.InMemoryDataModule.describe`:
            feature and class names and the training split's scaling, kept so a checkpoint
            can be used on raw data (:meth:`predict_raw`). With a standardised target, the
            metrics are reported in the target's own units.
    """

    def __init__(
        self,
        net: dict,
        task: str,
        input_shape: list[int],
        num_outputs: int,
        optimizer: dict,
        scheduler: dict | None = None,
        gradient_clip_val: float | None = None,
        data: dict | None = None,
    ) -> None:
        super().__init__()
        # Everything needed to rebuild the module, so `load_from_checkpoint(path)` works alone.
        self.save_hyperparameters(
            {
                "net": _to_dict(net),
                "task": task,
                "input_shape": list(input_shape),
                "num_outputs": int(num_outputs),
                "optimizer": _to_dict(optimizer),
                "scheduler": _to_dict(scheduler),
                "gradient_clip_val": gradient_clip_val,
                "data": data,
            }
        )
        self.automatic_optimization = False
        self.task = task
        self.net = instantiate(
            self.hparams.net, input_shape=list(input_shape), num_outputs=num_outputs
        )
        self.loss_fn = F.cross_entropy if task == "classification" else F.mse_loss
        # Predictions of the current validation or test pass, scored at its end.
        self._evaluated: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._step_losses: list[torch.Tensor] = []  # this epoch's losses, on the device
        self._step_scores: list[torch.Tensor] = []  # what train metrics sum, on the device
        self._step_rows: list[int] = []
        self._target_spread: torch.Tensor | None = None  # of the training targets (R²)
        self._pending_log: dict[str, float] = {}  # epoch metrics not yet written to the loggers
        self._target_scaling = _scaling(data, "target_scaling")
        self._feature_scaling = _scaling(data, "feature_scaling")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def example_input_array(self) -> torch.Tensor:
        """One zero sample on the module's device: the model summary runs it to show each
        layer's input and output sizes and to count FLOPs (for one sample)."""
        return torch.zeros(1, *self.hparams.input_shape, device=self.device)

    # -- training -----------------------------------------------------------------------

    def on_train_start(self) -> None:
        if self.task == "regression":  # the targets the loader serves, as the model sees them
            self._target_spread = _spread(getattr(self.trainer.train_dataloader, "y", None))

    def on_train_epoch_start(self) -> None:
        self._step_losses = []
        self._step_scores = []
        self._step_rows = []

    @property
    def takes_chunks(self) -> bool:
        """Whether the datamodule may serve chunks of minibatches (the fast path).

        Only while nothing could notice: one process, full precision (mixed precision
        scales the loss in Lightning's backward), no limit counted in steps
        (:func:`limits_in_steps`), and no callback or subclass listening to a per-step hook
        (:data:`PER_STEP_HOOKS`). Otherwise every minibatch is a Lightning
        step of its own and goes through ``manual_backward`` and ``LightningOptimizer.step``,
        so every hook fires and DDP averages the gradients.
        """
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer
            return False
        if trainer.world_size > 1 or not isinstance(trainer.strategy, SingleDeviceStrategy):
            return False  # DDP, even on one device: its wrapper expects one step per forward
        if trainer.precision not in ("32-true", "64-true"):
            return False
        if limits_in_steps(trainer):
            return False
        if any(listens_per_step(callback) for callback in trainer.callbacks):
            return False
        hooks = (*PER_STEP_HOOKS, "training_step", "backward")
        return not any(is_overridden(hook, self, parent=SupervisedModule) for hook in hooks)

    def training_step(self, batch: Batch | list[Batch], batch_index: int) -> None:
        """One optimizer step per minibatch: of this ``(x, y)`` batch, or of each minibatch
        of a chunk (the fast path, see :attr:`takes_chunks`).

        Every step goes through ``LightningOptimizer.step``, which counts
        ``trainer.global_step``. The fast path calls the plain ``Tensor.backward``: Lightning's
        ``manual_backward`` costs about 0.1 ms per step in hooks nobody listens to then.
        """
        optimizer = self.optimizers()
        # A chunk is a list of (x, y) pairs; a DataLoader's own batch is an [x, y] list.
        if isinstance(batch, list) and isinstance(batch[0], (tuple, list)):
            for x, y in batch:
                self._step(optimizer, x, y, torch.Tensor.backward)
        else:
            self._step(optimizer, *batch, self.manual_backward)

    def _step(self, optimizer, x: torch.Tensor, y: torch.Tensor, backward) -> None:
        prediction = self.net(x)
        loss = self.loss_fn(prediction, y)
        optimizer.zero_grad(set_to_none=True)
        backward(loss)
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, self.hparams.gradient_clip_val, "norm")
        optimizer.step()
        # Kept on the device: reading them here would wait for every step to finish.
        self._step_losses.append(loss.detach())
        self._step_scores.append(self._score(prediction.detach(), y))
        self._step_rows.append(len(x))

    def _score(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """What one step adds to the epoch's train metrics, computed on the device: the
        number of rows classified right, or each output's sum of squared errors."""
        if self.task == "classification":
            return (prediction.argmax(dim=1) == target).sum()
        return (prediction.float() - target).square().sum(dim=0)

    def on_train_epoch_end(self) -> None:
        learning_rate = self.optimizers().param_groups[0]["lr"]
        losses = torch.stack(self._step_losses).double()
        rows = torch.tensor(self._step_rows, dtype=losses.dtype, device=losses.device)
        # Sums over this process's steps: the loss weighted by rows, the rows, the scores.
        scores = torch.stack(self._step_scores).sum(dim=0).double().reshape(-1)
        totals = torch.cat([(losses * rows).sum()[None], rows.sum()[None], scores])
        if self.trainer.world_size > 1:  # DDP: every process's shard, summed
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        totals = totals.cpu()  # the epoch's one wait
        if not bool(torch.isfinite(totals[0])):  # the same decision in every DDP process
            self._diverged(losses.cpu(), learning_rate)
        self._publish(
            {
                "train/loss": totals[0] / totals[1],
                **self._train_metrics(
                    totals[2] if self.task == "classification" else totals[2:], int(totals[1])
                ),
                "train/lr": torch.tensor(learning_rate),
            }
        )
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitored = "val/loss" if "val/loss" in self.trainer.callback_metrics else "train/loss"
            scheduler.step(self.trainer.callback_metrics[monitored])
        else:
            scheduler.step()

    def _train_metrics(self, scores: torch.Tensor, rows: int) -> dict[str, torch.Tensor]:
        """The task's metrics over the epoch's training steps, in the target's own units.

        Like ``train/loss``, they average over the steps as the weights changed during the
        epoch (and with dropout on): next to the ``val/`` metrics they show over-fitting.
        """
        if self.task == "classification":
            return {"train/acc": scores / rows}
        squared_error = scores.double()  # per output
        metrics = {}
        if self._target_spread is not None:  # R² is the same in standardised units
            metrics["train/r2"] = (1 - squared_error / self._target_spread).mean()
        if self._target_scaling is not None:
            squared_error = squared_error * self._target_scaling.std.double().square()
        metrics["train/mse"] = squared_error.mean() / rows
        return metrics

    def _diverged(self, losses: torch.Tensor, learning_rate: float) -> None:
        """Stop with a clear message: the epoch's training loss is NaN or infinite."""
        finite = torch.isfinite(losses)
        where, value = "in another process's shard", float("nan")
        if not bool(finite.all()):  # this process's own first bad step
            step = int((~finite).nonzero()[0])
            first_step = self.trainer.global_step - len(losses)
            where = f"step {first_step + step} (step {step} of the epoch)"
            value = losses[step].item()
        raise TrainingDiverged(
            f"the training loss became {value} in epoch {self.current_epoch}, {where} with "
            f"optimizer.lr={learning_rate:g}. Lower the learning rate (e.g. by 10x) or clip "
            "gradients (gradient_clip_val=1.0)."
        )

    # -- evaluation ---------------------------------------------------------------------

    def validation_step(self, batch: Batch, batch_index: int) -> None:
        self._evaluated.append((self.net(batch[0]), batch[1]))

    def on_validation_epoch_end(self) -> None:
        self._score_evaluation("val")

    def test_step(self, batch: Batch, batch_index: int) -> None:
        self._evaluated.append((self.net(batch[0]), batch[1]))

    def on_test_epoch_end(self) -> None:
        self._score_evaluation("test")

    def predict_step(self, batch: Batch, batch_index: int) -> torch.Tensor:
        prediction = self.net(batch[0])
        return prediction.argmax(dim=1) if self.task == "classification" else prediction

    def _score_evaluation(self, stage: str) -> None:
        if not self._evaluated:
            return
        predictions, targets = zip(*self._evaluated, strict=True)
        self._evaluated = []
        metrics = self.evaluation_metrics(torch.cat(predictions), torch.cat(targets))
        self._publish({f"{stage}/{name}": value for name, value in metrics.items()})

    def evaluation_metrics(
        self, prediction: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Loss and the task's metrics of a whole split, from the net's outputs and the
        targets as the net sees them; regression metrics in the target's own units."""
        metrics = {"loss": self.loss_fn(prediction, target)}
        if self._target_scaling is not None:
            prediction, target = (
                self._target_scaling.undo(prediction),
                self._target_scaling.undo(target),
            )
        metrics.update(task_metrics(self.task, prediction, target))
        return metrics

    @torch.no_grad()
    def predict_raw(self, features: Any) -> torch.Tensor:
        """Predictions for raw rows (the data's own units, columns in training order).

        Features are scaled with the training split's statistics kept in the checkpoint;
        regression predictions come back in the target's own units, classification as class
        indices (``self.hparams.data["class_names"]`` names them).
        """
        x = torch.as_tensor(features, dtype=torch.float32, device=self.device)
        if self._feature_scaling is not None:
            x = self._feature_scaling.apply(x)
        output = self.net(x.reshape(-1, *self.hparams.input_shape))
        if self.task == "classification":
            return output.argmax(dim=1)
        return self._target_scaling.undo(output) if self._target_scaling else output

    # -- logging ------------------------------------------------------------------------

    def _publish(self, metrics: dict[str, torch.Tensor]) -> None:
        """Hand epoch metrics to callbacks, progress bar and loggers, reading the device once.

        ``self.log`` costs about 0.3 ms per key per epoch, which is more than a whole epoch
        of a small model; these metrics are already reduced over the epoch, so they go
        straight to ``trainer.callback_metrics`` (read by checkpointing, early stopping and
        the progress bar) and to the loggers. Validation metrics wait for the end of the
        training epoch, so each epoch is written to the loggers as one record. Its step is
        the number of epochs trained when the values were measured (1 after the first
        epoch; the test's after the last), so curves of runs with other batch sizes or
        lengths line up; ``trainer.global_step`` still counts optimizer steps.
        """
        values = torch.stack([value.detach().float() for value in metrics.values()]).cpu()
        self.trainer.callback_metrics.update(zip(metrics, values, strict=True))
        self._pending_log.update(zip(metrics, values.tolist(), strict=True))
        if self.trainer.sanity_checking:
            self._pending_log.clear()
            return
        if self.trainer.state.fn == TrainerFn.FITTING and self.trainer.validating:
            return  # written with the training metrics at the end of this epoch
        record, self._pending_log = {**self._pending_log, "epoch": self.current_epoch}, {}
        # current_epoch counts the epochs finished; during training it is the running one's.
        epochs_trained = self.current_epoch + 1 if self.trainer.training else self.current_epoch
        for logger in self.loggers:
            logger.log_metrics(record, step=epochs_trained)

    # -- optimizer ----------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
