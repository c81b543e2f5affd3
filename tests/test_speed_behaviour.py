"""What the training speed relies on, asserted as behaviour (no wall-clock times here;
`make bench` measures those): whole batches, no device reads per step, few checkpoint writes."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from dlbasics.training.batches import Chunk, ShuffledBatches, ShuffledChunks, epoch_permutation
from dlbasics.training.module import SupervisedModule


def test_batches_are_whole_slices_and_cover_every_row_once_per_epoch():
    x = torch.arange(100.0).reshape(100, 1)
    y = torch.arange(100)
    loader = ShuffledChunks(x, y, batch_size=16, steps_per_chunk=3, seed=7)
    chunks = list(loader)
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]  # 7 minibatches of <= 16 rows
    minibatches = [batch for chunk in chunks for batch in chunk]
    assert [len(xb) for xb, _ in minibatches] == [16] * 6 + [4]
    seen = torch.cat([yb for _, yb in minibatches])
    assert sorted(seen.tolist()) == list(range(100))
    for xb, yb in minibatches:  # rows stay paired with their labels
        assert torch.equal(xb[:, 0].long(), yb)


def test_transformed_batches_are_the_same_rows_in_the_same_order():
    """Images are gathered batch by batch (no shuffled copy of the set), a table's by one
    permutation of all rows: the same minibatches either way."""
    x, y = torch.arange(300.0).reshape(100, 3), torch.arange(100)
    plain = list(ShuffledBatches(x, y, batch_size=16, seed=5))
    doubled = list(ShuffledBatches(x, y, batch_size=16, seed=5, transform=lambda b: 2 * b))
    assert len(plain) == len(doubled) == 7
    for (xb, yb), (xd, yd) in zip(plain, doubled, strict=True):
        assert torch.equal(2 * xb, xd) and torch.equal(yb, yd)


def test_epoch_order_depends_only_on_seed_and_epoch():
    first = epoch_permutation(50, seed=3, epoch=4, device=torch.device("cpu"))
    torch.manual_seed(123)  # the global generator has no say
    again = epoch_permutation(50, seed=3, epoch=4, device=torch.device("cpu"))
    assert torch.equal(first, again)
    assert not torch.equal(
        first, epoch_permutation(50, seed=3, epoch=5, device=torch.device("cpu"))
    )
    loader = ShuffledChunks(torch.zeros(50, 1), torch.arange(50), 50, 1, seed=3)
    loader.set_epoch(4)  # without a trainer (lr_find's range test)
    assert torch.equal(next(iter(loader))[0][1], first)


def test_the_epoch_is_read_when_the_first_batch_is_taken():
    """What the datamodule hands its loaders: the trainer's current_epoch, read when the
    epoch's first batch is taken, not when Lightning creates the iterator (on resume it
    creates the first epoch's before settling which epoch that is)."""
    epoch = {"now": 0}
    loader = ShuffledBatches(torch.zeros(50, 1), torch.arange(50), 50, seed=3,
                             epoch_of=lambda: epoch["now"])  # fmt: skip
    batches = iter(loader)
    epoch["now"] = 4
    ((_, y),) = list(batches)
    assert torch.equal(y, epoch_permutation(50, seed=3, epoch=4, device=torch.device("cpu")))
    loader.set_epoch(1)  # epoch_of has the say
    ((_, again),) = list(loader)
    assert torch.equal(again, y)


class WatchedSteps:
    """Wraps ``SupervisedModule.training_step``: counts the Lightning steps (a chunk's
    minibatches run through training_step again, inside it) and tensor reads (.item(),
    float(), .cpu(), ...) made inside it outside torch itself (the optimizer's own
    bookkeeping is torch's)."""

    def __init__(self, monkeypatch) -> None:
        self.reads = self.steps = self.depth = 0
        original_step = SupervisedModule.training_step
        watch = self

        def watched_step(self, batch, index):
            watch.steps += watch.depth == 0
            watch.depth += 1
            try:
                return original_step(self, batch, index)
            finally:
                watch.depth -= 1

        def counting(method):
            def wrapper(tensor, *args, **kwargs):
                caller = sys._getframe(1).f_code.co_filename
                if watch.depth and f"{os.sep}torch{os.sep}" not in caller:
                    watch.reads += 1
                return method(tensor, *args, **kwargs)

            return wrapper

        monkeypatch.setattr(SupervisedModule, "training_step", watched_step)
        for name in ("item", "__float__", "tolist", "cpu", "numpy"):
            monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))


def count_device_reads(run_training, monkeypatch) -> tuple[int, int]:
    """Train briefly; the tensor reads made inside training_step, and the Lightning steps."""
    watch = WatchedSteps(monkeypatch)
    run_training("model=mlp", "data=moons", "data.batch_size=16", "trainer.max_epochs=2")
    return watch.reads, watch.steps


def test_training_steps_never_read_the_device(run_training, monkeypatch):
    """No step waits for the device: losses are summed there and read once per epoch, and
    logged with self.log once per epoch, never inside a step."""
    watch = WatchedSteps(monkeypatch)
    original_log = SupervisedModule.log
    logged = []

    def log_outside_steps(self, name, *args, **kwargs):
        if watch.depth:
            pytest.fail(f"self.log({name!r}) inside training_step")
        logged.append(name)
        return original_log(self, name, *args, **kwargs)

    monkeypatch.setattr(SupervisedModule, "log", log_outside_steps)
    run_training("model=mlp", "data=moons", "data.batch_size=16", "trainer.max_epochs=2")
    assert watch.steps > 0 and watch.reads == 0
    assert logged.count("train/loss") == 2  # once per epoch


def test_the_device_read_check_catches_a_read_per_step(run_training, monkeypatch):
    original = SupervisedModule.training_step

    def reading_step(self, batch, index):
        original(self, batch, index)
        if not isinstance(batch, Chunk):  # each minibatch, of a chunk or not
            self._step_losses[-1].item()  # what a naive loop does to print the loss

    monkeypatch.setattr(SupervisedModule, "training_step", reading_step)
    reads, steps = count_device_reads(run_training, monkeypatch)
    assert reads > steps > 0  # several minibatches per chunk, one read each


def test_global_step_counts_every_minibatch(run_training, tmp_path):
    # 1000 moons rows, 80 % for training, batches of 16: 50 optimizer steps per epoch.
    run_training("model=mlp", "data=moons", "data.batch_size=16", "trainer.max_epochs=3")
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3 * 50
    assert checkpoint["epoch"] == 3  # written after the last epoch: 3 epochs done


def test_checkpoints_are_written_at_the_end_not_every_epoch(run_training, monkeypatch):
    import lightning.pytorch as pl

    saved = []
    original = pl.Trainer.save_checkpoint

    def counting(self, path, *args, **kwargs):
        saved.append((self.current_epoch, str(path)))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", counting)
    run_training("model=linreg", "data=linear", "trainer.max_epochs=6")
    assert len(saved) == 2  # best and last, once, when training ends
    saved.clear()
    run_training(
        "model=linreg",
        "data=linear",
        "trainer.max_epochs=6",
        "callbacks.checkpoint.every_n_epochs=2",
    )
    last_writes = [path for _, path in saved if path.endswith("last.ckpt.tmp")]
    assert len(last_writes) == 3 + 1  # after epochs 2, 4, 6, and at the end
