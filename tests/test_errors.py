"""A user's mistake ends with one clear message that names the key and what would work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from dlbasics.config.checks import check_config, check_overrides
from dlbasics.errors import ConfigError, DataError


def assert_one_clear_error(result, *expected: str, exit_code: int = 2) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == exit_code, output[-3000:]
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("Error:")]
    for text in expected:
        assert text in line, line
    return line


def assert_one_clear_message(fit, *overrides: str, expected: tuple[str, ...]) -> str:
    """In this process: the one-line message of the mistake (a ConfigError or DataError,
    which the command line reports with exit code 2), holding every ``expected`` text."""
    with pytest.raises((ConfigError, DataError)) as caught:
        fit(*overrides)
    message = str(caught.value)
    assert "\n" not in message, message
    for text in expected:
        assert text in message, message
    return message


# Mistakes caught before anything heavy is imported (composition of the overrides).
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=transformer"], ["model=transformer", "cnn, linreg, mlp"]),
        (["optimizer=adagradx"], ["optimizer=adagradx", "adam, adamw, rmsprop, sgd"]),
        (["trainer.max_epoch=3"], ["trainer.max_epoch", "Did you mean trainer.max_epochs?"]),
        (["optimizer.learning_rate=0.1"], ["optimizer.learning_rate", "lr"]),
        # Types are the config schema's: Hydra refuses them while composing.
        (["optimizer.lr=fast"], ["optimizer.lr=fast: must be a number", "optimizer.lr=0.001"]),
        (["model.hidden_sizes=abc"], ["model.hidden_sizes=abc: must be a list"]),
        (["-m", "model=linreg,transformer"], ["model=transformer", "Available"]),
    ],
)
def test_unknown_options_and_keys(overrides, expected):
    with pytest.raises(ConfigError) as error:
        check_overrides([o for o in overrides if o != "-m"])
    for text in expected:
        assert text in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optimizer.lr=0"], "optimizer.lr=0"),
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
        (["data.batch_size=0"], "data.batch_size=0"),
        (["data.val_fraction=1.2"], "data.val_fraction=1.2"),
        (["data.test_fraction=-0.1"], "data.test_fraction=-0.1"),
        (
            ["data.val_fraction=0.5", "data.test_fraction=0.5"],
            "data.val_fraction + data.test_fraction",
        ),
        (["data.noise=-1"], "data.noise=-1"),
        (["model=mlp", "model.hidden_sizes=[64,0]"], "model.hidden_sizes"),
        (["model=mlp", "model.activation=swish"], "relu, sigmoid, tanh, leaky_relu, elu"),
        (["model=cnn", "model.channels=[-1]"], "model.channels"),
        (["trainer.accelerator=gpu"], "trainer.accelerator=cpu"),
        (["trainer=gpu"], "no CUDA GPU is visible"),
    ],
)
def test_bad_values_name_the_key(make_config, overrides, expected):
    import torch

    if torch.cuda.is_available() and "gpu" in " ".join(overrides):
        pytest.skip("a GPU is visible here")
    with pytest.raises(ConfigError, match=expected.replace("+", r"\+").replace("[", r"\[")):
        check_config(make_config(*overrides))


def test_good_config_passes(make_config):
    check_config(make_config("experiment=cnn_digits"))


def test_unknown_key_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    result = run_cli("trainer.max_epoch=3", cwd=tmp_path)
    assert_one_clear_error(result, "trainer.max_epoch", "trainer.max_epochs")
    assert not (tmp_path / "outputs").exists()  # stopped before any run started


def test_negative_learning_rate_is_one_clear_message(fit):
    assert_one_clear_message(fit, "optimizer.lr=-1", expected=("optimizer.lr=-1", "above 0"))


def test_cnn_on_tabular_data_names_model_data_and_shape(fit):
    assert_one_clear_message(
        fit, "model=cnn", "data=moons", expected=("model=cnn", "data=moons", "(2,)", "data=digits")
    )


@pytest.mark.slow
def test_a_diverging_loss_stops_with_epoch_step_and_advice(tmp_path):
    # SGD with lr 5 on the linear data grows for a few epochs, then overflows.
    result = run_cli(
        "model=linreg",
        "data=linear",
        "optimizer=sgd",
        "optimizer.lr=5",
        "trainer.max_epochs=30",
        cwd=tmp_path,
    )
    line = assert_one_clear_error(
        result, "epoch", "step", "optimizer.lr=5", "Lower the learning rate", exit_code=1
    )
    assert "nan" in line or "inf" in line
    kept = Path(line.split("The last good checkpoint is kept: ")[1].strip().rstrip("."))
    assert kept.is_file()
    for checkpoint in kept.parent.glob("*.ckpt"):  # no file holds the diverged weights
        weights = torch.load(checkpoint, weights_only=False)["state_dict"]
        assert all(torch.isfinite(tensor).all() for tensor in weights.values()), checkpoint


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data=moons", "data.n_samples=5"], "data.val_fraction=0.1"),
        (["data=points", "data.val_fraction=0.5", "data.test_fraction=0.4"], "no training rows"),
    ],
)
def test_too_few_rows_for_the_split_names_the_keys(make_config, overrides, expected):
    from hydra.utils import instantiate

    from dlbasics.errors import DataError

    datamodule = instantiate(make_config(*overrides).data)
    with pytest.raises(DataError, match=expected):
        datamodule.setup()


def test_a_bad_value_anywhere_in_a_sweep_stops_it_before_the_first_job(tmp_path):
    result = run_cli("-m", "model=mlp,linreg", "optimizer.lr=0.1,-1", cwd=tmp_path)
    assert_one_clear_error(result, "optimizer.lr=-1")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_diverging_job_of_a_sweep_ends_only_that_job(tmp_path):
    result = run_cli(
        "-m",
        "model=linreg",
        "data=linear",
        "optimizer=sgd",
        "optimizer.lr=5,0.1",
        "trainer.max_epochs=30",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    assert "Error: the training loss became" in (sweep / "0" / "train.log").read_text()
    finished = torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=False)
    assert finished["dlbasics_finished"] and finished["epoch"] == 30


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=linreg"], "the checkpoint holds another model (dlbasics.nets.MLP, not"),
        (["data=iris"], "trained on data with 2 features, this run's data have 4"),
        (["model.hidden_sizes=[8]"], "other settings (hidden_sizes=[64, 64] there, [8] here)"),
        (["optimizer=sgd"], "trained with optimizer torch.optim.Adam, this run uses"),
    ],
)
def test_a_checkpoint_that_does_not_fit_says_what_differs(make_config, overrides, expected):
    from dlbasics.training.train import train

    quiet = ["logger=none", "figures=none"]
    train(make_config("data=moons", "model=mlp", "trainer.max_epochs=1", *quiet))
    checkpoint = Path(make_config().paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        train(make_config("data=moons", "model=mlp", *quiet, *overrides, f"ckpt_path={checkpoint}"))
