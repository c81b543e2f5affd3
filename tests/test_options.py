"""Config options that a run can silently ignore: each test fails if the option is dropped.

The optimizers, the plateau scheduler, the data options no other test trains, mixed
precision, and the activation names of the nets.
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F

from conftest import read_csv_metrics
from dlbasics.config.tree import CONFIG_DIR
from dlbasics.nets import CNN, MLP, make_activation
from dlbasics.training.module import SupervisedModule
from dlbasics.training.train import build_module


def epoch_rows(run_dir) -> list[dict[str, float]]:
    """One CSV row per training epoch (the final test row left out)."""
    return [row for row in read_csv_metrics(run_dir) if "train/loss" in row]


# -- optimizers --------------------------------------------------------------------------

# Values no config file uses, so a default that wins over the config shows.
LR, WEIGHT_DECAY, MOMENTUM = 0.0123, 0.0456, 0.9
OPTIMIZERS = {
    # option: (class, extra overrides, the per-parameter state its steps leave behind)
    "sgd": (torch.optim.SGD, [f"optimizer.momentum={MOMENTUM}"], {"momentum_buffer"}),
    "adam": (torch.optim.Adam, [], {"step", "exp_avg", "exp_avg_sq"}),
    "adamw": (torch.optim.AdamW, [], {"step", "exp_avg", "exp_avg_sq"}),
    "rmsprop": (
        torch.optim.RMSprop,
        [f"optimizer.momentum={MOMENTUM}"],
        {"step", "square_avg", "momentum_buffer"},
    ),
}


def optimizer_overrides(name: str) -> list[str]:
    return [
        "model=linreg",
        "data=linear",
        f"optimizer={name}",
        f"optimizer.lr={LR}",
        f"optimizer.weight_decay={WEIGHT_DECAY}",
        *OPTIMIZERS[name][1],
    ]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_optimizer_option_builds_its_class_with_the_configured_settings(make_config, name):
    """Catches an optimizer choice that is ignored (say, always Adam), or an lr, momentum or
    weight_decay from the config that never reaches the optimizer."""
    cfg = make_config(*optimizer_overrides(name))
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    module = build_module(cfg, datamodule)
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    assert type(optimizer) is OPTIMIZERS[name][0]  # exactly: AdamW is not Adam
    (group,) = optimizer.param_groups
    assert group["lr"] == LR and group["weight_decay"] == WEIGHT_DECAY
    if "momentum" in cfg.optimizer:
        assert group["momentum"] == MOMENTUM
    # It optimises every parameter of the model.
    assert {id(p) for p in group["params"]} == {id(p) for p in module.parameters()}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_steps_with_the_configured_optimizer(run_training, tmp_path, name):
    """The optimizer that really stepped during training (saved in last.ckpt) is the
    configured one: its settings, and the state only that algorithm keeps."""
    run_training(*optimizer_overrides(name), "trainer.max_epochs=1", "logger=none")
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = checkpoint["optimizer_states"]
    (group,) = state["param_groups"]
    assert group["lr"] == LR and group["weight_decay"] == WEIGHT_DECAY
    assert group.get("momentum", MOMENTUM) == MOMENTUM
    assert state["state"], "the optimizer never stepped"
    for per_parameter in state["state"].values():
        assert set(per_parameter) == OPTIMIZERS[name][2]


# -- the plateau scheduler ---------------------------------------------------------------


def replay_plateau(losses: list[float], lr: float, factor: float, patience: int) -> list[float]:
    """The lr of each epoch that torch's ReduceLROnPlateau gives when fed ``losses``."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=factor, patience=patience
    )
    rates = []
    for loss in losses:
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step(loss)
    return rates


def test_plateau_scheduler_halves_the_lr_when_the_val_loss_stalls(run_training, tmp_path):
    """scheduler=plateau must watch val/loss, once per epoch: linear regression with SGD
    converges within ~8 epochs, after which the val loss wanders at the noise floor."""
    cfg, _ = run_training(
        "model=linreg",
        "data=linear",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "scheduler=plateau",
        "scheduler.patience=2",
        "trainer.max_epochs=20",
        "logger=csv",
    )
    rows = epoch_rows(tmp_path)
    logged = [row["train/lr"] for row in rows]
    assert len(logged) == 20
    # `train/lr` is logged as float32: compare to within its precision.
    assert logged[0] == pytest.approx(0.1, rel=1e-6) and min(logged) < 0.03  # lowered twice
    assert all(later <= earlier for earlier, later in zip(logged, logged[1:], strict=False))
    # Exactly when: the logged val losses, fed to a fresh ReduceLROnPlateau, give the same lrs.
    replay = {
        key: replay_plateau([row[key] for row in rows], 0.1, cfg.scheduler.factor, 2)
        for key in ("val/loss", "train/loss")
    }
    assert logged == pytest.approx(replay["val/loss"], rel=1e-6)
    assert replay["train/loss"] != replay["val/loss"]  # so watching train loss would fail here


# -- data options that no other test trains --------------------------------------------

# Trained elsewhere: linear, iris, make_regression, moons, digits, blobs (test_training),
# points and make_regression (test_experiments), csv (test_csv_data).
TRAINED_ELSEWHERE = {
    "linear",
    "iris",
    "make_regression",
    "moons",
    "digits",
    "blobs",
    "points",
    "csv",
    # images: test_images.py writes each format and trains on it
    "mnist",
    "fashion_mnist",
    "cifar10",
    "images",
}
# option: task, one sample's shape, outputs, test metric, bar after 2 epochs of an MLP
# (measured: circles 0.98 acc where a linear model gets 0.58; make_classification 0.76, 3
# classes; wine 0.94, majority class 0.40; breast_cancer 0.95, majority 0.63; diabetes R² 0.35).
DATA_OPTIONS = {
    "circles": ("classification", [2], 2, "test/acc", 0.85),
    "classification": ("classification", [20], 3, "test/acc", 0.6),
    "wine": ("classification", [13], 3, "test/acc", 0.8),
    "breast_cancer": ("classification", [30], 2, "test/acc", 0.85),
    "diabetes": ("regression", [10], 1, "test/r2", 0.2),
}


def test_every_data_option_is_trained_by_some_test():
    options = {path.stem for path in (CONFIG_DIR / "data").glob("*.yaml")}
    assert options == TRAINED_ELSEWHERE | set(DATA_OPTIONS)


@pytest.mark.parametrize("data", list(DATA_OPTIONS))
def test_each_data_option_reports_its_shape_and_trains(run_training, tmp_path, data):
    """Catches a wrong task, feature count or class count (the model is sized from them),
    and features shuffled against labels (the score would fall to chance)."""
    task, input_shape, num_outputs, metric, bar = DATA_OPTIONS[data]
    _, metrics = run_training(
        "model=mlp",
        f"data={data}",
        "optimizer=adam",
        "optimizer.lr=0.01",
        "trainer.max_epochs=2",
        "logger=csv",
    )
    module = SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    assert module.hparams.task == task
    assert module.hparams.input_shape == input_shape
    assert module.hparams.num_outputs == num_outputs
    assert module.net.layers[1].in_features == input_shape[0]
    assert module.net.layers[-1].out_features == num_outputs
    losses = [row["train/loss"] for row in epoch_rows(tmp_path)]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert metrics[metric] >= bar


# -- mixed precision ----------------------------------------------------------------------


def cpu_can_autocast_bf16() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            product = torch.ones(2, 2) @ torch.ones(2, 2)
        return product.dtype == torch.bfloat16
    except (RuntimeError, TypeError):
        return False


@pytest.mark.skipif(
    not cpu_can_autocast_bf16(), reason="this torch build has no bf16 autocast on CPU"
)
def test_bf16_mixed_precision_trains_on_cpu(run_training, tmp_path):
    """trainer.precision=bf16-mixed takes the module's Lightning optimizer path (the only one
    mixed precision uses): it must learn, count every optimizer step, and really run in
    bf16 (its losses differ from a float32 run's)."""
    common = ("model=mlp", "data=moons", "optimizer.lr=0.01", "trainer.max_epochs=5", "logger=csv")
    _, metrics = run_training(*common, "+trainer.precision=bf16-mixed")
    (tmp_path / "fp32").mkdir()  # a run directory, as Hydra would have made it
    run_training(*common, f"paths.output_dir={tmp_path / 'fp32'}")
    mixed = [row["train/loss"] for row in epoch_rows(tmp_path)]
    full = [row["train/loss"] for row in epoch_rows(tmp_path / "fp32")]
    assert len(mixed) == 5 and mixed[-1] < 0.5 * mixed[0], mixed
    assert metrics["val/acc"] >= 0.93  # moons: out of a linear model's reach
    assert mixed != pytest.approx(full, rel=1e-4)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 5 * 25  # 800 training rows in batches of 32


# -- activations --------------------------------------------------------------------------

# Written out here rather than read from dlbasics.nets, with the function each must compute.
ACTIVATIONS = {
    "relu": (nn.ReLU, F.relu),
    "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "tanh": (nn.Tanh, torch.tanh),
    "leaky_relu": (nn.LeakyReLU, lambda x: F.leaky_relu(x, 0.01)),
    "elu": (nn.ELU, lambda x: F.elu(x, 1.0)),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_each_activation_name_builds_that_activation(name):
    """Catches a name mapped to the wrong module (say, tanh -> Sigmoid) or to a default."""
    module_class, function = ACTIVATIONS[name]
    x = torch.linspace(-3, 3, 13)
    activation = make_activation(name)
    assert type(activation) is module_class
    torch.testing.assert_close(activation(x), function(x))
    # Both nets put one after every hidden layer (MLP) / every conv block and the hidden layer (CNN).
    mlp = MLP(input_shape=[3], num_outputs=2, hidden_sizes=[4, 5], activation=name)
    cnn = CNN(input_shape=[1, 8, 8], num_outputs=2, channels=[2, 3], activation=name)
    for net, count in ((mlp, 2), (cnn, 3)):
        built = [m for m in net.modules() if type(m) in {c for c, _ in ACTIVATIONS.values()}]
        assert [type(m) for m in built] == [module_class] * count


def test_an_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="relu"):
        make_activation("swish")
