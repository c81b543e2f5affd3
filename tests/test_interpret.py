"""What the model gets wrong (``dlbasics.interpret``, ``Run.interpret()``, the ``top_losses``
figure), checked on data whose mistakes are known by construction.

* Two well-separated blobs in a CSV file with the labels of five known rows flipped: the
  model cannot learn them, so they must be the five largest losses, first, named by their
  file lines. The run has neither a validation nor a test split (``val_fraction=0``,
  ``test_fraction=0``), so every row, the flipped ones included, is in the training split
  that interpret looks at (``split=train``, also its default there).
* A linear target with three outlier rows: they are the three largest residuals.
* The per-class numbers against scikit-learn, computed from ``Run.predict`` on the file.
* A tiny ``cnn_digits`` run: the picture is a grid of the top-loss test images.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlbasics.cli import commands
from dlbasics.errors import ConfigError
from dlbasics.using import interpret

FLIPPED = [10, 57, 123, 200, 271]  # rows (from 0) whose label is flipped
OUTLIERS = {17: 60.0, 88: -70.0, 150: 80.0}  # row -> what is added to its target
QUIET = ("callbacks.progress_bar=null", "callbacks.model_summary=null",
         "trainer.enable_progress_bar=false")  # fmt: skip


def line_of(row: int) -> int:
    """The file line of data row ``row`` (line 1 is the header)."""
    return row + 2


def train_in(folder: Path, *overrides: str):
    import dlbasics

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return dlbasics.fit(*overrides, *QUIET)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """A run on 300 rows of two blobs, labels of FLIPPED rows swapped; all rows train."""
    folder = tmp_path_factory.mktemp("flipped")
    rng = np.random.default_rng(0)
    label = np.array(["a", "b"] * 150)
    x = np.where(label[:, None] == "a", -3.0, 3.0) + rng.normal(scale=0.7, size=(300, 2))
    written = label.copy()
    written[FLIPPED] = np.where(label[FLIPPED] == "a", "b", "a")
    with open(folder / "blobs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["length", "colour", "label"])  # a number and a text column
        for (first, second), name in zip(x, written, strict=True):
            writer.writerow([f"{first:.3f}", "red" if second > 0 else "blue", name])
    run = train_in(
        folder, "model=mlp", "model.hidden_sizes=[16]", "data=csv", "data.path=blobs.csv",
        "data.target=label", "data.val_fraction=0", "data.test_fraction=0",
        "trainer.max_epochs=20", "logger=csv",
    )  # fmt: skip
    return run, folder / "blobs.csv"


@pytest.fixture(scope="module")
def outliers(tmp_path_factory):
    """A linear model on price = 3 area - 2 slope + noise, three rows shifted far off."""
    folder = tmp_path_factory.mktemp("outliers")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2)) * [10, 2] + [50, 0]
    y = 3 * x[:, 0] - 2 * x[:, 1] + rng.normal(scale=1.0, size=200)
    for row, shift in OUTLIERS.items():
        y[row] += shift
    with open(folder / "houses.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["area", "slope", "region", "price"])
        for i in range(200):
            region = "north" if i % 2 else "south"
            writer.writerow([f"{x[i, 0]:.3f}", f"{x[i, 1]:.3f}", region, f"{y[i]:.3f}"])
    run = train_in(
        folder, "model=linreg", "data=csv", "data.path=houses.csv", "data.target=price",
        "data.val_fraction=0", "data.test_fraction=0", "optimizer.lr=0.05",
        "trainer.max_epochs=30", "logger=csv",
    )  # fmt: skip
    return run, folder / "houses.csv"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """cnn_digits for one epoch with a tiny net, logged to TensorBoard (the default)."""
    folder = tmp_path_factory.mktemp("digits")
    return train_in(
        folder, "experiment=cnn_digits", "trainer.max_epochs=1", "model.channels=[4,8]",
        "model.hidden=16",
    )  # fmt: skip


def command(*argv: str, capsys) -> tuple[int, str, str]:
    """``python -m dlbasics.interpret ARGV`` as its entry point runs it, in this process."""
    try:
        commands.run(interpret.main, interpret.__doc__, list(argv))
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


# -- classification: the flipped rows --------------------------------------------------------


def test_the_top_losses_are_the_flipped_rows_first(flipped):
    run, path = flipped
    found = run.interpret(top=9, split="train")
    top = found.top_losses
    assert top.index.name == "line" and len(top) == 9
    assert sorted(top.index[:5]) == sorted(line_of(row) for row in FLIPPED)
    assert not set(top.index[5:]) & {line_of(row) for row in FLIPPED}
    assert (np.diff(top["loss"].to_numpy()) <= 0).all()  # worst first
    # The file's own values on those lines, the text column as text; the label as written.
    file = pd.read_csv(path)
    for line, row in top.iterrows():
        written = file.iloc[line - 2]
        assert (
            row["length"] == pytest.approx(written["length"]) and row["colour"] == written["colour"]
        )
        assert row["true"] == written["label"]
    wrong = top.iloc[:5]
    assert (wrong["predicted"] != wrong["true"]).all() and (wrong["p_true"] < 0.5).all()
    assert np.allclose(wrong["loss"], -np.log(wrong["p_true"]))  # cross-entropy of the row
    assert np.allclose(top["p_predicted"], np.where(top["true"] == top["predicted"],
                                                    top["p_true"], top["p_predicted"]))  # fmt: skip
    assert found.rows == 300 and found.split == "train"
    # Written: the same tables, and the picture.
    folder = run.dir / "interpret"
    assert {p.name for p in folder.iterdir()} == {
        "top_losses.csv", "per_class.csv", "most_confused.csv", "top_losses.png",
        "interpreted.json",
    }  # fmt: skip
    saved = pd.read_csv(folder / "top_losses.csv", index_col="line")
    assert list(saved.index) == list(top.index) and list(saved.columns) == list(top.columns)
    assert found.figure._repr_png_().startswith(b"\x89PNG")


def test_per_class_and_most_confused_are_scikit_learns(flipped):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    run, path = flipped
    found = run.interpret(split="train")
    file = pd.read_csv(path)
    predicted = run.predict(file[["length", "colour"]])["predicted_label"]  # another path
    precision, recall, f1, support = precision_recall_fscore_support(file["label"], predicted)
    table = found.per_class
    assert list(table.index) == ["a", "b", "macro avg", "weighted avg"]
    assert np.allclose(table.loc[["a", "b"], "precision"], precision)
    assert np.allclose(table.loc[["a", "b"], "recall"], recall)
    assert np.allclose(table.loc[["a", "b"], "f1"], f1)
    assert list(table.loc[["a", "b"], "support"]) == list(support)
    assert table.loc["macro avg", "f1"] == pytest.approx(f1.mean())
    counts = confusion_matrix(file["label"], predicted, labels=["a", "b"])
    pairs = {(t, p): c for t, p, c in found.most_confused.itertuples(index=False)}
    assert pairs == {
        (t, p): counts[i, j]
        for i, t in enumerate("ab")
        for j, p in enumerate("ab")
        if i != j and counts[i, j]
    }
    assert found.accuracy == pytest.approx(np.mean(predicted == file["label"]))


def test_in_a_notebook_it_shows_its_tables_and_picture(flipped):
    run, _ = flipped
    found = run.interpret(top=5)  # no test or validation split: the training split
    page = found._repr_html_()
    assert page.count("<table") == 3 and "data:image/png;base64," in page
    assert all(f"<th>{line_of(row)}</th>" in page for row in FLIPPED)
    assert "295 right" in page  # the five flipped rows are the only mistakes


def test_the_new_figure_is_drawn_at_the_end_of_a_run(flipped, outliers, digits):
    from test_figures import image_steps

    for run in (flipped[0], outliers[0], digits):
        assert (run.dir / "figures" / "top_losses.png").is_file(), run.dir
    assert "figures/top_losses" in image_steps(digits.dir)  # TensorBoard's Images tab


# -- regression: the outliers ----------------------------------------------------------------


def test_the_largest_residuals_are_the_outlier_rows(outliers):
    run, path = outliers
    found = run.interpret(top=5, split="train")
    worst = found.largest_residuals
    lines = {line_of(row): shift for row, shift in OUTLIERS.items()}
    assert sorted(worst.index[:3]) == sorted(lines)
    assert all(np.sign(worst.loc[line, "residual"]) == np.sign(lines[line]) for line in lines)
    file = pd.read_csv(path)
    rows = file.iloc[worst.index - 2]
    assert np.allclose(worst["true"], rows["price"])
    predicted = run.predict(rows[["area", "slope", "region"]])["predicted_price"].to_numpy()
    assert np.allclose(worst["predicted"], predicted, rtol=1e-4)
    assert np.allclose(worst["residual"], worst["true"] - worst["predicted"])
    assert list(worst["region"]) == list(rows["region"])
    ranges = found.error_by_range
    assert len(ranges) == 5 and ranges["rows"].sum() == 200
    assert (ranges["low"].to_numpy()[1:] >= ranges["high"].to_numpy()[:-1]).all()
    everything = run.predict(file[["area", "slope", "region"]])["predicted_price"]
    assert found.mae == pytest.approx(np.abs(file["price"] - everything).mean(), rel=1e-4)
    assert {p.name for p in (run.dir / "interpret").iterdir()} == {
        "largest_residuals.csv", "error_by_range.csv", "largest_residuals.png",
        "interpreted.json",
    }  # fmt: skip
    assert found.top_losses is None and found.per_class is None


def test_error_by_range_bins_the_true_target():
    true = np.arange(10.0)
    predicted = true + np.array([1, 1, 0, 0, 0, 0, 0, 0, -2, -2])
    table = interpret.error_by_range(true, predicted)
    assert list(table["rows"]) == [2] * 5
    assert list(table["mae"]) == [1, 0, 0, 0, 2] and list(table["mean_residual"]) == [
        -1,
        0,
        0,
        0,
        2,
    ]
    assert len(interpret.error_by_range([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])) == 3  # few values


# -- images ---------------------------------------------------------------------------------


def test_an_image_run_gets_a_grid_of_its_top_loss_test_images(digits):
    from hydra.utils import instantiate
    from matplotlib.image import imread

    found = digits.interpret()
    assert found.split == "test" and found.rows == 180 and found.top_losses.index.name == "row"
    assert list(found.top_losses.columns) == ["loss", "true", "predicted", "p_predicted", "p_true"]
    datamodule = instantiate(digits.config.data)
    datamodule.setup()
    images, labels = datamodule.original_split("test")
    rows = found.top_losses.index.to_numpy()
    assert np.array_equal(found.images, images[rows])
    assert list(found.top_losses["true"]) == [str(label) for label in labels[rows]]
    picture = imread(digits.dir / "interpret" / "top_losses.png")
    assert picture.shape[0] > 300 and picture.shape[1] > 300 and picture.std() > 0


def test_each_picture_draws_from_its_arrays():
    from dlbasics.figures import draw

    rng = np.random.default_rng(3)
    pictures = [
        draw.top_losses_figure("images", images=rng.random((4, 1, 8, 8)),
                               titles=["a/b\n0.9/2.3"] * 4, wrong=[True, True, False, True]),
        draw.top_losses_figure("losses", labels=["line 2: x=1", "line 9: x=4"],
                               losses=np.array([2.0, 0.4]), notes=["true a → b", "true b → b"],
                               wrong=[True, False]),
        draw.top_losses_figure("residuals", labels=["row 1", "row 7"],
                               residuals=np.array([5.0, -3.0]), notes=["t", "t"],
                               ranges=["0–1", "1–2"], mae=np.array([1.0, 2.0]),
                               mean_residual=np.array([0.5, -1.0])),
    ]  # fmt: skip
    for figure in pictures:
        image = draw.rgb_array(figure)
        assert image.ndim == 3 and image.std() > 0


# -- mistakes, and the command line ---------------------------------------------------------


def test_mistakes_are_one_line(flipped, tmp_path, capsys):
    run, _ = flipped
    (tmp_path / "empty").mkdir()
    cases = {
        (f"run={tmp_path / 'empty'}",): "not a run directory",
        (f"run={run.dir}", "top=0"): "top=0: expected how many of the worst rows",
        (f"run={run.dir}", "split=val"): "split=val: the run has no val split "
        "(data.val_fraction=0.0); it has train (300 rows): use split=train",
        (f"run={run.dir}", "split=dev"): "split=dev: choose test, val or train",
        (f"run={run.dir}", "rows=3"): "interpret: unknown key 'rows'",
        (f"run={run.dir}", "ckpt=nowhere.ckpt"): "ckpt=nowhere.ckpt: no such file",
    }
    for argv, message in cases.items():
        code, out, err = command(*argv, capsys=capsys)
        assert code == 2 and err.startswith("Error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="split=test: the run has no test split"):
        run.interpret(split="test")


def test_the_command_prints_its_tables_and_where_they_are(flipped, capsys):
    run, _ = flipped
    done = subprocess.run(
        [sys.executable, "-m", "dlbasics.interpret", f"run={run.dir}", "top=6", "split=train"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "150"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "Top losses (train split, worst first)" in out and "Per class" in out
    assert "Most confused" in out and "295 right (98.3%), 5 wrong" in out
    table = out.split("Top losses", 1)[1].split("Per class", 1)[0]
    assert all(f"│ {line_of(row):>4} │" in table for row in FLIPPED)
    assert f"Written to {run.dir / 'interpret'}: top_losses.csv" in " ".join(out.split())
    from dlbasics.cli import commands
    from dlbasics.using import interpret

    commands.run(interpret.main, interpret.__doc__, ["--help"])  # what cli() does, in-process
    helped = capsys.readouterr().out
    assert helped.startswith("What the model gets wrong") and "split=NAME" in helped


def test_the_readme_commands(flipped, capsys):
    from conftest import ROOT

    run, _ = flipped
    lines = (ROOT / "README.md").read_text().splitlines()
    found = [line.split(" #")[0].strip() for line in lines
             if line.startswith("python -m dlbasics.interpret")]  # fmt: skip
    assert len(found) == 2
    for line in found:
        argv = line.replace("$RUN", str(run.dir)).split()[3:]
        code, out, err = command(*argv, capsys=capsys)
        assert code == 0 and "Written to" in out, (line, err)
    # The Python lines, as written, on that run.
    section = (ROOT / "README.md").read_text().split("### What the model gets wrong", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    names = {"run": run}
    exec(compile(code, "README.md", "exec"), names)
    assert isinstance(names["found"].top_losses, pd.DataFrame)
    assert names["found"].figure.path == run.dir / "interpret" / "top_losses.png"
