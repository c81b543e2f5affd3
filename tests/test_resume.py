"""Interrupted runs lose nothing: SIGTERM/Ctrl-C checkpoints, exact resume, own directories."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import read_csv_metrics, run_cli
from dlbasics.errors import ConfigError, DataError, RunInterrupted
from dlbasics.training.callbacks import _atomic_save

pytestmark = pytest.mark.slow


def only_run_dir(root: Path) -> Path:
    (run_dir,) = (root / "outputs" / "train" / "runs").iterdir()
    return run_dir


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=False)["state_dict"]


# An MLP with dropout: exact resume needs the batch order *and* the random state.
RUN = ["model=mlp", "model.dropout=0.2", "data=moons", "data.batch_size=16", "logger=csv"]


def test_stopped_after_k_epochs_and_resumed_equals_uninterrupted(fit, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir(), split.mkdir()
    fit(*RUN, "trainer.max_epochs=6", root_dir=whole)
    fit(*RUN, "trainer.max_epochs=3", root_dir=split)
    run_dir = only_run_dir(split)
    assert fit(f"resume={run_dir}", "trainer.max_epochs=6").dir == run_dir
    expected = weights(only_run_dir(whole) / "checkpoints" / "last.ckpt")
    got = weights(run_dir / "checkpoints" / "last.ckpt")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=0)
    # The same run directory continued; the first part's metrics are kept beside the new ones.
    first = read_csv_metrics(run_dir)
    second = read_csv_metrics(run_dir / "csv" / "resumed-1", subfolder="")
    assert [row["epoch"] for row in first if "train/loss" in row] == [0, 1, 2]
    assert [row["epoch"] for row in second if "train/loss" in row] == [3, 4, 5]


def test_resuming_a_finished_run_says_so(fit, tmp_path, capsys):
    fit("model=linreg", "data=linear", "trainer.max_epochs=2")
    run_dir = only_run_dir(tmp_path)
    before = (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    capsys.readouterr()
    assert fit(f"resume={run_dir}").dir == run_dir
    assert "already finished its 2 epochs" in capsys.readouterr().out
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    # The command line's exit code 2 for a mistake in resume=, in a process of its own; the
    # other refused resumes below are the same error raised by dlbasics.fit.
    result = run_cli(f"resume={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert "not a run directory" in result.stderr


def start_training(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dlbasics.train", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_training(cwd: Path, timeout: float = 120) -> Path:
    """The run directory, once its TensorBoard events exist (the fit loop is starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = list(cwd.glob("outputs/train/runs/*/tb/*/events.*"))
        if events:
            time.sleep(2.0)  # a few epochs in
            return events[0].parents[2]
        time.sleep(0.2)
    raise AssertionError("training did not start")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_an_epoch_end_with_a_checkpoint_and_resume_command(fit, tmp_path, signum):
    process = start_training(tmp_path, "model=mlp", "data=moons", "trainer.max_epochs=100000")
    run_dir = wait_for_training(tmp_path)
    sent = time.monotonic()
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10  # stops within a few seconds
    assert process.returncode == 128 + signum.value, output[-3000:]
    assert "Traceback" not in output
    assert f"python -m dlbasics.train resume={run_dir}" in output
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    epochs_done = checkpoint["epoch"]
    assert epochs_done >= 1 and not checkpoint["dlbasics_finished"]
    # The TensorBoard events were flushed: one train loss per finished epoch.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tensorboard_run,) = (run_dir / "tb").iterdir()
    events = EventAccumulator(str(tensorboard_run), size_guidance={"scalars": 0})
    events.Reload()
    assert len(events.Scalars("train/loss")) == epochs_done
    # Resume in place for two more epochs; TensorBoard continues the same run.
    fit(f"resume={run_dir}", f"trainer.max_epochs={epochs_done + 2}")
    events.Reload()
    steps = [point.step for point in events.Scalars("train/loss")]
    assert steps == list(range(1, epochs_done + 3))  # epochs trained, in the same folder
    assert [path.name for path in (run_dir / "tb").iterdir()] == [tensorboard_run.name]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_stops_at_once_with_a_checkpoint(tmp_path, signum):
    # Epochs of many one-row steps (about 20 s here): the second signal comes mid-epoch.
    long_epochs = (
        "data.n_samples=200000",
        "data.batch_size=1",
        "callbacks.graceful_stop.grace_seconds=600",
    )
    process = start_training(
        tmp_path, "model=mlp", "data=moons", *long_epochs, "trainer.max_epochs=100000"
    )
    run_dir = wait_for_training(tmp_path)
    sent = time.monotonic()
    process.send_signal(signum)
    time.sleep(0.5)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert time.monotonic() - sent < 20, output[-3000:]  # not at the epoch's end
    assert process.returncode == 128 + signum.value, output[-3000:]
    assert "Traceback" not in output
    assert f"Stopped at once by {signum.name} after 0 whole epochs" in output, output[-3000:]
    assert f"python -m dlbasics.train resume={run_dir}" in output
    assert not torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)[
        "dlbasics_finished"
    ]


# -- GracefulStop on Lightning's own signal handling, in this process -----------------------


class Regression(pl.LightningModule):
    """Plain Lightning: 8 batches an epoch, one hook per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return (self.net(x) - 2 * x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class SignalAt(pl.Callback):
    """Sends this process a signal at the end of chosen batches; notes every batch run."""

    def __init__(self, at: dict[tuple[int, int], signal.Signals]) -> None:
        self.at = at  # (epoch, batch) -> signal
        self.batches: list[tuple[int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches.append((trainer.current_epoch, batch_idx))
        if (trainer.current_epoch, batch_idx) in self.at:
            os.kill(os.getpid(), self.at[trainer.current_epoch, batch_idx])


@pytest.fixture
def handlers_before():
    """A SIGTERM handler of the test's own (a SIGTERM nothing handles would end pytest);
    it notes the signals that reach it. Yields the SIGINT and SIGTERM handlers before fit."""
    reached: list[int] = []

    def note(signum, frame) -> None:
        reached.append(signum)

    previous = signal.signal(signal.SIGTERM, note)
    yield {"reached": reached, signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: note}
    signal.signal(signal.SIGTERM, previous)


def fit_stopped(*callbacks: pl.Callback) -> tuple[pl.Trainer, BaseException | None]:
    from torch.utils.data import DataLoader, TensorDataset

    from dlbasics.training.builders import quiet_lightning

    quiet_lightning()
    trainer = pl.Trainer(
        max_epochs=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    rows = DataLoader(TensorDataset(torch.linspace(-1, 1, 16)[:, None]), batch_size=2)
    try:
        trainer.fit(Regression(), rows)
    except SystemExit as stopped:  # how Lightning ends a fit that a signal stopped at once
        return trainer, stopped
    return trainer, None


def test_a_first_sigterm_stops_at_the_epochs_end_before_lightning_cuts_it(handlers_before):
    from dlbasics.training.callbacks import GracefulStop

    stop, signals = GracefulStop(grace_seconds=600), SignalAt({(1, 2): signal.SIGTERM})
    trainer, stopped = fit_stopped(stop, signals)
    assert stopped is None and trainer.current_epoch == 2  # epochs 0 and 1, whole
    assert signals.batches[-1] == (1, 7)
    assert stop.stopped and stop.received == signal.SIGTERM and stop.again is None
    # Lightning's handler, which would have stopped after batch 2, was not told yet.
    assert not trainer.received_sigterm and handlers_before["reached"] == []
    for signum in (signal.SIGINT, signal.SIGTERM):
        assert signal.getsignal(signum) is handlers_before[signum]


def test_a_second_sigterm_goes_to_lightnings_handler(handlers_before):
    from dlbasics.training.callbacks import GracefulStop

    stop = GracefulStop(grace_seconds=600)
    signals = SignalAt({(1, 2): signal.SIGTERM, (1, 4): signal.SIGTERM})
    trainer, stopped = fit_stopped(stop, signals)
    # Lightning's SIGTERM handling, kept: the flag, its stop after the current batch, and
    # the handler that was there before it (the test's) called in turn.
    assert trainer.received_sigterm and trainer.interrupted
    assert isinstance(stopped, SystemExit) and signals.batches[-1] == (1, 4)
    assert stop.again == signal.SIGTERM and handlers_before["reached"] == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is handlers_before[signal.SIGTERM]


def test_a_second_sigint_is_a_keyboard_interrupt_that_lightning_shuts_down_from(handlers_before):
    from dlbasics.training.callbacks import GracefulStop

    stop = GracefulStop(grace_seconds=600)
    signals = SignalAt({(1, 2): signal.SIGINT, (1, 4): signal.SIGINT})
    trainer, stopped = fit_stopped(stop, signals)
    assert isinstance(stopped, SystemExit) and isinstance(stopped.__context__, KeyboardInterrupt)
    assert trainer.interrupted and not trainer.received_sigterm
    assert signals.batches[-1] == (1, 4) and stop.again == signal.SIGINT
    # Lightning ignores SIGINT while it shuts down; what was there before is back after.
    assert signal.getsignal(signal.SIGINT) is handlers_before[signal.SIGINT]


def test_a_long_epoch_is_cut_short_after_the_grace(handlers_before):
    from dlbasics.training.callbacks import GracefulStop

    class Slow(pl.Callback):
        def on_train_batch_end(self, *args) -> None:
            time.sleep(0.05)

    stop, signals = GracefulStop(grace_seconds=0.1), SignalAt({(1, 1): signal.SIGINT})
    trainer, stopped = fit_stopped(stop, Slow(), signals)
    assert stopped is None and stop.stopped and stop.received == signal.SIGINT
    assert (1, 7) not in signals.batches and (2, 0) not in signals.batches


def test_ckpt_path_starts_a_new_run_from_a_given_checkpoint(fit, tmp_path):
    fit("model=linreg", "data=linear", "trainer.max_epochs=2")
    first = only_run_dir(tmp_path)
    fit(
        "model=linreg",
        "data=linear",
        "trainer.max_epochs=4",
        f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
    )
    runs = sorted((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 2
    second = next(r for r in runs if r != first)
    assert torch.load(second / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 4


def test_runs_started_together_get_their_own_directories(tmp_path):
    processes = [
        start_training(tmp_path, "model=linreg", "data=linear", "trainer.max_epochs=1")
        for _ in range(2)
    ]
    for process in processes:
        process.communicate(timeout=120)
        assert process.returncode == 0
    assert len(list((tmp_path / "outputs" / "train" / "runs").iterdir())) == 2


def test_multirun_jobs_get_their_own_directories(tmp_path):
    result = run_cli(
        "-m", "model=linreg", "data=linear", "trainer.max_epochs=1", "seed=1,2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-3000:]
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    assert {job.name for job in sweep.iterdir() if job.is_dir()} >= {"0", "1"}
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
    good = tmp_path / "last.ckpt"
    good.write_bytes(b"the last good checkpoint")

    class CrashingTrainer:
        def save_checkpoint(self, path, weights_only=False):
            Path(path).write_bytes(b"half a chec")  # the process dies mid-write
            raise OSError("disk full")

    with pytest.raises(OSError):
        _atomic_save(CrashingTrainer(), good)
    assert good.read_bytes() == b"the last good checkpoint"


def refused(fit, *overrides: str) -> str:
    """The one-line message of a mistake that ``fit(*overrides)`` raises: a ConfigError or
    DataError, the errors the command line exits with 2 for."""
    with pytest.raises((ConfigError, DataError)) as caught:
        fit(*overrides)
    line = str(caught.value)
    assert "\n" not in line, line
    return line


def suggested(line: str) -> list[str]:
    """The arguments of the ``python -m dlbasics.train ...`` command an error line ends with."""
    assert "python -m dlbasics.train " in line, line
    return shlex.split(line.split("python -m dlbasics.train ", 1)[1])


def test_the_commands_resume_and_ckpt_path_suggest_work_as_printed(fit, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    kind = np.arange(60) % 2
    table = {"a": kind + rng.normal(0, 0.3, 60), "b": rng.normal(0, 1, 60)}
    pd.DataFrame({**table, "kind": np.array(["x", "y"])[kind]}).to_csv(tmp_path / "rows.csv")
    own = ["data=csv", "data.path=rows.csv", "data.target=kind", "data.drop=[Unnamed: 0]"]
    own += ["trainer.max_epochs=2", "logger=none", "figures=none"]
    fit(*own)
    run_dir = only_run_dir(tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])  # truncated: best.ckpt is intact
    elsewhere = tmp_path / "elsewhere"  # the run's relative data.path must still be found
    elsewhere.mkdir()
    cases = [  # (a command that fails, where, what the command it suggests must train)
        ([f"resume={run_dir}", "trainer.max_epochs=3"], elsewhere, "MLP", 3),
        ([f"resume={run_dir}", "model=linreg"], elsewhere, "LinearRegression", 2),
        ([*own, f"ckpt_path={last}", "trainer.max_epochs=3"], tmp_path, "MLP", 3),
    ]
    for failing, cwd, net, epochs in cases:
        monkeypatch.chdir(cwd)  # where the failing command and the one it suggests are run
        before = set((cwd / "outputs" / "train" / "runs").glob("*"))
        fit(*suggested(refused(fit, *failing)))
        (new,) = set((cwd / "outputs" / "train" / "runs").glob("*")) - before
        state = torch.load(new / "checkpoints" / "last.ckpt", weights_only=False)
        assert state["hyper_parameters"]["net"]["_target_"] == f"dlbasics.nets.{net}"
        assert state["epoch"] == epochs and state["dlbasics_finished"]


def test_resuming_longer_cannot_stretch_a_schedule_spread_over_the_epochs(fit, tmp_path):
    # scheduler=cosine: T_max is trainer.max_epochs; the checkpoint restores the old T_max.
    fit("scheduler=cosine", "trainer.max_epochs=2", "logger=none", "figures=none")
    run = only_run_dir(tmp_path)
    line = refused(fit, f"resume={run}", "trainer.max_epochs=4")
    assert "would change scheduler.T_max (2 -> 4)" in line
    assert "scheduler=cosine" in line and "ckpt_path" not in line


def test_an_interrupt_after_training_keeps_the_run_and_says_so(fit, tmp_path):
    # Ctrl-C while the best checkpoint is tested (or the figures drawn): the training is
    # done, so its checkpoints stay and the message says how to get the metrics.
    (tmp_path / "interrupt_at_test.py").write_text(
        "import lightning.pytorch as pl\n\n\n"
        "class InterruptAtTest(pl.Callback):\n"
        "    def on_test_start(self, trainer, pl_module):\n"
        "        raise KeyboardInterrupt\n"
    )
    on_sigint = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted) as caught:
        fit("data.n_samples=200", "trainer.max_epochs=2", "figures=none",
            "+callbacks.interrupt._target_=interrupt_at_test.InterruptAtTest")  # fmt: skip
    message = str(caught.value)
    assert message.startswith("SIGINT after training (2 epochs), before the test")
    assert caught.value.exit_code == 130
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert f"python -m dlbasics.evaluate run={run_dir}" in message
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    # Lightning ignores SIGINT after catching a KeyboardInterrupt; fit puts it back.
    assert signal.getsignal(signal.SIGINT) is on_sigint


def test_a_sigterm_during_the_test_keeps_the_run_and_exits_143(fit, tmp_path):
    # A real SIGTERM to this process during the test: Lightning's handler notes it and its
    # test loop raises SIGTERMException (a SystemExit) after the batch. Not exit 0 as if
    # all went well. (10,000 test rows: three batches of 4096, so the loop gets to check.)
    (tmp_path / "sigterm_at_test.py").write_text(
        "import os, signal\n"
        "import lightning.pytorch as pl\n\n\n"
        "class SigtermAtTest(pl.Callback):\n"
        "    def on_test_batch_end(self, trainer, pl_module, *args):\n"
        "        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):\n"
        "            raise RuntimeError('no SIGTERM handler: the signal would end pytest')\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    with pytest.raises(RunInterrupted) as caught:
        fit("data.n_samples=20000", "data.test_fraction=0.5", "trainer.max_epochs=2",
            "figures=none", "+callbacks.term._target_=sigterm_at_test.SigtermAtTest")  # fmt: skip
    assert str(caught.value).startswith("SIGTERM after training (2 epochs)")
    assert caught.value.exit_code == 143
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


def test_an_interrupt_after_training_without_checkpoints_keeps_the_run(fit, tmp_path):
    # No checkpoint callback: the trained run's files are kept all the same (its log,
    # history and TensorBoard), and the message offers no evaluate command.
    (tmp_path / "interrupt_at_test.py").write_text(
        "import lightning.pytorch as pl\n\n\n"
        "class InterruptAtTest(pl.Callback):\n"
        "    def on_test_start(self, trainer, pl_module):\n"
        "        raise KeyboardInterrupt\n"
    )
    with pytest.raises(RunInterrupted) as caught:
        fit("data.n_samples=200", "trainer.max_epochs=2", "figures=none",
            "callbacks.checkpoint=null",
            "+callbacks.interrupt._target_=interrupt_at_test.InterruptAtTest")  # fmt: skip
    assert "No checkpoint was written." in str(caught.value)
    assert "dlbasics.evaluate" not in str(caught.value)
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert len((run_dir / "history.csv").read_text().splitlines()) == 1 + 2
