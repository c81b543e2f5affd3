"""Serving in-memory tensors as whole batches.

``DataLoader(TensorDataset)`` indexes one sample at a time and collates; for data that
already sits in memory, slicing one permutation per epoch is several times faster. The
train loader also groups several minibatches into one Lightning step (a *chunk*), so
Lightning's fixed cost per step is paid once per chunk rather than once per minibatch;
:class:`dlbasics.module.SupervisedModule` still takes one optimizer step per minibatch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """Sample order for one epoch: it depends only on ``seed`` and ``epoch``.

    A run resumed from a checkpoint therefore sees exactly the batches an
    uninterrupted run would have seen.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


class ShuffledChunks:
    """Training batches: each item is a list of ``(x, y)`` minibatches (a chunk).

    Every epoch the rows are permuted once (:func:`epoch_permutation`) and cut into
    minibatches of ``batch_size`` rows (the last may be smaller), ``steps_per_chunk`` of
    them per item. ``x`` and ``y`` stay on their device; nothing is copied per sample.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        steps_per_chunk: int,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.steps_per_chunk = steps_per_chunk
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        # Lightning calls ``loader.sampler.set_epoch(epoch)`` at the start of every epoch
        # (also after a resume); acting as our own sampler hooks into that.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration uses."""
        self.epoch = epoch

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps (minibatches) in one epoch."""
        return math.ceil(len(self.x) / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.steps_per_epoch / self.steps_per_chunk)

    def __iter__(self) -> Iterator[list[Batch]]:
        x, y = self.x, self.y
        if self.shuffle:
            order = epoch_permutation(len(x), self.seed, self.epoch, x.device)
            x, y = x[order], y[order]
        minibatches = list(zip(x.split(self.batch_size), y.split(self.batch_size), strict=True))
        for start in range(0, len(minibatches), self.steps_per_chunk):
            yield minibatches[start : start + self.steps_per_chunk]


class OrderedBatches:
    """Evaluation batches: ``(x, y)`` slices in order, ``batch_size`` rows each."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return zip(self.x.split(self.batch_size), self.y.split(self.batch_size), strict=True)
