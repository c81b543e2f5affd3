"""Runs that can be told apart: TensorBoard folders named by what was trained, one HPARAMS
table over all runs, grouped per-epoch scalars with train metrics beside val, what a run
leaves in train.log and metrics.json, output that is not a terminal, and the README's
commands run as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import backend_context, plugin_data_pb2
from torchmetrics.functional import r2_score

from conftest import ROOT, read_csv_metrics, run_cli
from dlbasics.config.tree import run_name
from dlbasics.training.module import SupervisedModule


def tensorboard_runs(logdir: Path) -> dict[str, EventAccumulator]:
    """TensorBoard's own view of ``logdir``: run name -> its events."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance={"scalars": 0, "tensors": 0}
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return {run: multiplexer.GetAccumulator(run) for run in multiplexer.Runs()}


def hparams_table(logdir: Path):
    """The HPARAMS tab's experiment (its columns), as TensorBoard's hparams plugin builds it."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(
        base_plugin.TBContext(logdir=str(logdir), data_provider=provider, multiplexer=multiplexer)
    )
    request = context.RequestContext()
    return backend.experiment_from_metadata(
        request,
        "",
        include_metrics=True,
        hparams_run_to_tag_to_content=backend.hparams_metadata(request, ""),
        data_provider_hparams=backend.hparams_from_data_provider(request, "", None),
    )


def session_hparams(events: EventAccumulator) -> dict:
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams


def only_events(run_dir: Path) -> EventAccumulator:
    (folder,) = (run_dir / "tb").iterdir()
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return events


# -- run names -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A 2 x 2 multirun over model and data (regression and classification), in one folder."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_cli(
        "-m", "model=linreg,mlp", "data=linear,moons", "optimizer.lr=0.05",
        "trainer.max_epochs=2", cwd=cwd, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return cwd / "outputs"


@pytest.mark.slow
def test_tensorboard_lists_runs_by_model_data_and_overrides(sweep):
    runs = tensorboard_runs(sweep)
    tails = {run.rsplit("/", 1)[-1] for run in runs}
    assert tails == {
        f"{model}-{data},optimizer.lr=0.05,trainer.max_epochs=2"
        for model in ("linreg", "mlp")
        for data in ("linear", "moons")
    }
    for run in runs:
        # Each job's events stay in that job's own directory: train/multiruns/<time>/<n>/tb/...
        assert re.fullmatch(r"train/multiruns/[^/]+/\d/tb/[^/]+", run), run
        assert "tensorboard" not in run


def test_run_name_says_what_differs_and_stays_one_short_folder():
    choices = {"model": "mlp", "data": "moons", "optimizer": "adam"}
    assert run_name(choices, []) == "mlp-moons"
    assert run_name(choices, ["model=mlp", "optimizer.lr=0.1", "data=moons"]) == (
        "mlp-moons,optimizer.lr=0.1"
    )
    # Where files go and what is shown say nothing about what was trained.
    quiet = ["trainer.enable_progress_bar=false", "callbacks.progress_bar=null", "logger=csv"]
    assert run_name(choices, [*quiet, "paths.root_dir=/tmp"]) == "mlp-moons"
    assert run_name(choices, ["data.path=data/houses.csv"]) == "mlp-moons,data.path=data_houses.csv"
    long = [f"data.n_samples={n}" for n in range(1000, 1040)]
    name = run_name(choices, long)
    assert len(name) <= 100 and "/" not in name
    assert name.startswith("mlp-moons,data.n_samples=1000,") and name.endswith("_more")
    assert run_name({}, ["optimizer.lr=0.1"]) == "run"  # no Hydra record: a plain name


# -- the HPARAMS table -----------------------------------------------------------------------


def test_hparams_table_is_the_union_of_every_runs_columns(sweep):
    table = hparams_table(sweep)
    columns = {info.name for info in table.hparam_infos}
    metrics = {info.name.tag for info in table.metric_infos}
    # The chosen options, and the settings only one kind of model has (linreg, MLP).
    assert {"model", "data", "optimizer", "scheduler", "optimizer/lr"} <= columns
    assert {"model/bias", "model/hidden_sizes", "data/weights", "data/function"} <= columns
    for noise in ("ckpt_path", "optimizer/_partial_", "model/_target_", "trainer/default_root_dir"):
        assert noise not in columns
    assert not any(c.startswith(("paths/", "callbacks/", "logger/")) for c in columns)
    # Regression and classification metrics side by side, train beside val and test.
    assert {"val/r2", "test/mse", "train/r2", "val/acc", "test/f1", "train/acc"} <= metrics
    differs = {info.name for info in table.hparam_infos if info.differs}
    assert {"model", "data"} <= differs


def test_each_run_records_its_own_options(sweep):
    for run, events in tensorboard_runs(sweep).items():
        model, data = run.rsplit("/", 1)[-1].split(",")[0].split("-")
        values = session_hparams(events)
        assert values["model"].string_value == model
        assert values["data"].string_value == data
        assert values["optimizer"].string_value == "adam"
        assert values["optimizer/lr"].number_value == pytest.approx(0.05)
        assert values["trainer/max_epochs"].number_value == 2
        tags = events.Tags()["tensors"]  # the hparams plugin's summaries
        assert "_hparams_/experiment" not in tags  # one run's summary would set every column
        assert "_hparams_/session_end_info" in tags


# -- scalars: grouped, train beside val, the epoch as the step ---------------------------------


def test_scalars_are_grouped_and_stepped_by_epoch(run_training, tmp_path):
    # 800 training rows in batches of 48: 17 optimizer steps per epoch, the last one short.
    run_training("model=mlp", "data=moons", "data.batch_size=48", "trainer.max_epochs=3")
    events = only_events(tmp_path)
    tags = set(events.Tags()["scalars"])
    assert all("/" in tag for tag in tags), tags  # no top-level `lr` or `epoch`
    assert {"train/loss", "train/acc", "train/lr", "val/loss", "val/acc"} <= tags
    # The step is the number of epochs trained: 1 after the first; the test's after all 3.
    for tag in ("train/loss", "train/acc", "train/lr", "val/acc"):
        assert [point.step for point in events.Scalars(tag)] == [1, 2, 3], tag
    assert [point.step for point in events.Scalars("test/acc")] == [3]
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3 * 17  # still optimizer steps


def test_csv_logger_keeps_epoch_and_step(run_training, tmp_path):
    run_training("model=linreg", "data=linear", "trainer.max_epochs=3", "logger=csv")
    rows = [row for row in read_csv_metrics(tmp_path) if "train/loss" in row]
    assert [row["epoch"] for row in rows] == [0, 1, 2]  # Lightning's epoch index
    assert [row["step"] for row in rows] == [1, 2, 3]  # epochs trained, as in TensorBoard
    assert all("train/lr" in row and "train/r2" in row for row in rows)


def frozen_run(run_training, tmp_path, *overrides):
    """Train with an lr so small that the weights do not move: the train metrics logged
    for an epoch are then those of the saved weights on the training split."""
    cfg, metrics = run_training(
        *overrides, "optimizer=sgd", "optimizer.lr=1e-20", "trainer.max_epochs=2", "test=false"
    )
    module = SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    x, y = datamodule.splits["train"]
    with torch.no_grad():
        return metrics, module.eval()(x), y, module


def test_train_accuracy_is_the_share_of_training_rows_classified_right(run_training, tmp_path):
    metrics, prediction, target, _ = frozen_run(
        run_training, tmp_path, "model=mlp", "data=moons", "data.batch_size=48"
    )
    expected = (prediction.argmax(dim=1) == target).float().mean().item()
    assert metrics["train/acc"] == pytest.approx(expected, abs=1e-6)
    assert 0.2 < expected < 0.8  # untrained: a wrong count would show


def test_train_mse_and_r2_are_in_the_targets_own_units(run_training, tmp_path):
    # diabetes learns a standardised target (score ~150 +- 77); metrics are in score units.
    metrics, prediction, target, module = frozen_run(
        run_training, tmp_path, "model=linreg", "data=diabetes", "data.batch_size=50"
    )
    std = torch.tensor(module.hparams.data["target_scaling"]["std"])
    assert std.item() > 10
    squared_error = ((prediction - target) * std) ** 2
    assert metrics["train/mse"] == pytest.approx(squared_error.mean().item(), rel=1e-4)
    assert metrics["train/r2"] == pytest.approx(r2_score(prediction, target).item(), abs=1e-4)


# -- one run from the command line, output piped -------------------------------------------


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory) -> tuple[str, Path]:
    """``python -m dlbasics.train ... 2>&1 | cat`` without $COLUMNS: (output, run dir)."""
    cwd = tmp_path_factory.mktemp("piped")
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-m", "dlbasics.train", *LINE.split(), "trainer.max_epochs=30"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    (run_dir,) = (cwd / "outputs" / "train" / "runs").iterdir()
    return result.stdout, run_dir


LINE = "model=linreg data=linear optimizer=sgd data.n_samples=200"


def printed_metrics(output: str) -> dict[str, str]:
    """The closing table's rows: ``│ val/loss │ 1.234 │`` -> {"val/loss": "1.234"}."""
    rows = re.findall(r"│ ((?:train|val|test)/\w+) +│ +(\S+) │", output)
    return dict(rows)


@pytest.mark.slow
def test_metrics_json_holds_the_printed_final_metrics(piped_run):
    output, run_dir = piped_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    printed = printed_metrics(output)
    assert printed and set(saved) == set(printed)
    assert {name: f"{value:.6g}" for name, value in saved.items()} == printed
    assert saved["val/r2"] > 0.8 and "train/r2" in saved


@pytest.mark.slow
def test_train_log_has_the_overrides_the_final_metrics_and_lightnings_lines(piped_run):
    output, run_dir = piped_run
    log = (run_dir / "train.log").read_text()
    assert f"Overrides: {LINE} trainer.max_epochs=30\n" in log
    saved = json.loads((run_dir / "metrics.json").read_text())
    (line,) = [line for line in log.splitlines() if "Final metrics: " in line]
    assert json.loads(line.split("Final metrics: ", 1)[1]) == saved
    assert "`Trainer.fit` stopped" in log
    # The console shows them as the config tree and the closing table, not twice.
    assert "Overrides:" not in output and "Final metrics: {" not in output


@pytest.mark.slow
def test_lightnings_notes_are_kept_in_the_log_file_off_the_console(piped_run):
    output, run_dir = piped_run
    log = (run_dir / "train.log").read_text()
    # Lightning's rank_zero_info: the devices, a tip about its cloud logger, why fit stopped.
    for note in ("GPU available", "TPU available", "💡 Tip", "`Trainer.fit` stopped"):
        assert note not in output, output[-3000:]
    assert "GPU available: " in log and "`Trainer.fit` stopped: `max_epochs=30` reached" in log


@pytest.mark.slow
def test_output_that_is_not_a_terminal_has_whole_lines(piped_run):
    output, run_dir = piped_run
    assert "…" not in output
    # The config tree's longest lines (run paths) and the progress bar's last state, whole.
    assert f"dirpath: {run_dir / 'checkpoints'}\n" in output
    (bar,) = [line for line in output.splitlines() if line.startswith("Epochs")]
    assert " 30/30 " in bar and "train/loss" in bar and re.search(r"val/r2 \S+$", bar)


@pytest.mark.slow
def test_model_summary_counts_flops(piped_run):
    output, _ = piped_run
    # linreg on 2 features: one multiply-add per weight for one sample.
    assert re.search(r"Total FLOPs: 4\b", output), output[-2000:]


# -- resume keeps its TensorBoard run ----------------------------------------------------------


def test_resume_writes_to_the_same_tensorboard_folder_and_log(fit, tmp_path):
    args = ("model=linreg", "data=linear", "optimizer=sgd", "trainer.max_epochs=2")
    fit(*args)
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert fit(f"resume={run_dir}", "trainer.max_epochs=4").dir == run_dir
    assert [p.name for p in (run_dir / "tb").iterdir()] == [
        "linreg-linear,optimizer=sgd,trainer.max_epochs=2"
    ]
    events = only_events(run_dir)
    assert [point.step for point in events.Scalars("train/loss")] == [1, 2, 3, 4]
    log = (run_dir / "train.log").read_text()
    assert f"Resuming {run_dir} from" in log and log.count("Final metrics: ") == 2
    assert session_hparams(events)["model"].string_value == "linreg"  # read from .hydra


# -- the README's commands -----------------------------------------------------------------------


def readme_commands() -> list[str]:
    """Every ``python -m dlbasics.train ...`` line of the README, comments dropped."""
    lines = (ROOT / "README.md").read_text().splitlines()
    return [
        line.split("#")[0].strip() if " #" in line else line.strip()
        for line in lines
        if line.strip().startswith("python -m dlbasics.train")
    ]


SHORT_SEARCH = ["hparams_search.n_trials=2", "trainer.max_epochs=3", "data.n_samples=300"]
# A small CNN for the tiny image files the tests write (test_images.py).
TINY_CNN = ["model.channels=[8]", "model.hidden=16", "optimizer.lr=0.01", "data.batch_size=16",
            "trainer.max_epochs=4", "figures=none"]  # fmt: skip
# command -> (extra overrides that keep it short, metric in metrics.json, lowest value).
# A metric is checked where the command runs as written; None: it only has to succeed.
README_RUNS = {
    "python -m dlbasics.train": ([], "test/acc", 0.9),
    "python -m dlbasics.train model=linreg data=linear optimizer=sgd trainer.max_epochs=100": (
        [],
        "val/r2",
        0.85,
    ),
    "python -m dlbasics.train model=mlp data=digits": ([], "test/acc", 0.9),
    "python -m dlbasics.train model=linreg data=iris optimizer.lr=0.05": ([], "test/acc", 0.85),
    "python -m dlbasics.train model=cnn data=digits": (["trainer.max_epochs=3"], None, None),
    "python -m dlbasics.train experiment=cnn_digits": (["trainer.max_epochs=3"], None, None),
    (
        "python -m dlbasics.train model=mlp model.hidden_sizes=[64,64] model.activation=relu "
        "data=moons data.n_samples=10000 data.noise=0.2 data.val_fraction=0.2 "
        "data.test_fraction=0 data.batch_size=64 optimizer=adam optimizer.lr=0.001 "
        "trainer.max_epochs=20"
    ): ([], "val/acc", 0.95),
    "python -m dlbasics.train -m model=linreg,mlp optimizer=sgd,adam optimizer.lr=0.01,0.1": (
        [],
        "val/acc",
        0.8,
    ),
    "python -m dlbasics.train --help": ([], None, None),
    "python -m dlbasics.train --cfg job experiment=linreg_2d": ([], None, None),
    (
        "python -m dlbasics.train data=csv data.path=houses.csv data.target=price model=linreg "
        "data.standardize_target=true optimizer.lr=0.05"
    ): ([], "val/r2", 0.9),
    "python -m dlbasics.train --config-dir my_conf experiment=my_exp": ([], "test/r2", 0.9),
    "python -m dlbasics.train -m hydra/launcher=submitit_local seed=0,1": (
        ["trainer.max_epochs=5"],
        "val/acc",
        0.8,
    ),
    "python -m dlbasics.train trainer=ddp trainer.accelerator=cpu trainer.devices=2": (
        ["trainer.max_epochs=5"],
        "test/acc",
        0.8,
    ),
    # Searches and parallel sweeps: two short trials each (test_search.py checks the values).
    "python -m dlbasics.train -m hparams_search=optuna": (SHORT_SEARCH, None, None),
    (
        "python -m dlbasics.train -m experiment=mlp_moons hparams_search=optuna "
        "hparams_search.n_trials=40"
    ): ([*SHORT_SEARCH, "data.n_samples=1000"], None, None),
    (
        "python -m dlbasics.train -m hparams_search=optuna "
        "'optimizer.lr=tag(log, interval(1e-3, 1))' model.activation=relu"
    ): (SHORT_SEARCH, None, None),
    "python -m dlbasics.train -m hparams_search=optuna hydra/launcher=joblib": (
        SHORT_SEARCH,
        None,
        None,
    ),
    "python -m dlbasics.train -m seed=0,1,2,3,4 model.hidden_sizes=[16],[64]": (
        ["trainer.max_epochs=20", "data.n_samples=300"],
        "test/acc",
        0.75,
    ),
    # Images: tiny files in MNIST's and Fashion-MNIST's formats, and a folder of photos.
    "python -m dlbasics.train model=cnn data=mnist": (TINY_CNN, "test/acc", 0.8),
    "python -m dlbasics.train model=cnn data=fashion_mnist": (TINY_CNN, "test/acc", 0.8),
    "python -m dlbasics.train experiment=cnn_mnist": (
        ["data.batch_size=16", "trainer.max_epochs=3", "figures=none"], "test/acc", 0.8
    ),
    "python -m dlbasics.train model=cnn data=images data.path=photos data.image_size=[32,32]": (
        [*TINY_CNN, "trainer.max_epochs=6"],
        "val/acc",
        0.6,
    ),
    # Seeds (and learning rates) as one stacked run: every member wrote its metrics.
    "python -m dlbasics.train experiment=mlp_moons 'seeds=[0,1,2,3,4]'": (
        ["trainer.max_epochs=3", "data.n_samples=1000"],
        "test/acc",
        0.8,
    ),
    (
        "python -m dlbasics.train experiment=mlp_moons 'seeds=[0,1,2]' "
        "'members.lr=[0.0003,0.003,0.03]'"
    ): (["trainer.max_epochs=3", "data.n_samples=1000"], "test/acc", 0.75),
    "python -m dlbasics.train 'hydra.searchpath=[file://my_conf]' model=wide data=parabola": (
        ["trainer.max_epochs=30", "optimizer.lr=0.01"],
        "test/r2",
        0.9,
    ),
}
# Run elsewhere: a GPU (below), and resuming runs that the README only names.
NOT_RUN_HERE = (
    "python -m dlbasics.train model=linreg trainer.accelerator=gpu",
    "python -m dlbasics.train trainer=ddp trainer.accelerator=gpu",
    "python -m dlbasics.train -m hydra/launcher=slurm",  # a SLURM cluster
    "python -m dlbasics.train resume=",
    "python -m dlbasics.train ckpt_path=path/to/last.ckpt",
)


def test_every_readme_command_is_run_by_a_test():
    for command in readme_commands():
        assert command in README_RUNS or command.startswith(NOT_RUN_HERE), (
            f"add {command!r} to README_RUNS"
        )


def write_houses(folder: Path) -> None:
    """A ``houses.csv`` as the README's data=csv command reads it: price from area and rooms."""
    generator = torch.Generator().manual_seed(0)
    area = 50 + 150 * torch.rand(300, generator=generator)
    rooms = torch.randint(1, 6, (300,), generator=generator)
    price = 2000 * area + 15000 * rooms + 10000 * torch.randn(300, generator=generator)
    rows = [f"{a:.1f},{r},{p:.0f}" for a, r, p in zip(area, rooms, price, strict=True)]
    (folder / "houses.csv").write_text("area,rooms,price\n" + "\n".join(rows) + "\n")


def saved_metrics(outputs: Path) -> list[dict[str, float]]:
    return [json.loads(f.read_text()) for f in sorted(outputs.glob("**/metrics.json"))]


def one_run_of_overrides(command: str) -> bool:
    """A README command that is one run in one process, all overrides (no flag, no sweep,
    no DDP): dlbasics.fit runs it in this process. The first (the bare command) stays a
    command line, as the README's other commands (flags, sweeps, DDP) do, and so does the
    one of the user's own configs: its ``my_code`` module, once imported, would stay in this
    process's sys.modules for every later test's own my_code.py."""
    words = shlex.split(command)[3:]
    return bool(words) and not any(
        w.startswith(("-", "hydra.searchpath=")) or w == "trainer=ddp" for w in words
    )


FIT_README_RUNS = [command for command in README_RUNS if one_run_of_overrides(command)]
CLI_README_RUNS = [command for command in README_RUNS if not one_run_of_overrides(command)]


def check_readme_result(tmp_path: Path, command: str) -> None:
    _, metric, lowest = README_RUNS[command]
    if metric is not None:
        runs = saved_metrics(tmp_path / "outputs")
        assert runs, "no run wrote metrics.json"
        for metrics in runs:  # every job of a sweep
            assert metrics[metric] >= lowest, metrics


def write_readme_files(tmp_path: Path, command: str) -> None:
    from test_cli import write_user_configs
    from test_images import write_folder, write_mnist

    if command not in readme_commands():
        pytest.fail(f"{command!r} is no longer in the README: drop it from README_RUNS")
    write_houses(tmp_path)
    write_user_configs(tmp_path)
    if "data=fashion_mnist" in command:
        write_mnist(tmp_path / "data", "FashionMNIST")
    elif "mnist" in command:  # data=mnist, experiment=cnn_mnist
        write_mnist(tmp_path / "data", "MNIST")
    if "data=images" in command:
        write_folder(tmp_path / "photos")


@pytest.mark.slow
@pytest.mark.parametrize("command", CLI_README_RUNS)
def test_readme_command_runs_to_a_sensible_result(tmp_path, command):
    write_readme_files(tmp_path, command)
    extra = README_RUNS[command][0]
    result = run_cli(*shlex.split(command)[3:], *extra, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    check_readme_result(tmp_path, command)


@pytest.mark.slow
@pytest.mark.parametrize("command", FIT_README_RUNS)
def test_readme_run_gives_a_sensible_result_with_fit(fit, tmp_path, command):
    write_readme_files(tmp_path, command)
    extra = README_RUNS[command][0]
    fit(*shlex.split(command)[3:], *extra)
    check_readme_result(tmp_path, command)


GPU_COMMANDS = [c for c in readme_commands() if "trainer.accelerator=gpu" in c]


@pytest.mark.parametrize("command", GPU_COMMANDS)
def test_readme_gpu_command_runs_or_says_why_not(tmp_path, command):
    assert len(GPU_COMMANDS) == 2  # one GPU, and DDP over several
    result = run_cli(*shlex.split(command)[3:], "trainer.max_epochs=2", cwd=tmp_path)
    devices = next((int(w.split("=")[1]) for w in command.split() if "devices=" in w), 1)
    if torch.cuda.device_count() >= devices:
        assert result.returncode == 0, result.stderr[-2000:]
    else:  # one line naming the key, before a run directory exists
        key = "trainer.accelerator=gpu" if not torch.cuda.is_available() else "trainer.devices"
        assert result.returncode == 2 and key in result.stderr
        assert not (tmp_path / "outputs").exists()
