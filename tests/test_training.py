"""Every model trains on regression and classification data composed from the real configs."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch.nn import functional as F

from conftest import read_csv_metrics
from dlbasics.training.module import SupervisedModule

# Moons with 2000 rows (500 test rows, so one point of accuracy is 5 rows). Measured on this
# split: a linear classifier (model=linreg, Adam lr 0.02, 20 epochs) reaches 0.854 test
# accuracy however long it trains; an MLP [64, 64] reaches 0.956-0.974 with any activation.
# 0.93 is therefore a bar a linear model (or an MLP whose activations do nothing) cannot clear.
MOONS = ("data=moons", "data.n_samples=2000", "data.test_fraction=0.25")
LINEAR_MOONS_ACCURACY = 0.854
MOONS_BAR = 0.93

SGD, ADAM = "optimizer=sgd", "optimizer=adam optimizer.lr=0.01"
COMBINATIONS = [
    # model, data, task, overrides, the test score it must reach (accuracy or R²)
    ("linreg", "linear", "regression", f"{SGD} optimizer.lr=0.1", 0.5),
    ("linreg", "iris", "classification", f"{SGD} optimizer.lr=0.5", 0.75),  # softmax regression
    ("mlp", "make_regression", "regression", ADAM, 0.5),
    # Above MOONS_BAR: the MLP must find the curved boundary (0.968 measured after 5 epochs).
    ("mlp", "moons", "classification", " ".join([ADAM, *MOONS[1:]]), MOONS_BAR),
    ("mlp", "digits", "classification", ADAM, 0.75),  # flattened images
    ("cnn", "digits", "classification", ADAM, 0.75),  # 1 x 8 x 8 images
]


@pytest.mark.parametrize(("model", "data", "task", "overrides", "score"), COMBINATIONS)
def test_every_model_learns_its_data(run_training, tmp_path, model, data, task, overrides, score):
    cfg, metrics = run_training(
        f"model={model}", f"data={data}", "logger=csv", "trainer.max_epochs=5", *overrides.split()
    )
    rows = read_csv_metrics(tmp_path)
    train_losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(train_losses) == 5
    assert train_losses[-1] < 0.7 * train_losses[0], train_losses
    if task == "classification":
        assert metrics["test/acc"] >= score
        assert {"val/acc", "val/f1", "test/f1"} <= metrics.keys()
    else:
        assert metrics["test/r2"] >= score
        assert {"val/mse", "val/mae", "val/r2", "test/mse"} <= metrics.keys()


def test_a_linear_model_cannot_reach_the_moons_bar(run_training):
    """Keeps MOONS_BAR honest: were the data or split to change so that a linear model
    cleared the bar, the moons and activation tests would no longer prove nonlinearity."""
    _, metrics = run_training(
        "model=linreg",
        *MOONS,
        "optimizer=adam",
        "optimizer.lr=0.02",
        "trainer.max_epochs=20",
        "logger=none",
    )
    assert metrics["test/acc"] == pytest.approx(LINEAR_MOONS_ACCURACY, abs=0.03)
    assert metrics["test/acc"] < MOONS_BAR - 0.04


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu", "elu"])
def test_every_activation_learns_what_a_linear_model_cannot(run_training, activation):
    """An activation that is ignored or built as the identity leaves the MLP linear (0.854)."""
    cfg, metrics = run_training(
        "model=mlp",
        f"model.activation={activation}",
        *MOONS,
        "optimizer=adam",
        "optimizer.lr=0.02",
        "trainer.max_epochs=20",
        "logger=none",
    )
    assert cfg.model.activation == activation
    assert metrics["test/acc"] >= MOONS_BAR, f"{activation}: {metrics['test/acc']:.3f}"


def test_model_is_sized_from_the_data(run_training, tmp_path):
    run_training(
        "model=mlp", "data=blobs", "data.n_features=5", "data.centers=4", "trainer.max_epochs=1"
    )
    module = SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    first, last = module.net.layers[1], module.net.layers[-1]
    assert first.in_features == 5
    assert last.out_features == 4


# A wide MLP on 30 noisy training rows overfits: the validation loss bottoms out early
# (epoch 6 of 25, 0.40) and then climbs (1.1 by the last epoch), so best.ckpt != last.ckpt.
OVERFITTING = (
    "model=mlp",
    "model.hidden_sizes=[256,256]",
    "data=moons",
    "data.n_samples=100",
    "data.noise=0.4",
    "data.val_fraction=0.3",
    "data.test_fraction=0.3",
    "data.batch_size=null",
    "optimizer=adam",
    "optimizer.lr=0.01",
    "logger=csv",
)


def classify(path, datamodule, split: str) -> tuple[float, float]:
    """(cross-entropy, accuracy) of the checkpoint at ``path`` on one split of ``datamodule``."""
    module = SupervisedModule.load_from_checkpoint(path, map_location="cpu").eval()
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    x, y = (torch.cat(parts) for parts in zip(*loader, strict=True))
    with torch.no_grad():
        logits = module(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(dim=1) == y).float().mean().item()


def test_best_checkpoint_holds_the_epoch_with_the_lowest_val_loss(run_training, tmp_path):
    """Catches best.ckpt written with the current (last) weights, a best picked by the wrong
    metric or direction, weights copied an epoch late, and a test split scored with last.ckpt."""
    cfg, metrics = run_training(*OVERFITTING, "trainer.max_epochs=25")
    epochs = [row for row in read_csv_metrics(tmp_path) if "val/loss" in row]
    val_losses = [row["val/loss"] for row in epochs]
    best_index = min(range(len(val_losses)), key=val_losses.__getitem__)
    # The scenario itself: the best epoch is neither the first nor the last, and far better.
    assert len(val_losses) == 25
    assert 0 < best_index < 24 and val_losses[-1] > 2 * val_losses[best_index], val_losses

    checkpoints = tmp_path / "checkpoints"
    best = torch.load(checkpoints / "best.ckpt", weights_only=False)
    last = torch.load(checkpoints / "last.ckpt", weights_only=False)
    assert best["best_epoch"] == epochs[best_index]["epoch"]
    assert any(
        not torch.equal(best["state_dict"][name], last["state_dict"][name])
        for name in last["state_dict"]
    )

    datamodule = instantiate(cfg.data)
    datamodule.setup()
    # best.ckpt's weights give the lowest logged val loss; last.ckpt's give the last one.
    best_val, _ = classify(checkpoints / "best.ckpt", datamodule, "val")
    last_val, _ = classify(checkpoints / "last.ckpt", datamodule, "val")
    assert best_val == pytest.approx(val_losses[best_index], rel=1e-5)
    assert last_val == pytest.approx(val_losses[-1], rel=1e-5)
    # The reported test metrics were computed with the best weights, not the last ones.
    best_test, best_acc = classify(checkpoints / "best.ckpt", datamodule, "test")
    last_test, _ = classify(checkpoints / "last.ckpt", datamodule, "test")
    assert metrics["test/loss"] == pytest.approx(best_test, rel=1e-5)
    assert metrics["test/acc"] == pytest.approx(best_acc, abs=1e-6)
    assert not math.isclose(last_test, best_test, rel_tol=0.1)

    module = SupervisedModule.load_from_checkpoint(checkpoints / "best.ckpt", map_location="cpu")
    assert module.hparams.task == "classification"
    assert module.hparams.net["hidden_sizes"] == [256, 256]


def test_early_stopping_ends_the_run_patience_epochs_after_the_best(run_training, tmp_path):
    """callbacks=early_stopping must stop once val/loss has not improved for `patience`
    epochs; a callback that is dropped, or watches another metric, runs all 40 epochs."""
    cfg, _ = run_training(
        *OVERFITTING,
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=3",
        "trainer.max_epochs=40",
    )
    assert cfg.callbacks.early_stopping.monitor == "val/loss"
    val_losses = [row["val/loss"] for row in read_csv_metrics(tmp_path) if "val/loss" in row]
    best_index = min(range(len(val_losses)), key=val_losses.__getitem__)
    assert len(val_losses) == best_index + 3 + 1 < 40, val_losses
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == len(val_losses)  # the checkpoint agrees: epochs completed


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


# From lr 0.1 over 4 epochs: step halves it every 2 epochs, cosine follows
# 0.1 * (1 + cos(pi * epoch / 4)) / 2 down to eta_min = 0 at T_max = max_epochs, and no
# scheduler leaves it alone. `train/lr` is logged for each epoch as it was during that epoch.
COSINE = [0.1 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(5)]
SCHEDULES = {
    "step": [0.1, 0.1, 0.05, 0.05, 0.025],
    "cosine": COSINE,
    "none": [0.1] * 5,
}


@pytest.mark.parametrize("scheduler", list(SCHEDULES))
def test_schedulers_change_the_learning_rate_per_epoch(run_training, tmp_path, scheduler):
    """Catches a scheduler that is never stepped, stepped per batch, or built with other
    settings than the config's (step_size, T_max)."""
    step_size = ["scheduler.step_size=2"] if scheduler == "step" else []
    run_training(
        "model=linreg",
        "data=linear",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        f"scheduler={scheduler}",
        *step_size,
        "trainer.max_epochs=4",
        "logger=csv",
    )
    expected = SCHEDULES[scheduler]
    logged = [row["train/lr"] for row in read_csv_metrics(tmp_path) if "train/lr" in row]
    assert logged == pytest.approx(expected[:4], abs=1e-7)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    lr = checkpoint["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(expected[4], abs=1e-7)


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
    loader = datamodule.train_dataloader()  # no trainer: plain (x, y) minibatches
    x, y = next(iter(loader))
    assert x.device == torch.device("cpu") and x.shape == (64, 2) and y.dtype == torch.int64
    assert len(loader) == 13  # 800 training rows: whole minibatches, not samples


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


def test_float32_matmul_precision_is_a_checked_config_key(run_training, make_config):
    from dlbasics.config.checks import check_config
    from dlbasics.errors import ConfigError

    with pytest.raises(ConfigError, match="float32_matmul_precision=low: not one of highest"):
        check_config(make_config("float32_matmul_precision=low"))
    run_training("data=points", "float32_matmul_precision=medium", "trainer.max_epochs=1",
                 "logger=none", "figures=none")  # fmt: skip
    assert torch.get_float32_matmul_precision() == "medium"
    torch.set_float32_matmul_precision("highest")
