"""Shared test helpers: compose the real config tree with Hydra and run tiny trainings.

Most tests train in this process with :func:`dlbasics.fit` (the ``fit`` fixture); a
subprocess (``run_cli``) is kept where a process is the point: exit codes, signals, the
import-free checks, DDP, launchers, the wheel.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# One torch thread in this process and in the processes it starts: these nets are
# overhead-bound, and on a 2-core machine two busy threads per process only contend.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from dlbasics.config.tree import CONFIG_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_config(tmp_path):
    """Compose ``train.yaml`` with overrides, writing the run into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose(
                "train",
                overrides=[
                    f"paths.output_dir={tmp_path}",
                    "callbacks.progress_bar=null",
                    "callbacks.model_summary=null",
                    "trainer.enable_progress_bar=false",
                    *overrides,
                ],
            )

    return make


@pytest.fixture
def run_training(make_config):
    """Compose a config and train it; returns ``(config, final metrics)``."""
    from dlbasics.training.train import train

    def run(*overrides: str):
        cfg = make_config(*overrides)
        return cfg, train(cfg)

    return run


def read_csv_metrics(run_dir: Path, subfolder: str = "csv") -> list[dict[str, float]]:
    """Rows of the CSV logger's metrics.csv, empty cells dropped."""
    with open(run_dir / subfolder / "metrics.csv") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m dlbasics.train ARGS`` in a subprocess, as a user would."""
    environment = {**os.environ, "COLUMNS": "120", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dlbasics.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


@pytest.fixture
def fit(tmp_path, monkeypatch):
    """``dlbasics.fit`` run from ``tmp_path`` (relative paths are read there, runs land in
    ``tmp_path/outputs``), as ``run_cli(..., cwd=tmp_path)`` runs the command line."""
    import dlbasics

    monkeypatch.chdir(tmp_path)

    def run(*overrides: str, **keywords):
        return dlbasics.fit(*overrides, **keywords)

    return run


@contextlib.contextmanager
def interrupt_once(folder: Path, pattern: str, after: float = 2.0):
    """Within the block, send this process one SIGINT (a notebook's interrupt) ``after``
    seconds once ``folder.glob(pattern)`` finds a file: a sign that training has begun."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if list(folder.glob(pattern)):
                time.sleep(after)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    try:
        yield
    finally:
        stop.set()


def fit_error(fit, *overrides: str, **keywords) -> str:
    """The one-line message of the DlbasicsError that ``fit(*overrides)`` raises."""
    from dlbasics import DlbasicsError

    with pytest.raises(DlbasicsError) as caught:
        fit(*overrides, **keywords)
    return str(caught.value)
