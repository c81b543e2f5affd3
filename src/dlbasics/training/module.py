"""One LightningModule that trains any net on any task.

:class:`SupervisedModule` picks loss and metrics from the task (MSE + MSE/MAE/R² for
regression, cross-entropy + accuracy/macro F1 for classification), builds the net,
optimizer and scheduler from their Hydra configs, and logs per epoch with ``self.log_dict``:
``train/loss``, the task's metrics on the training steps (``train/acc``, or ``train/mse`` and
``train/r2``), ``train/lr``, and the loss and task metrics of the ``val/`` and ``test/`` splits.

It optimises manually, as in Lightning's manual-optimisation example: one
``manual_backward`` and one ``LightningOptimizer.step`` per minibatch (so
``trainer.global_step`` counts optimizer steps). While nothing listens to per-step hooks it
takes several minibatches per Lightning step (see :mod:`dlbasics.training.fast_path`).
Losses and the train metrics' sums stay on the device and are read once per epoch, so no
step waits for it.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics.functional as FM
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from dlbasics.data.arrays import Scaling
from dlbasics.errors import TrainingDiverged
from dlbasics.training.batches import Batch, Chunk
from dlbasics.training.fast_path import ChunkedTraining


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


def fused_kernel(make_optimizer: Any, module: torch.nn.Module) -> dict[str, bool]:
    """``fused=True`` where torch has a fused kernel for the optimizer (Adam, AdamW, SGD,
    Adagrad: its class takes ``fused``), the config does not choose, and the precision is full: one kernel updates every parameter at once, about 1.3x
    faster per step than the default for the small nets here (benchmarks/threads_bench.py);
    the same update up to float rounding. ``+optimizer.fused=false`` keeps torch's default."""
    func = getattr(make_optimizer, "func", make_optimizer)  # a partial from the config
    chosen = getattr(make_optimizer, "keywords", {})
    if "fused" in chosen or any(chosen.get(k) for k in ("foreach", "differentiable", "capturable")):
        return {}  # the config chose (torch refuses fused beside these)
    try:
        precision = str(module.trainer.precision)
    except (AttributeError, RuntimeError):  # not attached to a Trainer
        precision = "32-true"
    if "mixed" in precision:
        return {}  # Lightning's mixed precision cannot clip a fused optimizer's gradients
    try:
        takes_fused = "fused" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    parameters = list(module.parameters())
    supported = all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters
    )
    return {"fused": True} if takes_fused and supported and parameters else {}


def _to_dict(config: Any) -> Any:
    """Hydra nodes become plain dicts, so hyperparameters pickle into checkpoints."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config


class _TensorScaling:
    """A datamodule's scaling statistics as tensors, on the device of what they scale."""

    def __init__(self, mean, std) -> None:
        self.mean, self.std = torch.as_tensor(mean), torch.as_tensor(std)

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean.to(values.device)) / self.std.to(values.device)

    def undo(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.std.to(values.device) + self.mean.to(values.device)


def _scaling(data: dict | None, key: str) -> _TensorScaling | None:
    saved = (data or {}).get(key)
    if not saved:
        return None
    scaling = Scaling.from_dict(saved)  # images' statistics are per channel, C x 1 x 1
    return _TensorScaling(scaling.mean, scaling.std)


def _spread(targets: torch.Tensor | None) -> torch.Tensor | None:
    """Each target column's sum of squared deviations from its mean (R²'s denominator),
    in float64 on the host; None if unknown or zero (a constant target has no R²)."""
    if targets is None:
        return None
    y = targets.detach().cpu().double().reshape(len(targets), -1)
    spread = (y - y.mean(dim=0)).square().sum(dim=0)
    return spread if bool((spread > 0).all()) else None


class SupervisedModule(ChunkedTraining, pl.LightningModule):
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

    Metrics are logged once per epoch, already reduced over the whole split (under DDP
    over every process's shard), with ``self.log_dict``: callbacks, the progress bar and
    every logger see them (``trainer.callback_metrics``, ``trainer.logged_metrics``,
    ``trainer.progress_bar_metrics``). dlbasics' own loggers merge an epoch's validation
    and training metrics into one record (:class:`~dlbasics.training.loggers.EpochRecords`).
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
        # This epoch's predictions and targets, on the device: the train metrics are
        # computed from them once, at the epoch's end (a few tiny operations per step less).
        self._step_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._step_rows: list[int] = []
        self._target_spread: torch.Tensor | None = None  # of the training targets (R²)
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
        self._step_losses, self._step_outputs, self._step_rows = [], [], []

    def training_step(self, batch: Batch | Chunk, batch_idx: int) -> None:
        """One optimizer step on an ``(x, y)`` minibatch (each minibatch of a chunk on the
        fast path, :mod:`dlbasics.training.fast_path`)."""
        if isinstance(batch, Chunk):
            return self.train_on_chunk(batch, batch_idx)
        x, y = batch
        optimizer = self.optimizers()
        prediction = self.net(x)
        loss = self.loss_fn(prediction, y)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, self.hparams.gradient_clip_val, "norm")
        optimizer.step()
        # Kept on the device: reading them here would wait for every step to finish.
        self._step_losses.append(loss.detach())
        self._step_outputs.append((prediction.detach(), y))
        self._step_rows.append(len(x))
        return None

    def _score(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """What the train metrics sum, computed on the device: the number of rows
        classified right, or each output's sum of squared errors."""
        if self.task == "classification":
            return (prediction.argmax(dim=1) == target).sum()
        return (prediction.float() - target).square().sum(dim=0)

    def on_train_epoch_end(self) -> None:
        learning_rate = self.optimizers().param_groups[0]["lr"]
        losses = torch.stack(self._step_losses).double()
        rows = torch.tensor(self._step_rows, dtype=losses.dtype, device=losses.device)
        # Sums over this process's steps: the loss weighted by rows, the rows, the scores.
        predictions, targets = (torch.cat(part) for part in zip(*self._step_outputs, strict=True))
        self._step_outputs = []
        scores = self._score(predictions, targets).double().reshape(-1)
        totals = torch.cat([(losses * rows).sum()[None], rows.sum()[None], scores])
        if self.trainer.world_size > 1:  # DDP: every process's shard, summed
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        totals = totals.cpu()  # the epoch's one wait
        if not bool(torch.isfinite(totals[0])):  # the same decision in every DDP process
            self._diverged(losses.cpu(), learning_rate)
        train = {
            "train/loss": totals[0] / totals[1],
            **self._train_metrics(
                totals[2] if self.task == "classification" else totals[2:], int(totals[1])
            ),
            "train/lr": torch.tensor(learning_rate),
        }
        self._log_epoch(train)
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

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        self._evaluated.append((self.net(x), y))

    def on_validation_epoch_end(self) -> None:
        metrics = self._score_evaluation("val")
        if metrics and not self.trainer.sanity_checking:  # Lightning drops the sanity check's
            self._log_epoch(metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        self._evaluated.append((self.net(x), y))

    def on_test_epoch_end(self) -> None:
        metrics = self._score_evaluation("test")
        if metrics:
            self._log_epoch(metrics)

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        prediction = self.net(batch[0])
        return prediction.argmax(dim=1) if self.task == "classification" else prediction

    def _score_evaluation(self, stage: str) -> dict[str, torch.Tensor]:
        """The metrics of the pass just ended over all its predictions, on the host."""
        if not self._evaluated:
            return {}
        predictions, targets = zip(*self._evaluated, strict=True)
        self._evaluated = []
        metrics = self.evaluation_metrics(torch.cat(predictions), torch.cat(targets))
        return {f"{stage}/{name}": value for name, value in metrics.items()}

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
        x = x.reshape(-1, *self.hparams.input_shape)  # images' statistics are per channel
        if self._feature_scaling is not None:
            x = self._feature_scaling.apply(x)
        output = self.net(x)
        if self.task == "classification":
            return output.argmax(dim=1)
        return self._target_scaling.undo(output) if self._target_scaling else output

    # -- logging ------------------------------------------------------------------------

    def _log_epoch(self, metrics: dict[str, torch.Tensor]) -> None:
        """``self.log_dict`` of values already reduced over a whole split, read from the
        device at once (one wait, then host scalars: nothing waits for the device later).

        ``batch_size=1``: nothing to infer or weigh, each key is logged once per epoch.
        Under DDP the values are the whole split's and equal on every process; the mean
        that ``sync_dist=True`` takes across them is the same value, and saying so spares a
        Lightning warning per key in every process. Every process's callbacks see the same
        values; only the first process's loggers write.
        """
        values = torch.stack([value.detach().float() for value in metrics.values()]).cpu()
        self.log_dict(
            dict(zip(metrics, values, strict=True)),
            prog_bar=True,
            batch_size=1,
            sync_dist=self.trainer.world_size > 1,
        )

    # -- optimizer ----------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        make_optimizer = instantiate(self.hparams.optimizer)
        optimizer = make_optimizer(self.parameters(), **fused_kernel(make_optimizer, self))
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
