"""One LightningModule that trains any net on any task.

:class:`SupervisedModule` picks loss and metrics from the task (MSE + MSE/MAE/R² for
regression, cross-entropy + accuracy/macro F1 for classification), builds the net,
optimizer and scheduler from their Hydra configs, and logs per epoch.

It optimises manually: the train loader hands it a *chunk* of minibatches per Lightning
step (see :mod:`dlbasics.batches`) and it takes one optimizer step per minibatch, so
Lightning's fixed cost per step is paid once per chunk. Losses are summed on the device
and read once per epoch, so no step waits for the device.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


def task_metrics(task: str, num_outputs: int) -> torchmetrics.MetricCollection:
    """Metrics reported for a task, keyed by the name they are logged under."""
    if task == "classification":
        return torchmetrics.MetricCollection(
            {
                "acc": torchmetrics.Accuracy("multiclass", num_classes=num_outputs),
                "f1": torchmetrics.F1Score("multiclass", num_classes=num_outputs, average="macro"),
            }
        )
    return torchmetrics.MetricCollection(
        {
            "mse": torchmetrics.MeanSquaredError(),
            "mae": torchmetrics.MeanAbsoluteError(),
            "r2": torchmetrics.R2Score(multioutput="uniform_average"),
        }
    )


def _plain(config: Any) -> Any:
    """Hydra nodes become plain dicts, so hyperparameters pickle into checkpoints."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config


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
    ) -> None:
        super().__init__()
        # Everything needed to rebuild the module, so `load_from_checkpoint(path)` works alone.
        self.save_hyperparameters(
            {
                "net": _plain(net),
                "task": task,
                "input_shape": list(input_shape),
                "num_outputs": int(num_outputs),
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "gradient_clip_val": gradient_clip_val,
            }
        )
        self.automatic_optimization = False
        self.task = task
        self.net = instantiate(
            self.hparams.net, input_shape=list(input_shape), num_outputs=num_outputs
        )
        self.loss_fn = F.cross_entropy if task == "classification" else F.mse_loss
        metrics = task_metrics(task, num_outputs)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_loss = torchmetrics.MeanMetric()
        self.test_loss = torchmetrics.MeanMetric()
        self._train_loss_sum = torch.zeros(())
        self._train_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- training -----------------------------------------------------------------------

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum = torch.zeros((), device=self.device)
        self._train_rows = 0

    def training_step(self, chunk: list[Batch], chunk_index: int) -> None:
        optimizer = self.optimizers()
        clip = self.hparams.gradient_clip_val
        for x, y in chunk:
            loss = self.loss_fn(self.net(x), y)
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if clip:
                self.clip_gradients(
                    optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm"
                )
            optimizer.step()
            # Summed on the device: reading it here would wait for every step to finish.
            self._train_loss_sum += loss.detach() * len(x)
            self._train_rows += len(x)

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self._train_loss_sum / max(self._train_rows, 1), prog_bar=True)
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitored = "val/loss" if "val/loss" in self.trainer.callback_metrics else "train/loss"
            scheduler.step(self.trainer.callback_metrics[monitored])
        else:
            scheduler.step()

    # -- evaluation ---------------------------------------------------------------------

    def validation_step(self, batch: Batch, batch_index: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val", self.val_loss, self.val_metrics)

    def test_step(self, batch: Batch, batch_index: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test", self.test_loss, self.test_metrics)

    def predict_step(self, batch: Batch, batch_index: int) -> torch.Tensor:
        prediction = self.net(batch[0])
        return prediction.argmax(dim=1) if self.task == "classification" else prediction

    def _evaluate(self, batch: Batch, loss_metric, metrics) -> None:
        x, y = batch
        prediction = self.net(x)
        loss_metric.update(self.loss_fn(prediction, y), weight=len(x))
        metrics.update(prediction, y)

    def _log_evaluation(self, stage: str, loss_metric, metrics) -> None:
        self.log(f"{stage}/loss", loss_metric.compute(), prog_bar=True)
        self.log_dict(metrics.compute(), prog_bar=stage == "val")
        loss_metric.reset()
        metrics.reset()

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
