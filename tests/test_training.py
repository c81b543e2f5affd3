"""Every model trains on regression and classification data composed from the real configs."""

from __future__ import annotations

import pytest
import torch

from conftest import read_csv_metrics
from dlbasics.module import SupervisedModule

COMBINATIONS = [
    ("linreg", "linear", "regression", "optimizer=sgd optimizer.lr=0.1"),
    ("linreg", "iris", "classification", "optimizer=sgd optimizer.lr=0.5"),  # softmax regression
    ("mlp", "make_regression", "regression", "optimizer=adam optimizer.lr=0.01"),
    ("mlp", "moons", "classification", "optimizer=adam optimizer.lr=0.01"),
    ("mlp", "digits", "classification", "optimizer=adam optimizer.lr=0.01"),  # flattened images
    ("cnn", "digits", "classification", "optimizer=adam optimizer.lr=0.01"),  # 1 x 8 x 8 images
]


@pytest.mark.parametrize(("model", "data", "task", "optimizer"), COMBINATIONS)
def test_every_model_learns_its_data(run_training, tmp_path, model, data, task, optimizer):
    cfg, metrics = run_training(
        f"model={model}", f"data={data}", "logger=csv", "trainer.max_epochs=5", *optimizer.split()
    )
    rows = read_csv_metrics(tmp_path)
    train_losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(train_losses) == 5
    assert train_losses[-1] < 0.7 * train_losses[0], train_losses
    if task == "classification":
        assert metrics["test/acc"] > 0.75
        assert {"val/acc", "val/f1", "test/f1"} <= metrics.keys()
    else:
        assert metrics["test/r2"] > 0.5
        assert {"val/mse", "val/mae", "val/r2", "test/mse"} <= metrics.keys()


def test_model_is_sized_from_the_data(run_training, tmp_path):
    run_training(
        "model=mlp", "data=blobs", "data.n_features=5", "data.centers=4", "trainer.max_epochs=1"
    )
    module = SupervisedModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    first, last = module.net.layers[1], module.net.layers[-1]
    assert first.in_features == 5
    assert last.out_features == 4


def test_best_checkpoint_restores_the_trained_model(run_training, tmp_path):
    cfg, metrics = run_training("model=mlp", "data=moons", "trainer.max_epochs=3")
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    module = SupervisedModule.load_from_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    assert module.hparams.task == "classification"
    assert module.hparams.net["hidden_sizes"] == [64, 64]
    # The test metrics were computed with the best weights: recompute them from the file.
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup()
    x, y = datamodule.splits["test"]
    module.eval()
    with torch.no_grad():
        accuracy = (module(x).argmax(dim=1) == y).float().mean().item()
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert best["best_epoch"] in range(3)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_reduces_the_loss(run_training, tmp_path, optimizer):
    run_training(
        "model=linreg",
        "data=linear",
        f"optimizer={optimizer}",
        "optimizer.lr=0.05",
        "logger=csv",
        "trainer.max_epochs=4",
    )
    losses = [row["train/loss"] for row in read_csv_metrics(tmp_path) if "train/loss" in row]
    assert losses[-1] < losses[0]


# After 4 epochs from lr 0.1: step halves it every 2 epochs (0.1 * 0.5**2), cosine reaches
# eta_min = 0 at T_max = max_epochs, and no scheduler leaves it alone.
@pytest.mark.parametrize(
    ("scheduler", "expected_lr"), [("step", 0.025), ("cosine", 0.0), ("none", 0.1)]
)
def test_schedulers_change_the_learning_rate_per_epoch(
    run_training, tmp_path, scheduler, expected_lr
):
    step_size = ["scheduler.step_size=2"] if scheduler == "step" else []
    run_training(
        "model=linreg",
        "data=linear",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        f"scheduler={scheduler}",
        *step_size,
        "trainer.max_epochs=4",
        "logger=none",
    )
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    lr = checkpoint["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(expected_lr, abs=1e-9)


def test_full_batch_and_no_validation_or_test_split(run_training, tmp_path):
    cfg, metrics = run_training(
        "model=linreg",
        "data=linear",
        "data.batch_size=null",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "trainer.max_epochs=3",
    )
    assert "train/loss" in metrics
    assert not any(name.startswith(("val/", "test/")) for name in metrics)
    assert (tmp_path / "checkpoints" / "best.ckpt").exists()  # best by train loss


def test_training_batches_already_live_on_the_module_device(make_config):
    from hydra.utils import instantiate

    cfg = make_config("data=moons", "data.batch_size=64")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    loader = datamodule.train_dataloader()
    chunk = next(iter(loader))
    x, y = chunk[0]
    assert x.device == torch.device("cpu") and x.shape == (64, 2) and y.dtype == torch.int64
    # Whole minibatches, not samples: one chunk holds several optimizer steps.
    assert len(chunk) == min(loader.steps_per_chunk, loader.steps_per_epoch)


def test_gradient_clipping_tames_a_learning_rate_that_diverges(run_training):
    # Unclipped, SGD with lr 5 overflows on this data within a few epochs (see test_errors).
    _, metrics = run_training(
        "model=linreg",
        "data=linear",
        "optimizer=sgd",
        "optimizer.lr=5",
        "gradient_clip_val=0.05",
        "trainer.max_epochs=30",
        "logger=none",
    )
    assert metrics["test/r2"] > 0.5
