"""The command line as a user meets it: --help, a real run, its directory, an installed wheel."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, run_cli


def test_help_lists_groups_and_options_without_loading_torch(tmp_path):
    probe = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('heavy modules loaded:', "
        "sorted(m for m in ('torch', 'lightning') if m in sys.modules)))\n"
        "sys.argv = ['dlbasics.train', '--help']\n"
        "runpy.run_module('dlbasics.train', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "heavy modules loaded: []" in out
    for group, option in [
        ("model", "cnn"),
        ("data", "digits"),
        ("optimizer", "rmsprop"),
        ("scheduler", "cosine"),
        ("trainer", "gpu"),
        ("logger", "csv"),
        ("experiment", "mlp_moons"),
    ]:
        line = next(line for line in out.splitlines() if line.startswith(f"{group}:"))
        assert option in line, line


@pytest.mark.slow
def test_a_run_leaves_its_own_directory_with_everything(tmp_path):
    # A real command-line run, in a process of its own: its console output is the point.
    result = run_cli("experiment=linreg_tiny", "trainer.max_epochs=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "linreg_tiny" / "runs").iterdir()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "linreg_tiny" in (run_dir / ".hydra" / "config.yaml").read_text()
    # The process ends as soon as the run is over (no interpreter finalization), with every
    # file complete: the log to its last line, every epoch in the history and TensorBoard.
    assert "Run summary: best epoch" in (run_dir / "train.log").read_text().splitlines()[-1]
    assert len((run_dir / "history.csv").read_text().splitlines()) == 1 + 20
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events_dir,) = (run_dir / "tb").iterdir()
    events = EventAccumulator(str(events_dir), size_guidance={"scalars": 0})
    events.Reload()
    assert [point.step for point in events.Scalars("train/loss")] == list(range(1, 21))
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    # The console shows the config tree, a closing table and where the run went; no warnings.
    assert "Final metrics" in result.stdout and f"Run directory: {run_dir}" in result.stdout
    combined = result.stdout + result.stderr
    assert "warn" not in combined.lower(), combined


def test_a_second_run_does_not_touch_the_first(fit, tmp_path):
    def files(directory):  # every file of a run directory: its bytes and when last written
        return {
            str(path.relative_to(directory)): (hashlib.sha256(path.read_bytes()).hexdigest(),
                                               path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()
        }  # fmt: skip

    first = fit("experiment=linreg_tiny", "trainer.max_epochs=2").dir
    before = files(first)
    assert {".hydra/config.yaml", "metrics.json", "checkpoints/last.ckpt"} <= before.keys()
    # Same process, usually the same second: the first run's <date>_<time>_<pid> stamp.
    second = fit("experiment=linreg_tiny", "trainer.max_epochs=3").dir
    assert second != first
    runs = sorted((tmp_path / "outputs" / "linreg_tiny" / "runs").iterdir())
    assert runs == sorted([first, second])
    assert files(first) == before  # no file of the first run added, rewritten or removed


@pytest.mark.slow
def test_installed_wheel_runs_from_another_directory(tmp_path):
    dist, target, work = tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("dlbasics-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "dlbasics/conf/train.yaml" in names
    assert "dlbasics/conf/experiment/cnn_digits.yaml" in names
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    where = subprocess.run(
        [sys.executable, "-c", "import dlbasics; print(dlbasics.__file__)"],
        env={**os.environ, **env},
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target))  # the wheel, not the checkout
    result = run_cli("experiment=linreg_tiny", "trainer.max_epochs=5", cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((work / "outputs" / "linreg_tiny" / "runs").glob("*/checkpoints/last.ckpt"))

    # The README's "Extending it": the user's own net, dataset and experiment in their folder.
    write_user_configs(work)
    result = run_cli("--config-dir", "my_conf", "experiment=my_exp", cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (work / "outputs" / "my_exp" / "runs").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert '"input_shape": [\n    1\n  ]' in (run / "data.json").read_text()
    assert json.loads((run / "metrics.json").read_text())["test/r2"] > 0.9  # it learned x²
    assert (run / "figures" / "fitted_line.png").is_file()
    result = run_cli("hydra.searchpath=[file://my_conf]", "model=wide", "data=parabola",
                     "trainer.max_epochs=2", cwd=work, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # The checks stay on with the user's folder, by either route.
    for route in (["--config-dir", "my_conf"], ["hydra.searchpath=[file://my_conf]"]):
        for overrides, expected in (
            (["model=wid"], "Available: cnn, linreg, mlp, wide. Did you mean model=wide?"),
            (["model=wide", "trainer.max_epoch=2"], "Did you mean trainer.max_epochs?"),
        ):
            result = run_cli(*route, *overrides, cwd=work, env=env)
            assert result.returncode == 2, result.stderr[-3000:]
            assert expected in result.stderr and "Traceback" not in result.stderr


def write_user_configs(work: Path) -> None:
    """The user's folder exactly as the README's "Extending it" shows it: its my_code.py
    block, and the config files its tree describes."""
    readme = (ROOT / "README.md").read_text().split("## Extending it", 1)[1]
    code = re.search(r"```python\n(# my_code.py.*?)```", readme, re.DOTALL).group(1)
    (work / "my_code.py").write_text(code)
    folder = work / "my_conf"
    for group in ("model", "data", "experiment"):
        (folder / group).mkdir(parents=True)
    (folder / "model" / "wide.yaml").write_text("_target_: my_code.Wide\nwidth: 32\n")
    (folder / "data" / "parabola.yaml").write_text(
        "_target_: my_code.Parabola\nn_samples: 500\nnoise: 0.1\nshuffle_seed: ${seed}\n"
    )
    (folder / "experiment" / "my_exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: wide\n"
        "  - override /data: parabola\ntask_name: my_exp\noptimizer:\n  lr: 0.01\n"
        "trainer:\n  max_epochs: 30\n"
    )


@pytest.mark.slow
def test_readme_commands_compose(make_config):
    """Every `python -m dlbasics.train ...` line of the README names real groups and keys."""
    import shlex

    from dlbasics.config.prechecks import check_command_line

    commands = [
        line.strip()
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.strip().startswith("python -m dlbasics.train")
    ]
    assert len(commands) >= 5
    for command in commands:
        words = shlex.split(command.split("#")[0])[3:]
        if "--help" in words or "--cfg" in words or any(w.startswith("resume=") for w in words):
            continue  # Hydra's own flags; resume is exercised in test_resume.py
        if "--config-dir" in words or any(w.startswith("hydra.searchpath") for w in words):
            continue  # the user's own folder: run in test_installed_wheel_runs_from_another_directory
        overrides = [w for w in words if not w.startswith("-")]
        if "-m" in words:  # a sweep or search: every value, as the command checks them
            check_command_line(overrides, [], multirun=True)
        else:
            make_config(*overrides)
