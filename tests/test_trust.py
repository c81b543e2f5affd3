"""Issue 10: data a user can trust, one line for every mistake, run directories that stay whole."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import dlbasics
from conftest import run_cli
from dlbasics.data.table import read_csv_data
from dlbasics.errors import ConfigError, DataError
from dlbasics.training.module import SupervisedModule


def runs_in(folder):
    root = folder / "outputs"
    return sorted(p for p in root.glob("*/runs/*")) if root.exists() else []


def one_error_line(result) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("Error:")]
    return line


def one_mistake(fit, *overrides: str) -> str:
    """In this process: the one-line message of a mistake that the command line reports
    with exit code 2 (a ConfigError or DataError)."""
    with pytest.raises((ConfigError, DataError)) as caught:
        fit(*overrides)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# -- mistakes found before anything heavy starts: one line, exit 2, no run directory ----------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["seed=abc"], "seed=abc: must be a whole number"),
        (["gradient_clip_val=-1"], "gradient_clip_val=-1: must be a number above 0"),
        (["trainer.accelerator=tpu"], "trainer.accelerator=tpu: not supported by dlbasics"),
        (["callbacks=early_stopping", "data.val_fraction=0"], "leaves no validation split"),
        (["callbacks.checkpoint.every_n_epochs=0"], "every_n_epochs=0: must be a whole number"),
        (["ckpt_path=missing.ckpt"], "ckpt_path=missing.ckpt: no such file"),
        (["data=moons", "data.n_samples=5"], "5 rows are too few for data.val_fraction=0.1"),
        (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0: must be a whole"),
        (["scheduler=step", "scheduler.gamma=-3"], "scheduler.gamma=-3: must be a number above"),
        (["scheduler=plateau", "scheduler.factor=0"], "scheduler.factor=0: the learning rate"),
        (["scheduler=cosine", "scheduler.eta_min=-1"], "scheduler.eta_min=-1: must be a number"),
    ],
)
def test_config_mistakes_stop_before_a_run_directory_exists(tmp_path, overrides, expected):
    result = run_cli(*overrides, cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2
    assert expected in one_error_line(result)
    assert runs_in(tmp_path) == []
    assert not imported(result, "lightning") and not imported(result, "torch")


def imported(result, package: str) -> bool:
    """Whether the process imported ``package`` (Python's -X importtime lines on stderr)."""
    return any(line.split("|")[-1].strip() == package for line in result.stderr.splitlines())


def test_a_library_message_names_the_key_it_mentions_whatever_its_case():
    from dlbasics.training.builders import config_errors

    with pytest.raises(ConfigError, match=r"\(check scheduler.factor=2\)"):
        with config_errors({"_target_": "Plateau", "factor": 2}, "scheduler"):
            raise ValueError("Factor should be < 1.0.")


def test_a_bad_csv_is_refused_before_lightning_is_imported(tmp_path):
    """scikit-learn's own wine_data.csv: rows longer than its first line (counts, not names)."""
    import sklearn

    wine = f"{sklearn.__path__[0]}/datasets/data/wine_data.csv"
    started = time.monotonic()
    result = run_cli("data=csv", f"data.path={wine}", "data.target=class_2", cwd=tmp_path,
                     env={"PYTHONPROFILEIMPORTTIME": "1"})  # fmt: skip
    seconds = time.monotonic() - started
    assert result.returncode == 2
    assert "has 14 fields but its first line names 5 columns" in one_error_line(result)
    assert runs_in(tmp_path) == []
    assert imported(result, "pandas") and not imported(result, "lightning")
    print(f"refused in {seconds:.1f} s")  # about 1 s here, against ~7 s once Lightning loads


def test_a_forced_run_directory_that_holds_a_run_is_refused(fit, tmp_path):
    earlier = tmp_path / "mine"
    (earlier / ".hydra").mkdir(parents=True)
    (earlier / ".hydra" / "config.yaml").write_text("seed: 1\n")
    message = one_mistake(fit, f"hydra.run.dir={earlier}")
    assert f"hydra.run.dir={earlier}: already holds an earlier run" in message
    assert (earlier / ".hydra" / "config.yaml").read_text() == "seed: 1\n"


# -- mistakes found while building: still one line, and nothing half-made left ---------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["optimizer=sgd", "optimizer.momentum=-1"],
            # optimizer.momentum is a float in the schema: -1 arrives as -1.0
            "optimizer: torch.optim.SGD refused its config: Invalid momentum value: -1.0 "
            "(check optimizer.momentum=-1.0)",
        ),
        (["model.hidden_sizes=[100000000]"], "would need about"),
    ],
)
def test_library_refusals_are_one_line_and_leave_no_directory(fit, tmp_path, overrides, expected):
    assert expected in one_mistake(fit, *overrides, "trainer.max_epochs=1")
    assert runs_in(tmp_path) == []


def test_impossible_sizes_are_refused_before_memory_is_allocated(run_training):
    with pytest.raises(ConfigError, match=r"model=MLP \(model\.hidden_sizes=\[100000000\]\)"):
        run_training("model.hidden_sizes=[100000000]", "logger=none")


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [1.0, 2.0])
def test_ctrl_c_while_starting_leaves_nothing_behind(tmp_path, seconds):
    process = subprocess.Popen(
        [sys.executable, "-m", "dlbasics.train", "trainer.max_epochs=1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # While the command line is checked (no run directory yet), or once Hydra has made the
    # run directory and Lightning is still importing (how far a start gets in a given time
    # depends on the machine and on whether Python has compiled the package yet).
    time.sleep(seconds)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted before training started" in stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert runs_in(tmp_path) == []


@pytest.mark.parametrize("step", ["configure_log", "_save_config"])
def test_ctrl_c_while_hydra_makes_the_run_directory_leaves_nothing_behind(tmp_path, step):
    # The moments a timed Ctrl-C sometimes hits: Hydra has made the run directory and is
    # setting up its log, or has saved config.yaml; the signal itself, sent from there.
    script = (
        "import os, signal, sys, hydra.core.utils as utils\n"
        f"original = utils.{step}\n"
        "def interrupted(*args, **kwargs):\n"
        "    original(*args, **kwargs)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        f"utils.{step} = interrupted\n"
        "from dlbasics.cli.train import main\n"
        "sys.argv = ['dlbasics.train', 'trainer.max_epochs=1']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 130, done.stderr[-2000:]
    assert "interrupted before training started" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert (tmp_path / "outputs").is_dir()  # Hydra had made the run directory
    assert runs_in(tmp_path) == []


# -- checkpoints: another model's, a truncated one, a run in use -----------------------------


def test_a_checkpoint_of_another_model_is_refused_and_nothing_is_written(make_config, tmp_path):
    from dlbasics.training.train import train

    train(make_config("trainer.max_epochs=1", "logger=none"))
    other = tmp_path / "mlp.ckpt"
    (tmp_path / "checkpoints" / "last.ckpt").rename(other)
    (tmp_path / "checkpoints" / "best.ckpt").unlink()
    cfg = make_config("model=linreg", f"ckpt_path={other}", "logger=none")
    with pytest.raises(
        ConfigError, match=r"ckpt_path=.*mlp\.ckpt: the checkpoint holds another model"
    ):
        train(cfg)
    assert list((tmp_path / "checkpoints").glob("*.ckpt")) == []  # no epoch-0 last.ckpt


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real run (2 epochs, with dlbasics.fit), shared by the resume tests."""
    folder = tmp_path_factory.mktemp("resume")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # as the command line run from folder: outputs/ there
        done = dlbasics.fit("trainer.max_epochs=2", "data.n_samples=200")
    assert runs_in(folder) == [done.dir]
    return folder, done.dir


@pytest.mark.slow
def test_resume_refuses_overrides_that_change_what_was_trained(finished_run, fit):
    folder, run = finished_run
    for override in ("model=linreg", "data.val_fraction=0.3", "optimizer.lr=0.5"):
        key = override.split("=")[0]
        assert f"{key} cannot change when resuming" in one_mistake(fit, f"resume={run}", override)


@pytest.mark.slow
def test_resume_records_the_overrides_it_accepts(finished_run, fit, capsys):
    folder, run = finished_run
    fit(f"resume={run}", "trainer.max_epochs=3")
    assert "max_epochs: 3" in (run / ".hydra" / "config.yaml").read_text()
    assert "trainer.max_epochs=3" in (run / ".hydra" / "resumes.yaml").read_text()
    # A second resume without overrides now knows the run finished its 3 epochs.
    capsys.readouterr()
    fit(f"resume={run}")
    assert "already finished its 3 epochs" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_directory_has_one_owner(finished_run):
    from dlbasics.config.rundir import claim, release

    folder, run = finished_run
    claim(run, "test")
    try:
        result = run_cli(f"resume={run}", "trainer.max_epochs=9", cwd=folder)
    finally:
        release(run)
    assert result.returncode == 2
    assert "in use by another process" in one_error_line(result)


@pytest.mark.slow
def test_a_truncated_last_checkpoint_points_to_best(finished_run, fit):
    folder, run = finished_run
    last = run / "checkpoints" / "last.ckpt"
    intact = last.read_bytes()
    last.write_bytes(intact[: len(intact) // 2])
    try:
        line = one_mistake(fit, f"resume={run}")
    finally:
        last.write_bytes(intact)
    assert "cannot be read as a checkpoint" in line and "best.ckpt is intact" in line


# -- data: the seed orders the rows; scaling travels with the checkpoint --------------------


def first_batch(make_config, *overrides):
    datamodule = instantiate(make_config(*overrides).data)
    datamodule.setup()
    return next(iter(datamodule.train_dataloader()))[0][0]


def test_the_run_seed_sets_the_order_of_training_rows(make_config):
    one, again = first_batch(make_config, "seed=1"), first_batch(make_config, "seed=1")
    other = first_batch(make_config, "seed=2")
    assert torch.equal(one, again)
    assert not torch.equal(one, other)


def test_one_class_is_refused_for_any_data(make_config):
    datamodule = instantiate(
        make_config("data=points", "+data.task=classification", "data.y=[1,1,1]").data
    )
    with pytest.raises(DataError, match="one class only"):
        datamodule.setup()


def write_penguin_like_csv(path, rows=300, seed=0):
    """Three species told apart by features on very different scales (mm and grams)."""
    rng = np.random.default_rng(seed)
    lines = ["bill_mm,mass_g,species"]
    for i in range(rows):
        kind = i % 3
        bill = 38 + 6 * kind + rng.normal(0, 1.0)
        mass = 3500 + 700 * (kind == 2) - 300 * (kind == 1) + rng.normal(0, 120)
        lines.append(f"{bill:.1f},{mass:.0f},{['Adelie', 'Chinstrap', 'Gentoo'][kind]}")
    path.write_text("\n".join(lines) + "\n")
    raw = np.array([[float(v) for v in line.split(",")[:2]] for line in lines[1:]])
    labels = [line.split(",")[2] for line in lines[1:]]
    return raw, labels


def test_a_checkpoint_predicts_raw_rows_like_its_test_split(run_training, tmp_path):
    raw, labels = write_penguin_like_csv(tmp_path / "penguins.csv")
    cfg, metrics = run_training(
        "data=csv", f"data.path={tmp_path / 'penguins.csv'}", "data.target=species",
        "trainer.max_epochs=15", "logger=none",
    )  # fmt: skip
    module = SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "best.ckpt", map_location="cpu"
    )
    names = module.hparams.data["class_names"]
    predicted = [names[i] for i in module.predict_raw(raw).tolist()]
    accuracy = np.mean([p == t for p, t in zip(predicted, labels, strict=True)])
    assert metrics["test/acc"] > 0.9
    assert accuracy > 0.9  # raw rows need the training split's scaling (mass in grams)
    # Without it (the net on raw numbers) the model would be far off:
    unscaled = module.net(torch.tensor(raw, dtype=torch.float32)).argmax(1).tolist()
    assert np.mean([names[i] == t for i, t in zip(unscaled, labels, strict=True)]) < 0.8


def test_a_standardised_target_reports_metrics_in_its_own_units(run_training, tmp_path):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    cfg, metrics = run_training(
        "model=linreg", "data=linear", "data.bias=5000", "data.noise=100", "data.n_samples=400",
        "data.standardize_target=true", "optimizer=sgd", "optimizer.lr=0.1",
        "trainer.max_epochs=30", "logger=none",
    )  # fmt: skip
    # Noise of standard deviation 100: a good fit's mean absolute error is about 80 units
    # (it would be about 0.1 in standard units).
    assert 40 < metrics["test/mae"] < 200
    # The test split's metrics, recomputed here from the tested checkpoint's predictions
    # on the raw test rows, against the raw targets (in the data's own units).
    module = SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "best.ckpt", map_location="cpu"
    )
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    x, y = datamodule.original_split("test")
    predicted = module.predict_raw(x).numpy().astype(np.float64)
    y = y.astype(np.float64)
    assert abs(np.mean(y) - 5000) < 100  # the raw targets, not standardised ones
    assert metrics["test/mse"] == pytest.approx(mean_squared_error(y, predicted), rel=1e-4)
    assert metrics["test/mae"] == pytest.approx(mean_absolute_error(y, predicted), rel=1e-4)
    # R² has no units: the same as scikit-learn's on these rows. The noise (variance 10000)
    # dwarfs what the features explain (2² + 3.5² = 16.25): near 0, far below 1.
    assert metrics["test/r2"] == pytest.approx(r2_score(y, predicted), abs=1e-3)
    assert metrics["test/r2"] < 0.1


# -- reading files: the task, the separator, the columns ------------------------------------


@pytest.mark.parametrize(
    ("column", "task", "why"),
    [
        (["cat", "dog"] * 10, "classification", "text labels"),
        ([0, 1, 2, 3] * 5, "classification", "4 distinct whole numbers"),
        ([i * 0.37 for i in range(20)], "regression", "not all whole numbers"),
        (list(range(20)), "regression", "20 distinct whole numbers"),
    ],
)
def test_task_auto_chooses_and_says_why(tmp_path, column, task, why):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i % 7},{v}\n" for i, v in enumerate(column)))
    table = read_csv_data(str(path), "y")
    assert table.task == task and why in table.task_reason


def test_separators_are_detected_or_chosen(tmp_path):
    semicolons = tmp_path / "s.csv"
    semicolons.write_text("a;b;y\n1.5;2;3\n4.5;5;6\n")
    table = read_csv_data(str(semicolons), "y", task="regression")
    assert table.separator == ";" and table.feature_names == ["a", "b"]
    tabs = tmp_path / "t.tsv"
    tabs.write_text("a\tb\ty\n1\t2\t3\n4\t5\t6\n")
    table = read_csv_data(str(tabs), "y", task="regression", sep="tab")
    assert table.x.tolist() == [[1, 2], [4, 5]]


def test_the_run_records_the_features_in_order(run_training, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,z,a,y\n" + "".join(f"{i},{i % 7},{i % 5},{i % 2}\n" for i in range(60)))
    run_training("data=csv", f"data.path={path}", "data.target=y", "data.drop=[id]",
                 "trainer.max_epochs=1", "logger=none")  # fmt: skip
    described = json.loads((tmp_path / "data.json").read_text())
    assert described["feature_names"] == ["z", "a"]
    assert described["task"] == "classification" and described["class_names"] == ["0", "1"]


def test_a_file_is_read_once_unless_it_changes(tmp_path):
    """The command line's pre-check and the run that follows share one reading."""
    path = tmp_path / "d.csv"
    path.write_text("a,y\n1,2\n2,4\n3,6\n")
    first = read_csv_data(str(path), "y", task="regression")
    assert read_csv_data(str(path), "y", task="regression") is first
    assert read_csv_data(str(path), "y", task="regression", features=["a"]) is not first
    path.write_text("a,y\n1,2\n2,4\n3,7\n")  # another size: read again
    assert read_csv_data(str(path), "y", task="regression").y.tolist() == [2, 4, 7]


def test_a_ctrl_c_that_a_library_swallowed_still_ends_as_an_interruption(tmp_path):
    # torch's C code can take a Ctrl-C that arrives while it loads numpy and carry on;
    # the next import then fails with an error of its own. The command must still say
    # "interrupted", exit 130 and leave nothing behind.
    script = (
        "import os, signal, sys\n"
        "import dlbasics.training.train as t\n"
        "from dlbasics.cli.train import main\n"
        "def swallowing_import(cfg, **keywords):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    except KeyboardInterrupt:\n"
        "        pass  # as the library did\n"
        "    raise ImportError('cannot load module more than once per process')\n"
        "t.train = swallowing_import\n"
        "sys.argv = ['dlbasics.train', 'trainer.max_epochs=1']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 130, done.stderr[-2000:]
    assert "interrupted before training started" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert runs_in(tmp_path) == []
