"""Hyperparameter search (``hparams_search=optuna``), parallel sweeps (``hydra/launcher=joblib``)
and the summary every multirun ends with."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import read_csv_metrics, run_cli
from dlbasics.config.prechecks import check_command_line
from dlbasics.errors import ConfigError
from dlbasics.search.hparams import distribution, parse_space
from dlbasics.training.objective import Outcome, choose_objective

TINY = ["trainer.max_epochs=3", "data.n_samples=200"]


# -- what a run is judged by --------------------------------------------------------------


def test_objective_follows_the_task():
    assert choose_objective("classification") == choose_objective("classification", "val/acc")
    assert choose_objective("classification").direction == "maximize"
    assert choose_objective("regression").metric == "val/loss"
    assert choose_objective("regression").direction == "minimize"
    assert choose_objective("regression", "val/r2").direction == "maximize"
    assert choose_objective("classification", "val/loss").direction == "minimize"
    assert choose_objective("regression", "val/loss", "maximize").direction == "maximize"
    with pytest.raises(ConfigError, match="hparams_search.metric=val/acc: not a validation"):
        choose_objective("regression", "val/acc")  # regression runs log no accuracy
    with pytest.raises(ConfigError, match="hparams_search.direction=up"):
        choose_objective("regression", "val/loss", "up")


@pytest.mark.parametrize(
    ("data", "metric", "best"), [("moons", "val/acc", max), ("linear", "val/loss", min)]
)
def test_a_run_saves_its_best_epoch_not_its_last(run_training, data, metric, best):
    model = "mlp" if data == "moons" else "linreg"
    cfg, metrics = run_training(
        f"data={data}",
        f"model={model}",
        "logger=csv",
        "trainer.max_epochs=8",
        "data.n_samples=200",
        "optimizer.lr=0.05",
    )
    outcome = Outcome.read(cfg.paths.output_dir)
    epochs = [row for row in read_csv_metrics(Path(cfg.paths.output_dir)) if metric in row]
    values = [row[metric] for row in epochs]
    assert outcome.metric == metric and len(values) == 8
    assert outcome.value == pytest.approx(best(values), rel=1e-6)
    assert values[outcome.epoch - 1] == pytest.approx(outcome.value, rel=1e-6)
    # Logged too, for TensorBoard's HPARAMS tab (a column to sort a sweep's runs by).
    logged = [row[f"best/{metric}"] for row in read_csv_metrics(Path(cfg.paths.output_dir))
              if f"best/{metric}" in row]  # fmt: skip
    assert logged == [pytest.approx(outcome.value, rel=1e-6)]


# -- the space ----------------------------------------------------------------------------


def test_command_line_replaces_fixes_or_leaves_out_entries_of_the_space():
    space = {
        "optimizer": {"lr": "tag(log, interval(1e-4, 0.1))"},
        "model": {"hidden_sizes": "choice([32], [64,64])", "activation": "choice(relu, tanh)"},
        "data": None,  # left out
    }
    parsed = parse_space(
        space, ["optimizer.lr=interval(0.01, 0.1)", "model.activation=relu", "seed=3"]
    )
    assert sorted(parsed.sweeps) == ["model.hidden_sizes", "optimizer.lr"]
    assert parsed.sweeps["optimizer.lr"].input_line == "optimizer.lr=interval(0.01, 0.1)"
    assert parsed.fixed == ["model.activation=relu", "seed=3"]


def test_distributions_match_the_sweep_syntax():
    def dist(line, current):
        return distribution(parse_space({}, [line]).sweeps[line.split("=")[0]], current)

    assert dist("optimizer.lr=tag(log, interval(1e-4, 0.1))", 0.01) == FloatDistribution(
        1e-4, 0.1, log=True
    )
    assert dist("data.batch_size=interval(16, 128)", 32) == IntDistribution(16, 128)
    assert dist("model.hidden_sizes=choice([32],[64,64])", [64]) == CategoricalDistribution(
        ["[32]", "[64,64]"]
    )


# -- checks before any trial runs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["optimizer.lr=tag(log, interval(-1, 0.1))"], "a log scale needs bounds above 0"),
        (["optimizer.lr=interval(-0.1, 0.1)"], "optimizer.lr=-0.1: must be a number above 0"),
        (["optimizer.lr=interval(0.1, 0.01)"], "lower bound must be below the upper"),
        (["optimizer.lrr=interval(0.01, 0.1)"], "Did you mean optimizer.lr?"),
        (["model.activation=choice()"], "empty choice is not legal"),
        (["model.activation=choice(relu, sigmoidd)"], "model.activation=sigmoidd"),
        (["hparams_search.n_trials=0"], "hparams_search.n_trials=0: must be a whole number"),
        (["data.val_fraction=0"], "there is none; set data.val_fraction=0.1"),
        (["model=linreg"], "hparams_search.space.model.hidden_sizes: model=linreg has no key"),
        (["hparams_search.space.model.hidden_sizes=choice([8],[16])"], "'model.hidden_sizes="),
        (["hparams_search.space=null"], "hparams_search: nothing to search"),
        (["hparams_search.sampler_seed=abc"], "hparams_search.sampler_seed=abc: must be a whole number"),
        (["hparams_search.direction=up"], "hparams_search.direction=up: one of auto"),
        (["hparams_search.metric=val/acx"], "not a validation metric"),
        (["model.activation=tag(log, choice(relu, tanh))"], "a log scale is for an interval"),
    ],
)
def test_a_search_is_checked_value_by_value(arguments, message):
    with pytest.raises(ConfigError) as error:
        check_command_line(["hparams_search=optuna", *arguments], [], multirun=True)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_search_needs_multirun_and_an_interval_needs_a_search():
    with pytest.raises(ConfigError, match="add -m"):
        check_command_line(["hparams_search=optuna"], [], multirun=False)
    with pytest.raises(ConfigError, match="add hparams_search=optuna"):
        check_command_line(["optimizer.lr=interval(0.01, 0.1)"], [], multirun=True)


@pytest.mark.slow
def test_every_preset_space_and_the_default_one_pass_the_checks():
    check_command_line(["hparams_search=optuna"], [], multirun=True)
    for preset in ("mlp_moons", "linreg_1d", "cnn_digits"):
        check_command_line([f"experiment={preset}", "hparams_search=optuna"], [], multirun=True)
    # A preset's space alone does not make a search: the plain run is unchanged.
    check_command_line(["experiment=linreg_1d"], [], multirun=False)


def test_a_missing_extra_is_named(monkeypatch):
    import dlbasics.config.checks as validate

    monkeypatch.setattr(validate, "_has_module", lambda name: False)
    with pytest.raises(ConfigError, match=r"pip install 'dlbasics\[sweep\]'"):
        check_command_line(["hparams_search=optuna"], [], multirun=True)
    with pytest.raises(ConfigError, match=r"hydra-joblib-launcher.*dlbasics\[sweep\]"):
        check_command_line(["hydra/launcher=joblib", "seed=0,1"], [], multirun=True)


# -- searches, end to end ------------------------------------------------------------------


def _study(tmp_path: Path, name: str):
    storage = f"sqlite:///{tmp_path / 'outputs' / 'train' / 'searches' / name}.db"
    return optuna.load_study(study_name=name, storage=storage)


SEARCH = [
    "-m",
    "hparams_search=optuna",
    "hparams_search.n_trials=3",
    "hparams_search.n_startup_trials=2",
    "hparams_search.space.model.hidden_sizes=null",
    *TINY,
]


@pytest.mark.slow
def test_a_search_runs_resumes_and_reports_its_best_trial(tmp_path):
    result = run_cli(*SEARCH, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    study = _study(tmp_path, "train-mlp-moons")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    for trial in trials:  # what the study was told is what each run measured
        outcome = Outcome.read(trial.user_attrs["run_dir"])
        assert (outcome.metric, outcome.value) == ("val/acc", pytest.approx(trial.value))
        saved = (Path(trial.user_attrs["run_dir"]) / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.lr={trial.params['optimizer.lr']!r}" in saved
        # TensorBoard names the run by the trial's own values first, the shared ones after.
        (board,) = (Path(trial.user_attrs["run_dir"]) / "tb").iterdir()
        assert board.name.startswith(f"mlp-moons,optimizer.lr={trial.params['optimizer.lr']!r}")
    best = study.best_trial
    assert f"Best trial of study train-mlp-moons (3 trials): #{best.number}" in result.stdout
    assert best.user_attrs["run_dir"] in result.stdout

    # The same command with more trials continues the study, with new values.
    again = run_cli(*SEARCH, "hparams_search.n_trials=4", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    trials = _study(tmp_path, "train-mlp-moons").trials
    assert len(trials) == 4 and "3 of 4 trials done" in again.stdout + again.stderr
    assert trials[3].params not in [t.params for t in trials[:3]]

    # Another search under the same name would mix incomparable trials: one line, exit 2.
    other = run_cli(*SEARCH, "hparams_search.n_trials=5", "trainer.max_epochs=4", cwd=tmp_path)
    assert other.returncode == 2
    assert other.stderr.strip().startswith("Error: hparams_search.study_name=train-mlp-moons")
    assert len(other.stderr.strip().splitlines()) == 1
    assert len(_study(tmp_path, "train-mlp-moons").trials) == 4


@pytest.mark.slow
def test_a_diverged_trial_fails_and_the_search_goes_on(tmp_path):
    result = run_cli(
        "-m",
        "hparams_search=optuna",
        "hparams_search.n_trials=3",
        "hparams_search.space=null",
        "hparams_search.study_name=diverging",
        "optimizer=sgd",
        "optimizer.lr=choice(1e9, 0.05)",
        *TINY,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    trials = _study(tmp_path, "diverging").trials
    assert len(trials) == 3
    for trial in trials:
        diverged = float(trial.params["optimizer.lr"]) == 1e9
        expected = optuna.trial.TrialState.FAIL if diverged else optuna.trial.TrialState.COMPLETE
        assert trial.state == expected
    assert {float(t.params["optimizer.lr"]) for t in trials} == {1e9, 0.05}
    summary = list(csv.DictReader(open(next((tmp_path / "outputs").glob("**/summary.csv")))))
    assert [row["status"] for row in summary] == sorted(
        (row["status"] for row in summary), key=lambda status: status == "failed"
    )


@pytest.mark.slow
def test_a_seed_sweep_ends_with_a_summary_and_mean_and_spread(tmp_path):
    result = run_cli("-m", "seed=0,1,2", "model.hidden_sizes=[4],[16]", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = next((tmp_path / "outputs").glob("train/multiruns/*"))
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len(rows) == 6
    best = [float(row["best"]) for row in rows]
    assert best == sorted(best, reverse=True)  # val/acc: highest first
    for row in rows:  # each row is that job's own result
        assert float(row["best"]) == pytest.approx(Outcome.read(row["run_dir"]).value)
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
    assert f"Best job of this sweep: {rows[0]['run_dir']}" in result.stdout
    by_setting = list(csv.DictReader(open(sweep / "summary_by_setting.csv")))
    assert len(by_setting) == 2
    for setting in by_setting:
        jobs = [r for r in rows if r["model.hidden_sizes"] == setting["model.hidden_sizes"]]
        values = [float(r["test/acc"]) for r in jobs]
        assert int(setting["seeds"]) == len(jobs) == 3
        assert float(setting["test/acc_mean"]) == pytest.approx(statistics.fmean(values))
        assert float(setting["test/acc_std"]) == pytest.approx(statistics.stdev(values))
    assert "mean ± standard deviation" in result.stdout

    # The same summary again, from the sweep directory alone.
    (sweep / "summary.csv").unlink()
    again = subprocess.run(
        [sys.executable, "-m", "dlbasics.sweeps", str(sweep)], capture_output=True, text=True
    )
    assert again.returncode == 0 and f"Best job of this sweep: {rows[0]['run_dir']}" in again.stdout
    assert list(csv.DictReader(open(sweep / "summary.csv"))) == rows
    missing = subprocess.run(
        [sys.executable, "-m", "dlbasics.sweeps", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("Error: ")


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_processes_sharing_the_cores(tmp_path):
    result = run_cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *TINY, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted((tmp_path / "outputs").glob("train/multiruns/*/[0-9]"))
    assert len(jobs) == 2
    # The cores the jobs may run on (they inherit this process's), not the machine's count.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    shared = f"torch threads: {max(1, cores // 2)} (2 parallel jobs share {cores} cores)"
    for job in jobs:
        assert shared in (job / "train.log").read_text()
        assert (job / "metrics.json").is_file() and list(job.glob("tb/*/events.out.tfevents.*"))
    assert "Sweep summary (2 jobs" in result.stdout


@pytest.mark.parametrize(("n_jobs", "threads"), [(2, 2), (-1, 1)])
def test_parallel_jobs_share_the_cores_this_process_may_use(n_jobs, threads, monkeypatch,
                                                            caplog):  # fmt: skip
    """4 cores allowed (a container, taskset) on a machine of 16: the share is of the 4."""
    import logging
    from types import SimpleNamespace

    import torch
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from dlbasics.training.train import share_cores_with_parallel_jobs

    launcher = OmegaConf.create(
        {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
         "n_jobs": n_jobs}
    )  # fmt: skip
    hydra = SimpleNamespace(launcher=launcher)  # what the function reads of HydraConfig
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hydra))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="dlbasics"):
            share_cores_with_parallel_jobs()
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    jobs = 2 if n_jobs == 2 else 4  # -1: one job per usable core
    assert f"torch threads: {threads} ({jobs} parallel jobs share 4 cores)" in caplog.text


class _FakeLauncher:
    """Hydra's launcher API without training: each job "reaches" a value that depends on
    its learning rate, or the whole batch is interrupted (Ctrl-C)."""

    def __init__(self, interrupt: bool = False) -> None:
        self.interrupt, self.batches = interrupt, []

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.batches.append(job_overrides)
        if self.interrupt:
            raise KeyboardInterrupt
        results = []
        for overrides in job_overrides:
            lr = float(next(o for o in overrides if o.startswith("optimizer.lr=")).split("=")[1])
            result = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
            result.return_value = {"value": 1 - abs(lr - 0.01), "epoch": 3, "run_dir": "x"}
            results.append(result)
        return results


def test_an_interrupted_batch_is_not_counted_and_the_next_command_continues(tmp_path):
    from hydra import compose, initialize_config_dir

    from dlbasics.config.tree import CONFIG_DIR
    from dlbasics.search.hparams import Search

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        config = compose(
            "train",
            overrides=["hparams_search=optuna", "hparams_search.n_trials=3",
                       f"paths.log_dir={tmp_path}"],
            return_hydra_config=True,
        )  # fmt: skip
    arguments = ["hparams_search=optuna", "hparams_search.n_trials=3"]
    interrupted = Search(config, _FakeLauncher(interrupt=True), arguments)
    assert interrupted.settings.study_name == "train-mlp-moons"
    with pytest.raises(KeyboardInterrupt, match="run the same command again to continue"):
        interrupted.run()
    assert interrupted.finished() == 0

    launcher = _FakeLauncher()
    Search(config, launcher, arguments).run()
    study = optuna.load_study(
        study_name="train-mlp-moons",
        storage=f"sqlite:///{tmp_path}/train/searches/train-mlp-moons.db",
    )
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]  # three counted trials
    assert len(launcher.batches) == 3  # one trial at a time with the basic launcher
    asked = [t.params["optimizer.lr"] for t in study.trials]
    assert len(set(asked)) == 4  # a continued search does not ask the same values again


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ([], "train-mlp-moons"),
        (["experiment=mlp_moons"], "mlp_moons"),
        (["data=csv", "data.path=data/penguins.csv", "data.target=species"], "train-mlp-penguins"),
        (["hparams_search.study_name=mine"], "mine"),
    ],
)
def test_a_study_is_named_after_what_it_searches(tmp_path, overrides, name):
    from hydra import compose, initialize_config_dir

    from dlbasics.config.tree import CONFIG_DIR
    from dlbasics.search.hparams import read_settings

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        config = compose(
            "train", overrides=["hparams_search=optuna", *overrides], return_hydra_config=True
        )
    settings = read_settings(config)
    assert settings.study_name == name
    assert settings.storage.endswith(f"/searches/{name}.db")


def _job(folder: Path, number: int, overrides: list[str], outcome, metrics: dict) -> Path:
    """A finished job's directory as train writes it (no training: the summary reads files)."""
    run = folder / str(number)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if outcome is not None:
        Outcome(*outcome).save(run)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_summary_of_a_sweep_over_presets_with_different_objectives(tmp_path):
    from rich.console import Console

    from dlbasics.search.sweeps import summarize

    # -m experiment=mlp_moons,linreg_1d seed=0,1: each preset writes under its own task name.
    sweep = tmp_path / "outputs" / "train" / "multiruns" / "2026-01-01_00-00-00_1"
    moons = tmp_path / "outputs" / "mlp_moons" / "multiruns" / sweep.name
    line = tmp_path / "outputs" / "linreg_1d" / "multiruns" / sweep.name
    sweep.mkdir(parents=True)
    _job(
        moons,
        0,
        ["experiment=mlp_moons", "seed=0"],
        ("val/acc", "maximize", 0.9, 3),
        {"test/acc": 0.8},
    )
    _job(
        moons,
        1,
        ["experiment=mlp_moons", "seed=1"],
        ("val/acc", "maximize", 0.95, 2),
        {"test/acc": 0.9},
    )
    _job(
        line,
        2,
        ["experiment=linreg_1d", "seed=0"],
        ("val/loss", "minimize", 4.0, 9),
        {"test/mse": 5.0},
    )
    _job(line, 3, ["experiment=linreg_1d", "seed=1"], ("val/loss", "minimize", None, None), {})
    console = Console(record=True, width=200)
    jobs = summarize(sweep, console=console)
    shown = console.export_text()
    assert [job.number for job in jobs] == [1, 0, 2, 3]  # by objective, each its own way
    assert "Best job" not in shown  # accuracy and loss have no common "best"
    assert "1 job(s) failed: 3" in shown
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [row["status"] for row in rows] == ["done", "done", "done", "failed"]
    by_setting = {
        r["experiment"]: r for r in csv.DictReader(open(sweep / "summary_by_setting.csv"))
    }
    assert float(by_setting["mlp_moons"]["test/acc_mean"]) == pytest.approx(0.85)
    assert by_setting["mlp_moons"]["test/mse_mean"] == ""  # a metric it never had stays empty
    assert by_setting["linreg_1d"]["seeds"] == "1"  # the failed seed is not averaged in


@pytest.mark.parametrize(
    ("overrides", "metric"),
    [
        (["trainer.check_val_every_n_epoch=2"], "val/acc"),  # epochs 1 and 3 not validated
        (["data.val_fraction=0"], "train/acc"),  # never validated: the training split's
    ],
)
def test_validation_and_training_values_are_never_compared(run_training, overrides, metric):
    cfg, _ = run_training(
        "logger=csv", "trainer.max_epochs=4", "data.n_samples=200", "optimizer.lr=0.05", *overrides
    )
    outcome = Outcome.read(cfg.paths.output_dir)
    rows = read_csv_metrics(Path(cfg.paths.output_dir))
    values = {int(row["step"]): row[metric] for row in rows if metric in row and "step" in row}
    assert outcome.metric == metric
    assert outcome.value == pytest.approx(max(values.values()), rel=1e-6)
    assert values[outcome.epoch] == pytest.approx(outcome.value, rel=1e-6)
