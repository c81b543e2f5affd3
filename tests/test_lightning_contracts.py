"""Lightning's contracts on dlbasics' data and module.

Any LightningModule trains on dlbasics' datamodules (plain ``(x, y)`` batches); every
per-step hook fires once per optimizer step and ``trainer.global_step`` counts optimizer
steps, whichever path the module takes; the fast path changes nothing a user can see.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F

from dlbasics.config.tree import CONFIG_DIR
from dlbasics.training.batches import ShuffledBatches, ShuffledChunks, shard
from dlbasics.training.train import build_module


def compose_config(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def quiet_trainer(**options) -> pl.Trainer:
    defaults = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                "enable_progress_bar": False, "enable_model_summary": False}  # fmt: skip
    return pl.Trainer(**{**defaults, **options})


class PlainClassifier(pl.LightningModule):
    """A LightningModule as the Lightning docs write one: automatic optimisation, self.log."""

    def __init__(self, inputs: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, classes)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


@pytest.mark.parametrize(("data", "inputs", "classes", "lowest"),
                         [("moons", 2, 2, 0.85), ("digits", 64, 10, 0.9)])  # fmt: skip
def test_an_ordinary_lightning_module_learns_on_dlbasics_data(data, inputs, classes, lowest):
    pl.seed_everything(0, verbose=False)
    datamodule = instantiate(compose_config(f"data={data}").data)
    trainer = quiet_trainer(max_epochs=8)
    trainer.fit(PlainClassifier(inputs, classes), datamodule=datamodule)
    assert isinstance(trainer.train_dataloader, ShuffledBatches)
    assert not isinstance(trainer.train_dataloader, ShuffledChunks)
    assert trainer.callback_metrics["val_acc"] > lowest


class OrderWatcher(PlainClassifier):
    """PlainClassifier, keeping the labels of each epoch's batches in the order served."""

    def __init__(self, inputs: int, classes: int) -> None:
        super().__init__(inputs, classes)
        self.orders: dict[int, torch.Tensor] = {}

    def training_step(self, batch, batch_idx):
        seen = self.orders.get(self.current_epoch, torch.empty(0, dtype=torch.long))
        self.orders[self.current_epoch] = torch.cat([seen, batch[1]])
        return super().training_step(batch, batch_idx)


class SaveAtEpochEnd(pl.Callback):
    """Writes a checkpoint inside an epoch's end hooks, as a periodic checkpoint does."""

    def __init__(self, path, epoch: int) -> None:
        self.path, self.epoch = path, epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.save_checkpoint(self.path)


def test_an_ordinary_module_gets_a_new_order_every_epoch_and_the_same_after_resume(tmp_path):
    def fit(epochs: int, ckpt_path=None, callbacks=()) -> dict[int, torch.Tensor]:
        pl.seed_everything(0, verbose=False)
        datamodule = instantiate(compose_config("data=moons").data)
        module = OrderWatcher(2, 2)
        trainer = quiet_trainer(max_epochs=epochs, callbacks=list(callbacks))
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if ckpt_path is None and not callbacks:
            trainer.save_checkpoint(tmp_path / "end.ckpt")
        return module.orders

    whole = fit(4)
    assert sorted(whole) == [0, 1, 2, 3]
    assert all(sorted(order.tolist()) == sorted(whole[0].tolist()) for order in whole.values())
    for a, b in zip(whole.values(), list(whole.values())[1:], strict=False):
        assert not torch.equal(a, b)  # reshuffled every epoch
    fit(2)  # written when fit ends: end.ckpt
    fit(2, callbacks=[SaveAtEpochEnd(tmp_path / "in_epoch_end.ckpt", epoch=1)])
    for checkpoint in ("end.ckpt", "in_epoch_end.ckpt"):
        resumed = fit(4, ckpt_path=tmp_path / checkpoint)
        assert sorted(resumed) == [2, 3], checkpoint
        for epoch in (2, 3):  # the batches an uninterrupted run saw
            assert torch.equal(resumed[epoch], whole[epoch]), (checkpoint, epoch)


class CountSteps(pl.Callback):
    """Counts each per-step hook, and the rows of the batches it is shown."""

    def __init__(self) -> None:
        self.calls = {"before_backward": 0, "after_backward": 0, "before_step": 0, "batches": 0}
        self.rows = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        x, y = batch  # a plain (x, y) minibatch
        self.calls["batches"] += 1
        self.rows += len(x)

    def on_before_backward(self, trainer, pl_module, loss):
        self.calls["before_backward"] += 1

    def on_after_backward(self, trainer, pl_module):
        self.calls["after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls["before_step"] += 1


def train_moons(*callbacks, precision="32-true", epochs=3, **options):
    """dlbasics' module on moons (800 training rows, batches of 32: 25 steps per epoch)."""
    cfg = compose_config(
        "data=moons", f"trainer.max_epochs={epochs}", *options.pop("overrides", [])
    )
    pl.seed_everything(0, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    trainer = quiet_trainer(
        max_epochs=epochs, callbacks=list(callbacks), precision=precision, **options
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer, module


@pytest.mark.parametrize("precision", ["32-true", "64-true", "bf16-mixed"])
def test_every_per_step_hook_fires_once_per_optimizer_step(precision):
    counter = CountSteps()
    trainer, module = train_moons(counter, precision=precision)
    steps = 3 * 25
    assert trainer.global_step == steps
    assert counter.calls == dict.fromkeys(counter.calls, steps)
    assert counter.rows == 3 * 800  # every training row once per epoch
    assert isinstance(trainer.train_dataloader, ShuffledBatches)
    assert not isinstance(trainer.train_dataloader, ShuffledChunks)


def test_the_fast_path_is_taken_only_while_nobody_listens_and_changes_nothing():
    fast, fast_module = train_moons()  # default: no callback, so chunks
    assert isinstance(fast.train_dataloader, ShuffledChunks)
    hooked, hooked_module = train_moons(CountSteps())
    assert fast.global_step == hooked.global_step == 75
    for a, b in zip(fast_module.parameters(), hooked_module.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)  # same batches, same steps, same weights
    assert fast.callback_metrics["train/loss"] == pytest.approx(
        float(hooked.callback_metrics["train/loss"]), abs=1e-6
    )


@pytest.mark.parametrize(
    ("limits", "steps"),
    [
        ({"max_steps": 10, "epochs": -1}, 10),
        ({"limit_train_batches": 5, "epochs": 2}, 10),
        ({"limit_train_batches": 0.2, "epochs": 2}, 10),
        ({"val_check_interval": 10, "epochs": 1}, 25),
    ],
    ids=["max_steps", "limit_train_batches", "fraction-of-batches", "val_check_interval"],
)
def test_limits_counted_in_steps_count_minibatches(limits, steps):
    # A chunk is one Lightning step: these limits would count 32 minibatches as one.
    trainer, _ = train_moons(**limits)
    assert trainer.global_step == steps
    assert not isinstance(trainer.train_dataloader, ShuffledChunks)


def test_dlbasics_default_callbacks_keep_the_fast_path():
    from dlbasics.training.callbacks import EpochProgressBar, GracefulStop

    trainer, _ = train_moons(EpochProgressBar(), GracefulStop(), enable_progress_bar=True)
    assert isinstance(trainer.train_dataloader, ShuffledChunks)


def test_a_subclass_that_overrides_a_step_hook_gets_every_call():
    from dlbasics.training.module import SupervisedModule

    class Watched(SupervisedModule):
        calls = 0

        def on_after_backward(self):
            Watched.calls += 1

    cfg = compose_config("data=moons", "trainer.max_epochs=2")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = Watched(**build_module(cfg, datamodule).hparams)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(module, datamodule=datamodule)
    assert Watched.calls == trainer.global_step == 50


def test_shards_are_disjoint_cover_the_split_and_reshuffle_every_epoch():
    x, y = torch.arange(103).float()[:, None], torch.arange(103)
    loaders = [ShuffledBatches(x, y, 10, seed=5, rank=r, world_size=2) for r in range(2)]
    seen = []
    for epoch in (0, 1):
        rows = []
        for loader in loaders:
            loader.set_epoch(epoch)
            rows.append(torch.cat([batch_y for _, batch_y in loader]))
        assert len(rows[0]) == len(rows[1]) == 52  # padded like DistributedSampler
        assert len(loaders[0]) == len(loaders[1]) == 6  # the same number of steps
        assert set(torch.cat(rows).tolist()) == set(range(103))
        assert len(set(rows[0].tolist()) & set(rows[1].tolist())) <= 1  # the padded row
        seen.append(rows[0])
    assert not torch.equal(seen[0], seen[1])
    assert torch.equal(shard(torch.arange(6), 1, 3), torch.tensor([1, 4]))


@pytest.mark.slow
def test_the_readmes_own_lightning_module_runs_as_written(tmp_path):
    import re
    import subprocess
    import sys

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own LightningModule", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    loss = float(re.search(r"train loss ([0-9.]+)", done.stdout).group(1))
    assert loss < 0.4  # it learned the moons


def test_a_subclass_of_a_chunk_safe_callback_is_judged_by_its_own_hooks():
    from dlbasics.training.callbacks import GracefulStop
    from dlbasics.training.fast_path import listens_per_step

    class Watching(GracefulStop):
        def on_after_backward(self, trainer, pl_module):
            pass

    assert not listens_per_step(GracefulStop())
    assert listens_per_step(Watching())


def test_dlbasics_module_trains_on_an_ordinary_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    cfg = compose_config("data=moons", "trainer.max_epochs=3")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    x, y = datamodule.splits["train"]
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)  # yields [x, y] lists
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 3 * 25
    assert trainer.callback_metrics["train/acc"] > 0.8
