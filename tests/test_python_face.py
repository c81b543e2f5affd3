"""The Python face: dlbasics.fit, load and sweep, as a learner uses them in a notebook."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import dlbasics
from conftest import fit_error, interrupt_once, run_cli
from dlbasics.errors import ConfigError, RunInterrupted

LINEAR = ("model=linreg", "data=linear", "optimizer=sgd", "optimizer.lr=0.05", "trainer.max_epochs=40")


def test_fit_returns_a_run_that_knows_what_it_learned(fit, tmp_path):
    run = fit(*LINEAR)

    assert run.dir.parent == tmp_path / "outputs" / "train" / "runs"
    assert run.config.optimizer.lr == 0.05 and run.config.model._target_.endswith("LinearRegression")
    assert run.metrics["test/r2"] > 0.7  # 10 test rows, noise 1
    history = run.history
    assert list(history.index) == list(range(1, 41))
    assert history["train/loss"].iloc[-1] < history["train/loss"].iloc[0] / 10
    assert {"val/loss", "train/lr"} <= set(history.columns)
    assert 1 <= run.best_epoch <= 40
    assert history["val/loss"].idxmin() == run.best_epoch  # best.ckpt: the lowest val loss

    # y = x·[2, -3.5] + 5: the trained model's predictions on raw rows recover the plane.
    rows = pd.DataFrame({"x1": [0.0, 1.0, 0.0], "x2": [0.0, 0.0, 1.0]})
    predicted = run.predict(rows)["predicted_y"].to_numpy()
    bias, weights = predicted[0], predicted[1:] - predicted[0]
    assert abs(bias - 5.0) < 0.3 and np.allclose(weights, [2.0, -3.5], atol=0.3)
    assert np.allclose(run.predict(rows.to_numpy())["predicted_y"], predicted)

    assert run.evaluate()["test/loss"] == pytest.approx(run.metrics["test/loss"], rel=1e-5)
    assert {"fitted_plane", "weights", "predicted_vs_actual"} <= set(run.figures)
    assert run.figures["fitted_plane"]._repr_png_().startswith(b"\x89PNG")
    assert type(run.module.net).__name__ == "LinearRegression"

    again = dlbasics.load(run.dir)
    assert again.metrics == run.metrics and again.best_epoch == run.best_epoch
    assert dlbasics.load(run.dir / "checkpoints" / "best.ckpt").dir == run.dir
    assert "test/r2" in again._repr_html_()


def test_predict_on_a_csv_file_writes_what_the_command_writes(fit, tmp_path):
    run = fit(*LINEAR)
    (tmp_path / "new.csv").write_text("id,x2,x1\n7,0,0\n8,1,1\n")
    predicted = run.predict(tmp_path / "new.csv")
    assert list(predicted.columns) == ["id", "x2", "x1", "predicted_y"]
    assert (run.dir / "predict" / "new.csv").is_file()
    assert predicted["predicted_y"][1] == pytest.approx(5 + 2 - 3.5, abs=0.4)
    with pytest.raises(ConfigError, match="shaped"):
        run.predict(np.zeros((2, 3)))


def test_many_fits_in_one_process_leave_nothing_behind(fit):
    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    def state():
        return (
            list(logging.getLogger().handlers),
            logging.getLogger().level,
            signal.getsignal(signal.SIGINT),
            signal.getsignal(signal.SIGTERM),
            torch.get_num_threads(),
            GlobalHydra.instance().is_initialized(),
            HydraConfig.initialized(),
        )

    before = state()
    first = fit("experiment=linreg_tiny", "trainer.max_epochs=5")
    second = fit("experiment=linreg_tiny", "trainer.max_epochs=5")
    assert state() == before
    assert first.dir != second.dir
    assert (first.dir / "train.log").read_text().count("Overrides:") == 1  # no mixed logs
    assert (second.dir / "train.log").read_text().count("Overrides:") == 1


def test_a_mistake_raises_the_line_the_command_line_prints(fit, tmp_path):
    message = fit_error(fit, "optimizer.lr=-1")
    result = run_cli("optimizer.lr=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {message}"
    assert not (tmp_path / "outputs").exists()  # refused before a run directory was made


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: dlbasics.fit(epochs=5), ["epochs=5", "unknown keyword", 'fit("epochs=5")']),
        (lambda: dlbasics.fit(5), ["fit(5)", "strings"]),
        (lambda: dlbasics.fit("-m", "seed=1"), ["dlbasics.sweep"]),
        (lambda: dlbasics.fit(config_dir="no_such_folder"), ["config_dir=", "no such folder"]),
        (lambda: dlbasics.fit("optimizer.lr=0.01,0.1"), ["several values", "dlbasics.sweep"]),
        (lambda: dlbasics.fit("model=cnnn"), ["model=cnnn", "Did you mean model=cnn"]),
        (lambda: dlbasics.fit("trainer=ddp"), ["command line", "trainer=ddp"]),
    ],
)
def test_bad_calls_are_one_line(call, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    # In IPython and Jupyter the error shows as that line, without Hydra's traceback.
    assert caught.value._render_traceback_() == [f"ConfigError: {message}"]


def test_load_says_what_a_folder_is(fit, tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        dlbasics.load(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="not a run directory"):
        dlbasics.load(tmp_path)
    with pytest.raises(ConfigError, match="a file"):
        (tmp_path / "notes.txt").write_text("x")
        dlbasics.load(tmp_path / "notes.txt")
    # A sweep directory: its job folders are named.
    run = fit("experiment=linreg_tiny", "trainer.max_epochs=2")
    sweep_dir = tmp_path / "sweep"
    for number in ("0", "1"):
        job = sweep_dir / number
        (job / ".hydra").mkdir(parents=True)
        for name in ("config.yaml", "overrides.yaml"):
            (job / ".hydra" / name).write_text((run.dir / ".hydra" / name).read_text())
    with pytest.raises(ConfigError, match=r"a sweep directory; load one of its jobs \(0, 1\)"):
        dlbasics.load(sweep_dir)


def test_ctrl_c_stops_a_fit_with_a_checkpoint_that_fit_resumes(fit, tmp_path):
    """A notebook's interrupt is SIGINT to the kernel: the run stops at an epoch's end,
    keeps last.ckpt, and the kernel (this process) goes on to resume it."""
    long_run = ("model=linreg", "data=linear", "data.n_samples=2000", "data.batch_size=8")
    # data.json is written just before training starts; a moment later it runs.
    with interrupt_once(tmp_path, "outputs/train/runs/*/data.json"):
        with pytest.raises(RunInterrupted) as caught:
            fit(*long_run, "trainer.max_epochs=10000", "figures=none")
    message = str(caught.value)
    assert "Stopped by SIGINT" in message and 'dlbasics.fit("resume=' in message
    run_dir = message.split('dlbasics.fit("resume=', 1)[1].split('"', 1)[0]
    stopped = dlbasics.load(run_dir)
    assert (stopped.dir / "checkpoints" / "last.ckpt").is_file()
    done = len(stopped.history)
    assert done >= 1

    resumed = fit(f"resume={run_dir}", f"trainer.max_epochs={done + 2}")
    assert resumed.dir == stopped.dir
    assert list(resumed.history.index) == list(range(1, done + 3))
    assert not resumed.history.isna().all(axis=1).any()  # no blank row where it resumed
    assert "test/loss" in resumed.metrics


def test_a_sweeps_mistake_is_refused_before_any_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="optimizer.lr=-1"):
        dlbasics.sweep("optimizer.lr=0.1,-1")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_captured_command_line_output_has_no_escape_codes(tmp_path):
    """``!python -m dlbasics.train`` in a notebook: Jupyter sets FORCE_COLOR, the output
    is captured; it must read as plain text, its progress line whole."""
    result = subprocess.run(
        [sys.executable, "-m", "dlbasics.train", "experiment=linreg_tiny", "trainer.max_epochs=50"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout + result.stderr
    assert "Epochs" in result.stdout and "50/50" in result.stdout


@pytest.mark.slow
def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch, capfd):
    """Every line of the README's Python example, as written: fit, its attributes and uses,
    load, resume, and a seed sweep (whose summary and mean ± sd table are checked)."""
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## In Python and Jupyter", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    run, longer, seeds = names["run"], names["longer"], names["seeds"]
    assert np.allclose(run.predict(pd.DataFrame({"x1": [1.0], "x2": [0.0]}))["predicted_y"]
                       - run.predict(pd.DataFrame({"x1": [0.0], "x2": [0.0]}))["predicted_y"],
                       2.0, atol=0.4)
    assert longer.dir == run.dir and len(longer.history) == 1200
    assert (run.dir / "export" / "best.onnx").is_file()
    summary = seeds.summary
    assert len(summary) == 3 and set(summary["status"]) == {"done"}
    assert summary["best"].is_monotonic_increasing  # best first (the loss: lower is better)
    assert list(seeds.by_setting["seeds"]) == [3]  # one setting, over three seeds
    assert len(seeds.runs) == 3 and all(run.metrics for run in seeds.runs)
    assert seeds.dir.parent == tmp_path / "outputs" / "linreg_tiny" / "multiruns"
    assert "Sweep summary" in capfd.readouterr().out  # the child's output was shown
    # the same three seeds as one vectorised run: the same runs, so the same mean and sd
    stacked = names["stacked"]
    assert list(stacked.by_setting["seeds"]) == [3]
    for column in ("best_mean", "best_std", "train/loss_mean"):
        assert stacked.by_setting[column].iloc[0] == pytest.approx(
            seeds.by_setting[column].iloc[0], rel=1e-4, abs=1e-9
        ), column


def test_fits_within_one_second_get_their_own_directories(fit):
    runs = [fit("experiment=linreg_tiny", "trainer.max_epochs=1", "figures=none") for _ in range(3)]
    assert len({run.dir for run in runs}) == 3
    for run in runs:
        assert (run.dir / "metrics.json").is_file()
        assert (run.dir / "train.log").read_text().count("Overrides:") == 1


def test_fit_imports_your_own_code_from_the_current_folder(fit, tmp_path):
    """As ``python -m dlbasics.train`` does: a ``_target_`` in a file beside you imports."""
    (tmp_path / "my_tiny_net.py").write_text(
        "import torch\n\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs):\n"
        "        super().__init__()\n"
        "        self.linear = torch.nn.Linear(input_shape[0], num_outputs)\n\n"
        "    def forward(self, x):\n"
        "        return self.linear(x)\n"
    )
    path_before = list(sys.path)
    # The model option's keys are fixed by its schema: a net of your own replaces the node.
    run = fit("data=linear", "~model", "+model._target_=my_tiny_net.Net", "trainer.max_epochs=3",
              "figures=none")
    assert type(run.module.net).__name__ == "Net" and run.metrics["test/loss"] > 0
    assert sys.path == path_before


def test_lightnings_notes_stay_out_of_a_notebook_whatever_imported_lightning_first(
    fit, capfd, monkeypatch
):
    """Imported before any logging is set up (a notebook's lr_find before its first fit),
    Lightning puts console handlers of its own on lightning.pytorch and lightning.fabric and
    stops them propagating: its notes ("GPU available: False", a logger advert) must still
    go to train.log only."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", [logging.StreamHandler()])
        monkeypatch.setattr(logger, "propagate", False)
    capfd.readouterr()
    run = fit("experiment=linreg_tiny", "trainer.max_epochs=2", "figures=none")
    shown = "".join(capfd.readouterr())
    assert "GPU available" not in shown and "Trainer.fit` stopped" not in shown
    assert "GPU available" in (run.dir / "train.log").read_text()
