"""Every preset in conf/experiment/ reproduces the numbers its exercise promises, with its real settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from dlbasics.config.tree import CONFIG_DIR
from dlbasics.training.module import SupervisedModule


def best_module(tmp_path) -> SupervisedModule:
    return SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "best.ckpt", map_location="cpu"
    ).eval()


def last_module(tmp_path) -> SupervisedModule:
    return SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu"
    ).eval()


def test_every_preset_is_tested_here():
    presets = {path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml")}
    assert presets == {"linreg_1d", "linreg_2d", "linreg_tiny", "mlp_moons", "cnn_digits",
                       "cnn_mnist", "cnn_fashion_mnist", "cnn_cifar10"}  # fmt: skip


def test_linreg_1d_matches_least_squares(run_training, tmp_path):
    cfg, _ = run_training("experiment=linreg_1d")
    assert cfg.trainer.max_epochs == 100 and cfg.data.batch_size == 16 and cfg.optimizer.lr == 0.01
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    x, y = (t.double().numpy() for t in datamodule.splits["train"])
    design = np.hstack([x, np.ones((len(x), 1))])
    (weight, bias), *_ = np.linalg.lstsq(design, y[:, 0], rcond=None)
    linear = last_module(tmp_path).net.linear
    assert linear.weight.item() == pytest.approx(weight, rel=0.02)
    assert linear.bias.item() == pytest.approx(bias, rel=0.02)


def test_linreg_2d_recovers_the_true_weights(run_training, tmp_path):
    cfg, _ = run_training("experiment=linreg_2d")
    assert cfg.trainer.max_epochs == 1000 and cfg.data.batch_size is None
    linear = last_module(tmp_path).net.linear
    np.testing.assert_allclose(linear.weight.detach().numpy()[0], [2.0, -3.5], atol=0.25)
    assert linear.bias.item() == pytest.approx(5.0, abs=0.25)


def test_linreg_tiny_predicts_8_at_4(run_training, tmp_path):
    run_training("experiment=linreg_tiny")
    with torch.no_grad():
        prediction = last_module(tmp_path)(torch.tensor([[4.0]])).item()
    assert prediction == pytest.approx(8.0, abs=0.1)


@pytest.mark.slow
def test_mlp_moons_reaches_96_5_percent(run_training):
    cfg, metrics = run_training("experiment=mlp_moons")
    assert cfg.data.n_samples == 10_000 and cfg.data.noise == 0.2
    assert metrics["test/acc"] >= 0.965


@pytest.mark.slow
def test_cnn_digits_reaches_98_5_percent(run_training):
    cfg, metrics = run_training("experiment=cnn_digits")
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.1, 0.1)
    assert metrics["test/acc"] >= 0.985


# The image presets' accuracy needs the real sets (nothing can be downloaded here: see the
# README's presets table for what was measured); here each composes with its dataset, builds
# its net for the dataset's image shape and learns from files in the dataset's own format.
@pytest.mark.parametrize(
    "preset, dataset, folder, flattened",
    [("cnn_mnist", "mnist", "MNIST", 64 * 7 * 7),
     ("cnn_fashion_mnist", "fashion_mnist", "FashionMNIST", 64 * 7 * 7),
     ("cnn_cifar10", "cifar10", None, 128 * 4 * 4)],
)  # fmt: skip
def test_image_presets_build_their_net_for_their_images_and_learn(
    fit, tmp_path, monkeypatch, preset, dataset, folder, flattened
):
    from test_images import write_cifar10, write_mnist

    if folder:
        write_mnist(tmp_path / "data", folder)
    else:
        write_cifar10(tmp_path / "data", monkeypatch)
    run = fit(f"experiment={preset}", "data.batch_size=16", "trainer.max_epochs=3",
              "figures=none")  # fmt: skip
    assert run.config.data.dataset == dataset and run.config.data.standardize
    assert run.config.data.augment == (["flip", "crop"] if dataset == "cifar10" else None)
    net = run.module.net
    assert net.head[1].in_features == flattened  # the pools brought the image down as said
    losses = run.history["train/loss"].dropna().tolist()
    assert losses[-1] < losses[0], losses
