"""The fast path: many minibatches per Lightning step, while nothing can notice.

Lightning's fixed cost per training step (hook dispatch, progress tracking, the logger
connector) is about 0.15 ms, more than a whole optimizer step of the small models trained
here. So while no one listens to the hooks that run once per step, a module mixing in
:class:`ChunkedTraining` asks the datamodule for *chunks* of minibatches
(:class:`~dlbasics.training.batches.Chunk`), runs its own ``training_step`` on each
minibatch of a chunk, and takes the plain ``Tensor.backward`` instead of
``manual_backward``. Every optimizer step still goes through ``LightningOptimizer.step``, so
``trainer.global_step`` counts optimizer steps; the batches, steps and weights are the same as
on Lightning's own path (a test compares them).

Nothing can notice while: one process, full precision (mixed precision scales the loss in
Lightning's backward), no limit counted in Lightning steps (:func:`limits_in_steps`), no
callback listening to a per-step hook (:func:`listens_per_step`), and no subclass
overriding one. Otherwise every minibatch is a Lightning step of its own with every hook.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

from dlbasics.training.batches import Chunk

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


class ChunkedTraining:
    """Mixin for a manually optimised LightningModule whose ``training_step`` takes one
    optimizer step on an ``(x, y)`` minibatch through ``self.manual_backward``.

    The module's ``training_step`` hands a :class:`~dlbasics.training.batches.Chunk` to
    :meth:`train_on_chunk`; the datamodule serves chunks only while :attr:`takes_chunks`.
    """

    _in_chunk = False  # inside train_on_chunk: manual_backward is torch's own

    @property
    def takes_chunks(self) -> bool:
        """Whether the datamodule may serve chunks of minibatches: only while nothing could
        notice (see the module's docstring)."""
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
        # The class that mixes this in (or a subclass that says its own training_step takes
        # chunks, ``trains_chunks = True``): a subclass overriding its hooks could notice.
        owner = next(
            cls
            for cls in type(self).__mro__
            if ChunkedTraining in cls.__bases__ or cls.__dict__.get("trains_chunks")
        )
        hooks = (*PER_STEP_HOOKS, "training_step", "backward", "manual_backward")
        return not any(is_overridden(hook, self, parent=owner) for hook in hooks)

    def train_on_chunk(self, chunk: Chunk, batch_idx: int) -> None:
        """``training_step`` on each minibatch of ``chunk``, with the plain backward."""
        self._in_chunk = True
        try:
            for minibatch in chunk:
                self.training_step(minibatch, batch_idx)
        finally:
            self._in_chunk = False

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Lightning's ``manual_backward``; inside a chunk, ``loss.backward()``: Lightning's
        costs about 0.1 ms per step in hooks that nobody listens to then."""
        if self._in_chunk:
            loss.backward(*args, **kwargs)
        else:
            super().manual_backward(loss, *args, **kwargs)
