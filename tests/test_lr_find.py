"""dlbasics.lr_find: a learning-rate range test that explains itself.

The suggestions are checked on curves whose answer is known, the range test on the run's
own model (whose weights it leaves as they were), the recommendation on real data (it
trains mlp_moons to the preset's accuracy in half its epochs), every failure as one line,
and the command line once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import dlbasics
from dlbasics import ConfigError, DlbasicsError
from dlbasics.training.lr_find import (
    BETA,
    MIN_STEPS,
    RangeTestFailed,
    exponential_lrs,
    judge,
    range_test,
    smooth,
    suggest,
    valley,
)

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SETTINGS = {"min_lr": 1e-6, "max_lr": 1.0, "num_steps": 100}


# -- the suggestions, on known curves ------------------------------------------------------


def fastai_valley_index(losses) -> int:
    """fastai's ``valley`` (fastai/callback/schedule.py) as written there, loop for loop."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def test_steepest_is_taken_against_log10_lr_not_lr():
    # A loss that falls along log10(lr) as a tanh, fastest at lr = 1e-3 (log10 = -3).
    lrs = exponential_lrs(1e-6, 1.0, 61)  # a point every 0.1 decade, 1e-3 among them
    losses = 1.0 - 0.5 * np.tanh((np.log10(lrs) + 3) / 0.8)
    found = suggest(lrs, losses)
    assert found["steepest"].lr == pytest.approx(1e-3)
    assert "log10(lr)" in found["steepest"].how
    # Against lr itself (Lightning's suggestion) the steepest point is elsewhere: smaller.
    # Against lr itself (Lightning's suggestion) the 1/lr factor pulls it 1.3 decades lower.
    against_lr = lrs[int(np.argmin(np.gradient(losses, lrs)))]
    assert against_lr == pytest.approx(10**-4.3)
    # The lowest loss is at the largest lr: minimum/10 is a tenth of it.
    assert found["minimum/10"].lr == pytest.approx(0.1)


def test_valley_is_fastais_rule():
    lrs = exponential_lrs(1e-6, 1.0, 90)
    # Falls from index 0 to 59, then rises: fastai's start is 0 - 1 and its end 59, so
    # the valley's point is -1 + int(60 / 3) + int(20 / 2) = 29, about halfway along it.
    losses = np.concatenate([np.linspace(2.0, 0.5, 60), np.linspace(0.55, 3.0, 30)])
    assert fastai_valley_index(losses) == 29
    assert valley(lrs, losses).lr == pytest.approx(float(f"{lrs[29]:.2g}"))
    generator = np.random.default_rng(0)
    for _ in range(30):  # noisy curves: the same point as fastai's loops
        noisy = np.cumsum(generator.normal(-0.01, 0.05, 80)) + 2
        expected = min(max(fastai_valley_index(noisy), 0), 79)
        assert valley(lrs[:80], noisy).lr == pytest.approx(float(f"{lrs[expected]:.2g}"))


def test_smoothing_is_a_bias_corrected_moving_average():
    assert smooth([0.7, 0.7, 0.7]) == pytest.approx([0.7, 0.7, 0.7])  # no pull towards 0
    second = (BETA * (1 - BETA) * 1.0 + (1 - BETA) * 3.0) / (1 - BETA**2)
    assert smooth([1.0, 3.0])[1] == pytest.approx(second)


# -- the range test leaves the run as it was -----------------------------------------------


def test_range_test_leaves_the_weights_as_they_were(make_config):
    import lightning.pytorch as pl
    from hydra.utils import instantiate

    from dlbasics.training.train import build_module

    def fresh():
        cfg = make_config("model=mlp", "data=moons", "model.dropout=0.1")
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule = instantiate(cfg.data)
        datamodule.setup()
        return build_module(cfg, datamodule), datamodule

    module, datamodule = fresh()
    before = {name: value.clone() for name, value in module.state_dict().items()}
    module.eval()
    test = range_test(module, datamodule, SETTINGS)
    assert len(test.losses) > 20 and test.losses.min() < 0.9 * test.losses[0]  # it trained
    untouched, _ = fresh()
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]) and torch.equal(value, untouched.state_dict()[name])
    assert not module.training  # its mode, as it was
    assert all(p.grad is None for p in module.parameters())


# -- real data: the recommendation trains mlp_moons -----------------------------------------


def test_recommended_lr_reaches_the_presets_accuracy_in_half_its_epochs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    random_state = torch.get_rng_state()
    found = dlbasics.lr_find("experiment=mlp_moons")
    assert torch.equal(torch.get_rng_state(), random_state)  # a notebook draws on unchanged
    printed = capsys.readouterr().out
    lr = found.recommended
    assert found.suggestions["valley"].lr == lr
    for name in ("steepest", "valley", "minimum/10"):
        assert re.search(rf"^  {re.escape(name)} +lr=\S+ +\S", printed, re.M), printed
    assert f"Recommended: valley (fastai's default), optimizer.lr={lr:.2g}" in printed
    command = f"python -m dlbasics.train experiment=mlp_moons optimizer.lr={lr:.2g}"
    assert found.command == command and f"Train with: {command}" in printed
    assert found.overrides == ["experiment=mlp_moons", f"optimizer.lr={lr:.2g}"]
    # The curve and its files: outputs/<task_name>/lr_find/<date>_<time>_<pid>/.
    assert list(found.curve.columns) == ["lr", "loss", "smoothed_loss", "judged"]
    assert len(found.curve) == 100 and found.curve["lr"].iloc[0] == pytest.approx(1e-6)
    assert found.dir.parent == tmp_path / "outputs" / "mlp_moons" / "lr_find"
    assert {p.name for p in found.dir.iterdir()} == {"lr_find.png", "lr_find.csv", "lr_find.json"}
    assert json.loads((found.dir / "lr_find.json").read_text())["command"] == command
    assert found.figure._repr_png_().startswith(b"\x89PNG")
    page = found._repr_html_()
    assert "minimum/10" in page and "data:image/png;base64," in page and command in page
    # The preset trains 20 epochs at lr 0.001 to >= 96.5 %; 10 at the recommended lr do.
    run = dlbasics.fit("experiment=mlp_moons", f"optimizer.lr={lr}", "trainer.max_epochs=10")
    assert run.metrics["test/acc"] >= 0.965, (lr, run.metrics)


# -- each failure is one line, saying what to change ---------------------------------------


def lr_find_error(tmp_path, *overrides) -> DlbasicsError:
    with pytest.raises(DlbasicsError) as caught:
        dlbasics.lr_find(*overrides, root_dir=tmp_path)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "outputs").exists()  # nothing half-written
    return caught.value


def test_too_few_steps_is_refused_before_training(tmp_path):
    error = lr_find_error(tmp_path, "experiment=linreg_tiny", "lr_find.num_steps=8")
    assert isinstance(error, ConfigError) and MIN_STEPS == 16
    assert "lr_find.num_steps=8: too few steps" in str(error)
    assert "lr_find.num_steps=100" in str(error) and "data.batch_size" in str(error)


def test_a_loss_that_diverges_from_the_start(tmp_path):
    # Full-batch SGD on y = 2x diverges above lr 0.2: from lr 1 on, at once.
    error = lr_find_error(tmp_path, "experiment=linreg_tiny", "lr_find.min_lr=1", "lr_find.max_lr=100")
    assert isinstance(error, RangeTestFailed) and error.exit_code == 1
    assert str(error).startswith("the loss diverged from the start: after 2 steps")
    assert str(error).endswith("set a smaller lr_find.min_lr (e.g. lr_find.min_lr=0.01)")


def test_a_loss_that_never_falls(tmp_path):
    # Too small: Adam at lr <= 1e-5 does not move an MLP in 100 steps.
    error = lr_find_error(tmp_path, "model=mlp", "data=moons", "lr_find.max_lr=1e-5")
    assert isinstance(error, RangeTestFailed)
    assert str(error).startswith("the loss never fell: between lr 1.3e-06 and 8.9e-06")
    assert "set a larger lr_find.max_lr (e.g. lr_find.max_lr=0.001)" in str(error)
    # Too large from the start, rising without quite diverging (a known curve).
    lrs = exponential_lrs(1e-2, 10.0, 100)
    with pytest.raises(RangeTestFailed, match=r"^the loss never fell: the smoothed loss rose from"):
        judge(lrs, np.linspace(1.0, 3.0, 100), {**SETTINGS, "min_lr": 1e-2}, None)
    with pytest.raises(RangeTestFailed, match=r"set a smaller lr_find.min_lr \(e.g. lr_find.min_lr=0.0001\)$"):
        judge(lrs, np.linspace(1.0, 3.0, 100), {**SETTINGS, "min_lr": 1e-2}, None)


def test_settings_and_calls_are_checked(tmp_path):
    for words, line in [
        (("lr_find.min_lr=0",), "lr_find.min_lr=0.0: must be a number above 0"),
        (("lr_find.min_lr=0.1", "lr_find.max_lr=0.01"), "lr_find.max_lr=0.01 must be above"),
        (("lr_find.num_steps=1e3",), "lr_find.num_steps=1e3: must be a whole number; 1e3 is read as the decimal number 1000.0"),
        (("lr_find.min_step=3",), "lr_find.min_step: no such key"),
        (("optimizer.lr=0.01,0.1",), "several values make a sweep"),
    ]:
        assert line in str(lr_find_error(tmp_path, "experiment=linreg_tiny", *words))


# -- the command line, and the README -------------------------------------------------------


def lr_find_cli(*args, cwd) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "dlbasics.lr_find", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip


README_COMMANDS = {  # every `python -m dlbasics.lr_find` line of the README: run below
    "python -m dlbasics.lr_find experiment=mlp_moons",
    "python -m dlbasics.lr_find --help",
}


def test_the_readme_shows_the_commands_tested_here():
    lines = (ROOT / "README.md").read_text().splitlines()
    shown = {
        line.split(" #")[0].strip()
        for line in lines
        if line.strip().startswith("python -m dlbasics.lr_find")
    }
    assert shown == README_COMMANDS
    assert 'dlbasics.lr_find("experiment=mlp_moons")' in (ROOT / "README.md").read_text()


def test_command_line(tmp_path, monkeypatch, capsys):
    from dlbasics.training.lr_find import cli

    # --help and a failing curve in this process (what they print, their exit code) ...
    monkeypatch.chdir(tmp_path)
    cli(["--help"])
    assert "lr_find.num_steps=100" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ended:
        cli(["experiment=linreg_tiny", "lr_find.min_lr=1", "lr_find.max_lr=100"])
    failed = capsys.readouterr()
    assert ended.value.code == 1 and failed.out.count("\n") <= 1
    assert failed.err.startswith("Error: the loss diverged from the start")
    assert failed.err.count("\n") == 1
    # ... and the README's command as a user runs it: a process of its own.
    done = lr_find_cli("experiment=mlp_moons", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("steepest", "valley", "minimum/10"):
        assert re.search(rf"^  {re.escape(name)} +lr=", done.stdout, re.M), done.stdout
    assert re.search(
        r"^Train with: python -m dlbasics.train experiment=mlp_moons optimizer.lr=\S+$",
        done.stdout,
        re.M,
    )
    assert len(list((tmp_path / "outputs" / "mlp_moons" / "lr_find").glob("*/lr_find.png"))) == 1
