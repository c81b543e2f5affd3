"""What a run says about what it learned from and when its result misleads: rows per split
(log, data.json, closing table), a warning for small held-out splits, the baseline of a
model that ignores its inputs, the best epoch, and the standardised regression target."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlbasics
from dlbasics.data.arrays import check_target_scaling
from dlbasics.errors import ConfigError
from dlbasics.training.builders import build

QUIET = (
    "logger=none", "figures=none", "callbacks.progress_bar=null",
    "callbacks.model_summary=null", "trainer.enable_progress_bar=false",
    "trainer.max_epochs=3",
)  # fmt: skip


def write_table(path: Path, n: int, kind: str) -> Path:
    """A CSV of ``n`` rows: ``separable`` classes (label = a > 0), ``constant`` features
    with 70 % 'yes', a ``linear`` target in the thousands, or a ``flat`` one (constant a)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=n), rng.normal(size=n)
    if kind == "separable":
        frame = pd.DataFrame({"a": a, "b": b, "label": np.where(a > 0, "yes", "no")})
    elif kind == "constant":
        labels = np.where(np.arange(n) % 10 < 7, "yes", "no")
        frame = pd.DataFrame({"a": np.ones(n), "label": labels})
    elif kind == "linear":
        frame = pd.DataFrame({"a": a, "b": b, "y": 1000 + 300 * a - 200 * b + rng.normal(size=n)})
    else:  # flat: nothing to learn from
        frame = pd.DataFrame({"a": np.ones(n), "y": 1000 + 300 * rng.normal(size=n)})
    frame.to_csv(path, index=False)
    return path


def train(root: Path, name: str, n: int, kind: str, *overrides: str):
    """Fit a table in-process from ``root``; returns (run, console output, train.log)."""
    csv = write_table(root / f"{name}.csv", n, kind)
    target = "label" if kind in ("separable", "constant") else "y"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.chdir(root)
        run = dlbasics.fit(
            "data=csv", f"data.path={csv}", f"data.target={target}", "model=linreg",
            "optimizer=sgd", "optimizer.lr=0.3", *QUIET, *overrides,
        )  # fmt: skip
    return run, out.getvalue(), (run.dir / "train.log").read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary")
    return {
        "good": train(root, "good", 300, "separable"),  # 240 / 30 / 30 rows
        "constant": train(root, "constant", 100, "constant"),  # 80 / 10 / 10 rows
        "linear": train(root, "linear", 300, "linear"),
        "flat": train(root, "flat", 100, "flat"),
    }


def table_row(output: str, label: str) -> str:
    """The value of the closing table's row whose label starts with ``label``."""
    match = re.search(rf"│ {re.escape(label)}[^│]*│ +([^│]*?) │", output)
    assert match, output[-3000:]
    return match.group(1)


def file_splits(run) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The run's CSV file and the row positions of each split, as the data drew them."""
    data = build(run.config.data, "data")
    data.setup()
    return pd.read_csv(run.config.data.path), data.row_split


# -- A: rows of each split ------------------------------------------------------------------


def test_rows_of_each_split_are_logged_saved_and_tabled(runs):
    run, output, log = runs["good"]
    assert "[dlbasics.data][INFO] - data: 240 training rows, 30 validation, 30 test\n" in log
    described = json.loads((run.dir / "data.json").read_text())
    assert described["rows"] == {"train": 240, "val": 30, "test": 30}
    assert {"task", "feature_names", "class_names", "target_scaling"} <= described.keys()
    _, positions = file_splits(run)
    assert {name: len(rows) for name, rows in positions.items()} == described["rows"]
    assert table_row(output, "rows (train / val / test)") == "240 / 30 / 30"
    assert "Run summary: " in log and "rows (train / val / test) 240 / 30 / 30" in log


# -- B: a warning for small held-out splits ---------------------------------------------------


def test_small_validation_and_test_splits_warn_that_their_metrics_are_noisy(runs):
    _, output, log = runs["constant"]  # 10 validation rows, 10 test rows
    warnings = [line for line in log.splitlines() if "[WARNING]" in line and "noisy" in line]
    assert len(warnings) == 2, log
    validation, test = warnings
    assert "validation split has only 10 rows" in validation
    assert "one row moves val/acc by 10 points" in validation and "data.val_fraction" in validation
    assert "test split has only 10 rows" in test and "data.test_fraction" in test
    assert "noisy" not in runs["good"][2]  # 30 rows each: no warning


# -- C: the baseline of a model that ignores its inputs ----------------------------------------


def test_the_baseline_is_the_majority_class_and_a_model_that_cannot_beat_it_is_told(runs):
    run, output, log = runs["constant"]
    frame, positions = file_splits(run)
    labels = frame["label"].to_numpy()
    majority = pd.Series(labels[positions["train"]]).value_counts().idxmax()
    share = float(np.mean(labels[positions["test"]] == majority))
    assert table_row(output, f"baseline/test/acc (majority class '{majority}')") == f"{share:.6g}"
    assert run.metrics["test/acc"] == pytest.approx(share, abs=1e-6)  # constant features
    said = "The model does no better than predicting the majority class"
    assert f"[WARNING] - {said}" in log
    assert not any(name.startswith("baseline") for name in run.metrics)  # metrics.json: the model's

    good, good_output, good_log = runs["good"]
    baseline = float(table_row(good_output, "baseline/test/acc"))
    assert good.metrics["test/acc"] > baseline + 0.2
    assert "does no better" not in good_log


def test_the_regression_baseline_is_the_training_mean_and_r2_at_most_0_is_told(runs):
    run, output, log = runs["flat"]
    frame, positions = file_splits(run)
    y = frame["y"].to_numpy()
    mse = float(np.mean((y[positions["test"]] - y[positions["train"]].mean()) ** 2))
    shown = table_row(output, "baseline/test/mse (the training mean")
    assert float(shown) == pytest.approx(mse, rel=1e-5)
    assert run.metrics["test/r2"] <= 0
    assert "[WARNING] - The model does no better than predicting the mean" in log

    good, good_output, good_log = runs["linear"]
    assert float(table_row(good_output, "baseline/test/mse")) > 100 * good.metrics["test/mse"]
    assert "does no better" not in good_log


# -- D: the best epoch ---------------------------------------------------------------------------


def test_the_best_epoch_is_tabled_and_a_first_best_epoch_is_told(runs, tmp_path):
    run, output, log = runs["linear"]
    best = int(run.history["val/loss"].idxmin())
    assert table_row(output, "best epoch (lowest val/loss, best.ckpt)") == f"{best} of 3"
    assert best == run.best_epoch > 1 and "The best epoch is the first" not in log

    # Steps too small to change a float32 weight: the loss never improves after epoch 1.
    stuck, stuck_output, stuck_log = train(tmp_path, "stuck", 300, "linear", "optimizer.lr=1e-12")
    assert table_row(stuck_output, "best epoch (lowest val/loss, best.ckpt)") == "1 of 3"
    assert "[WARNING] - The best epoch is the first of 3" in stuck_log
    assert "may have stopped learning after epoch 1" in stuck_log
    assert "optimizer.lr" in stuck_log


# -- E: regression targets standardised by default, metrics in their own units -------------------


def test_a_csv_regression_target_is_standardised_by_default_and_scored_in_its_units(runs):
    run, _, _ = runs["linear"]
    assert run.config.data.standardize_target == "auto"
    scaling = json.loads((run.dir / "data.json").read_text())["target_scaling"]
    frame, positions = file_splits(run)
    y = frame["y"].to_numpy()
    assert scaling["mean"][0] == pytest.approx(y[positions["train"]].mean(), rel=1e-5)
    # The test metrics of best.ckpt, recomputed in the target's own units from the file.
    test = frame.iloc[positions["test"]]
    predicted = run.module.predict_raw(test[["a", "b"]].to_numpy()).numpy().ravel()
    assert run.metrics["test/mse"] == pytest.approx(np.mean((predicted - test["y"]) ** 2), rel=1e-4)
    # Noise of variance 1 in y's units; in standard units (y spreads ~360) it would be ~1e-5.
    assert 0.3 < run.metrics["test/mse"] < 10 and run.metrics["test/r2"] > 0.99
    # Class labels are never scaled (auto); asking for it on them is still refused.
    assert json.loads((runs["good"][0].dir / "data.json").read_text())["target_scaling"] is None
    with pytest.raises(ConfigError, match="standardize_target=true"):
        check_target_scaling(True, "classification")
    with pytest.raises(ConfigError, match="one of true, false or auto"):
        check_target_scaling("yes", "regression")


def test_the_default_is_standardised_for_regression_bundles_but_not_the_linear_lesson(
    make_config,
):
    assert make_config("data=make_regression").data.standardize_target is True
    assert make_config("data=diabetes").data.standardize_target is True
    # data=linear compares the learned weights with the true ones, in the data's own units.
    assert make_config("data=linear").data.standardize_target is False
