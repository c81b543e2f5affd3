"""Serving in-memory tensors as whole batches.

``DataLoader(TensorDataset)`` indexes one sample at a time and collates; for data that
already sits in memory, slicing one permutation per epoch is several times faster.

* :class:`ShuffledBatches` is what any LightningModule gets: plain ``(x, y)`` minibatches,
  reshuffled every epoch and, under DDP, split into one shard per process, as Lightning's
  ``DistributedSampler`` would.
* :class:`ShuffledChunks` groups several minibatches into one Lightning step (a
  :class:`Chunk`), so Lightning's fixed cost per step is paid once per chunk; only
  :class:`dlbasics.training.module.SupervisedModule` asks for it, and only while no callback
  listens to per-step hooks (it still takes one optimizer step per minibatch, see
  :mod:`dlbasics.training.fast_path`).

The epoch whose order an iteration serves is read when its first batch is taken: from
``epoch_of`` (the datamodule passes its trainer's ``current_epoch``, so any LightningModule
gets a new order every epoch, and a resumed run the order of the epoch it resumes at), or
else from the last :meth:`ShuffledBatches.set_epoch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


class Chunk(list):
    """Several ``(x, y)`` minibatches served as one Lightning step (the fast path)."""


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """Sample order for one epoch: it depends only on ``seed`` and ``epoch``.

    A run resumed from a checkpoint therefore sees exactly the batches an
    uninterrupted run would have seen.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s share of ``order``, as ``DistributedSampler`` deals it: the order is
    padded with its own first rows to a multiple of ``world_size``, so every process
    takes the same number of steps, then every ``world_size``-th row from ``rank``."""
    if world_size == 1:
        return order
    padding = -len(order) % world_size
    if padding:
        order = torch.cat([order, order[:padding]])
    return order[rank::world_size]


class ShuffledBatches:
    """Training batches: each item is one ``(x, y)`` minibatch of ``batch_size`` rows.

    Every epoch the rows are permuted once (:func:`epoch_permutation`) and cut into
    minibatches (the last may be smaller). With ``world_size`` > 1 each process sees only
    its shard (:func:`shard`) of that permutation. ``x`` and ``y`` stay on their device.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_of: Callable[[], int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.x, self.y = x, y
        # Applied to each minibatch's inputs: data.augment, then uint8 pixels to floats.
        self.transform = transform
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.epoch_of = epoch_of

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration uses (without ``epoch_of``)."""
        self.epoch = epoch

    @property
    def rows(self) -> int:
        """Rows this process trains on per epoch (its shard, padded as DistributedSampler)."""
        return math.ceil(len(self.x) / self.world_size)

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def order(self) -> torch.Tensor | None:
        """This process's rows for the current epoch, in order; None: all, as stored."""
        if not self.shuffle and self.world_size == 1:
            return None
        n = len(self.x)
        if self.shuffle:
            order = epoch_permutation(n, self.seed, self.epoch, self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        return shard(order, self.rank, self.world_size)

    def __iter__(self) -> Iterator[Batch]:
        # A generator: nothing runs until the first batch is taken. Lightning creates the
        # iterator of a resumed run's first epoch before it has settled which epoch that is;
        # by the first batch ``trainer.current_epoch`` is the epoch being trained.
        if self.epoch_of is not None:
            self.epoch = self.epoch_of()
        order = self.order()
        if order is not None and self.transform is not None:
            # Images: each batch gathered on its own, no shuffled copy of the whole set
            # (CIFAR-10's training images: 138 MB), the same rows in the same order.
            for rows in order.split(self.batch_size):
                yield self.transform(self.x[rows]), self.y[rows]
            return
        x, y = (self.x, self.y) if order is None else (self.x[order], self.y[order])
        for xb, yb in zip(x.split(self.batch_size), y.split(self.batch_size), strict=True):
            yield (self.transform(xb) if self.transform else xb), yb


class ShuffledChunks(ShuffledBatches):
    """Training batches for :class:`~dlbasics.training.module.SupervisedModule`'s fast path: each
    item is a :class:`Chunk` of ``steps_per_chunk`` ``(x, y)`` minibatches, cut from the
    same permutation as :class:`ShuffledBatches` (one process only)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        steps_per_chunk: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch_of: Callable[[], int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(x, y, batch_size, shuffle, seed, epoch_of=epoch_of, transform=transform)
        self.steps_per_chunk = steps_per_chunk

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps (minibatches) in one epoch."""
        return super().__len__()

    def __len__(self) -> int:
        return math.ceil(self.steps_per_epoch / self.steps_per_chunk)

    def __iter__(self) -> Iterator[Chunk]:
        yield from chunks(super().__iter__(), self.steps_per_chunk)


def chunks(minibatches: Iterator[Batch], size: int) -> Iterator[Chunk]:
    """``size`` minibatches at a time, each transformed only when its chunk is taken:
    one chunk of float images in memory at a time, not a whole epoch's."""
    chunk = Chunk()
    for minibatch in minibatches:
        chunk.append(minibatch)
        if len(chunk) == size:
            yield chunk
            chunk = Chunk()
    if chunk:
        yield chunk


class OrderedBatches:
    """Evaluation batches: ``(x, y)`` slices in order, ``batch_size`` rows each; inputs
    through ``transform`` (uint8 pixels to floats) where given."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.transform = transform

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for xb, yb in zip(
            self.x.split(self.batch_size), self.y.split(self.batch_size), strict=True
        ):
            yield (self.transform(xb) if self.transform else xb), yb


class MemberBatches(ShuffledBatches):
    """Training batches of K stacked members (:mod:`dlbasics.training.seeds`): each
    minibatch is ``(x, y)`` shaped ``[K, rows, ...]`` and ``[K, rows, ...]``, member ``k``'s
    rows in the order its own run with seed ``seeds[k]`` would take them (the same
    :func:`epoch_permutation`), so each member sees exactly its own run's batches.

    With ``steps_per_chunk`` the minibatches come in :class:`Chunk` s (the fast path).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        seeds: list[int],
        steps_per_chunk: int | None = None,
        shuffle: bool = True,
        epoch_of: Callable[[], int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(
            x, y, batch_size, shuffle, seeds[0], epoch_of=epoch_of, transform=transform
        )
        self.seeds = list(seeds)
        self.steps_per_chunk = steps_per_chunk

    @property
    def steps_per_epoch(self) -> int:
        return super().__len__()

    def __len__(self) -> int:
        if self.steps_per_chunk is None:
            return self.steps_per_epoch
        return math.ceil(self.steps_per_epoch / self.steps_per_chunk)

    def orders(self) -> torch.Tensor:
        """``[K, rows]``: each member's order of the training rows this epoch."""
        n = len(self.x)
        if not self.shuffle:
            return torch.arange(n, device=self.x.device).expand(len(self.seeds), n)
        return torch.stack(
            [epoch_permutation(n, seed, self.epoch, self.x.device) for seed in self.seeds]
        )

    def __iter__(self) -> Iterator[Batch | Chunk]:
        if self.epoch_of is not None:
            self.epoch = self.epoch_of()
        minibatches = (
            (self.transform(self.x[rows]) if self.transform else self.x[rows], self.y[rows])
            for rows in self.orders().split(self.batch_size, dim=1)
        )
        if self.steps_per_chunk is None:
            yield from minibatches
        else:
            yield from chunks(minibatches, self.steps_per_chunk)
