"""Tables as users have them: text columns as categories, missing values, identifiers,
and a run's categories carried into evaluate, predict and the exported model."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from conftest import fit_error
from dlbasics.data import CsvData
from dlbasics.data.encoding import OTHER, TableEncoding
from dlbasics.data.table import MISSING, read_csv_data
from dlbasics.errors import DataError, DlbasicsError

# Each region adds its own amount to the price: a model without the column cannot know it.
REGION_EFFECT = {"north": 0.0, "south": 6.0, "east": -4.0}
QUIET = ("logger=none", "figures=none", "callbacks.progress_bar=null")


def write_regions(path, rows=300, seed=0, missing_every=0, regions=tuple(REGION_EFFECT)):
    """``price = 2a + effect(region) + 1`` plus noise, a row ``ID`` and a ``b`` of noise."""
    rng = np.random.default_rng(seed)
    lines = ["ID,a,region,b,price"]
    order = rng.permutation(rows) + 1  # identifiers in no particular order
    for i in range(rows):
        a, region = rng.standard_normal(), regions[i % len(regions)]
        price = 2 * a + REGION_EFFECT.get(region, 0.0) + 1 + 0.05 * rng.standard_normal()
        shown = "?" if missing_every and i % missing_every == 1 else f"{a:.5f}"
        lines.append(f"{order[i]},{shown},{region},{rng.standard_normal():.5f},{price:.5f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def table_fit(fit, csv, *overrides):
    return fit(
        "model=linreg", "data=csv", f"data.path={csv}", "data.target=price",
        "optimizer=adam", "optimizer.lr=0.1", "trainer.max_epochs=15", *QUIET, *overrides,
    )  # fmt: skip


def test_a_text_column_is_one_hot_encoded_and_learned(fit, tmp_path):
    csv = write_regions(tmp_path / "prices.csv")

    run = table_fit(fit, csv)
    without = table_fit(fit, csv, "data.categorical_encoding=none")

    described = json.loads((run.dir / "data.json").read_text())
    assert described["columns"] == ["a", "region", "b"]  # ID left out
    assert described["feature_names"] == ["a", "region=east", "region=north", "region=south", "b"]
    (region,) = [c for c in described["encoding"]["columns"] if c["name"] == "region"]
    assert region["levels"] == ["east", "north", "south"]
    # The region's 10-point spread is learned with the column and lost without it.
    assert run.metrics["test/r2"] > 0.99
    assert without.metrics["test/r2"] < 0.6


def test_categories_are_learned_on_the_training_rows_only(tmp_path):
    # One row of 'west' (line 42): a split that leaves it out of training meets it unseen.
    text = (
        "a,region,y\n" + "".join(f"{i / 2},{'ab'[i % 2]},{i}\n" for i in range(40)) + "20,west,40\n"
    )
    path = tmp_path / "d.csv"
    path.write_text(text)

    def data(**options):
        return CsvData(
            path=str(path), target="y", val_fraction=0.0, test_fraction=0.2, standardize=False,
            **options,
        )  # fmt: skip

    seed = next(
        s
        for s in range(50)
        if 40 not in data(split_seed=s)._split_positions(np.arange(41), np.arange(41.0))["train"]
    )
    with pytest.raises(
        DataError,
        match=r"line 42 of .*: column 'region' holds 'west', a category never seen in training",
    ):
        data(split_seed=seed).setup()
    ignoring = data(split_seed=seed, unknown_category="ignore")
    ignoring.setup()
    assert ignoring.feature_names == ["a", "region=a", "region=b"]  # no 'west' column
    assert ignoring.splits["test"][0][:, 1:].sum(dim=1).min() == 0  # its row: all zeros


def test_whole_numbers_listed_as_categorical_and_rare_levels(tmp_path):
    rows = [f"{[4, 6, 8][i % 3] if i < 58 else 5},{i % 7},{i}" for i in range(60)]
    path = tmp_path / "cars.csv"
    path.write_text("cyl,gear,mpg\n" + "\n".join(rows) + "\n")
    table = read_csv_data(path, "mpg", categorical=["cyl"], min_category_count=3)
    encoding = table.encoding()
    assert table.categorical == ["cyl"]
    # cyl=5 is seen twice: it shares the (other) column; gear stays a number.
    assert encoding.feature_names == ["cyl=4", "cyl=6", "cyl=8", f"cyl={OTHER}", "gear"]
    assert table.x[-1].tolist() == [0, 0, 0, 1, 59 % 7]
    with pytest.raises(DataError, match=r"data\.categorical: no column 'cylinders'"):
        read_csv_data(path, "mpg", categorical=["cylinders"])


def test_missing_tokens_are_counted_then_filled_from_the_training_rows(tmp_path, caplog):
    csv = write_regions(tmp_path / "prices.csv", rows=100, missing_every=10)
    with pytest.raises(DataError) as stopped:
        read_csv_data(csv, "price")
    assert "'a' (10, first on line 3)" in str(stopped.value)
    assert "data.impute=median" in str(stopped.value)

    data = CsvData(path=str(csv), target="price", impute="median", standardize=False)
    with caplog.at_level(logging.INFO, logger="dlbasics.data"):
        data.setup()
    assert "missing values in column(s) 'a' (10" in caplog.text
    (a,) = [c for c in data.table_encoding.columns if c.name == "a"]
    training = data.table.frame.iloc[data.row_split["train"]]["a"]
    assert a.fill == pytest.approx(training.median())  # training rows only, not all rows
    assert a.fill != pytest.approx(data.table.frame["a"].median())
    assert not np.isnan(data.splits["train"][0].numpy()).any()


def test_the_missing_tokens_of_training_are_those_of_predict():
    from dlbasics.using.predict import _MISSING

    assert set(MISSING) <= set(_MISSING)


def test_a_stray_word_in_a_numeric_column_is_refused_with_its_line(tmp_path):
    path = tmp_path / "boston.csv"
    path.write_text(
        "rm,lstat,medv\n"
        + "".join(f"{6 + i / 10},{i},{20 + i}\n" for i in range(30))
        + "6.1,x,22\n"
    )
    with pytest.raises(DataError, match=r"column 'lstat' holds numbers, but line 32 .* holds 'x'"):
        read_csv_data(path, "medv")
    path.write_text("rm,medv\n" + "".join(f"{i},{20 + i}\n" for i in range(30)) + "3,twenty\n")
    with pytest.raises(
        DataError, match=r"data\.target=medv: column 'medv' holds numbers, but line 32"
    ):
        read_csv_data(path, "medv")  # not a 31-class classification


def test_an_identifier_is_left_out_unless_listed(tmp_path):
    csv = write_regions(tmp_path / "prices.csv", rows=50)
    assert "ID" not in read_csv_data(csv, "price").columns
    kept = read_csv_data(csv, "price", features=["ID", "a"])
    assert kept.columns == ["ID", "a"]
    # Unique years further right are a quantity (statsmodels' longley), not row numbers.
    longley = tmp_path / "longley.csv"
    longley.write_text(
        "gnp,year,employed\n"
        + "".join(f"{234 + 9 * i},{1947 + i},{60 + i / 3:.2f}\n" for i in range(16))
    )
    assert read_csv_data(longley, "employed").columns == ["gnp", "year"]


def test_predict_and_evaluate_apply_the_runs_categories(fit, tmp_path):
    csv = write_regions(tmp_path / "prices.csv", missing_every=25)
    run = table_fit(fit, csv, "data.impute=median")

    new = pd.DataFrame({"a": [0.0, 1.0, np.nan], "region": ["south", "east", "north"], "b": 0.0})
    predicted = run.predict(new)["predicted_price"].to_numpy()
    fill = run.trained.encoding.columns[0].fill
    expected = [0 + 6 + 1, 2 - 4 + 1, 2 * fill + 0 + 1]
    assert predicted == pytest.approx(expected, abs=0.3)

    with pytest.raises(DataError, match=r"row 1 \(line 2\): column 'region' holds 'west'"):
        run.predict(pd.DataFrame({"a": [0.0], "region": ["west"], "b": [0.0]}))

    other = write_regions(tmp_path / "more.csv", rows=60, seed=5)
    scored = run.evaluate(path=str(other))
    assert scored["eval/r2"] > 0.99  # the run's encoding, not one fitted on these rows


def test_the_onnx_export_reads_raw_rows_with_text(fit, tmp_path):
    pytest.importorskip("onnxruntime")
    from dlbasics.using.export import load_exported

    csv = write_regions(tmp_path / "prices.csv", missing_every=25)
    run = table_fit(fit, csv, "data.impute=median", "trainer.max_epochs=3")
    exported = run.export("onnx")
    sidecar = json.loads(exported.with_name(exported.name + ".json").read_text())
    rows = pd.DataFrame({"a": [0.5, np.nan, -1.0], "region": ["east", "south", "north"], "b": 1.0})

    onnx_out = load_exported(exported, sidecar)(rows)[:, 0]
    checkpoint = run.predict(rows)["predicted_price"].to_numpy()
    assert onnx_out == pytest.approx(checkpoint, rel=1e-5)

    with pytest.raises(DlbasicsError, match=r"format=pt2: the run reads text columns \(region\)"):
        run.export("pt2")


def test_export_parity_is_relative_to_the_outputs_size():
    from dlbasics.using.export import Difference

    expected = np.array([[950.0], [1200.0]], dtype=np.float32)  # a Credit balance
    difference = Difference(expected + np.float32(1.2e-4), expected)
    assert difference.absolute == pytest.approx(1.2e-4, rel=0.5)
    assert difference.relative < 1e-6  # within the limit: float32 holds ~7 digits
    small = Difference(np.array([[0.5 + 2e-5]]), np.array([[0.5]]))
    assert small.relative == pytest.approx(2e-5, rel=1e-3)  # below 1, absolute it is


def test_a_failed_export_leaves_no_folder(fit, tmp_path, monkeypatch):
    import dlbasics.using.export as export

    run = fit("experiment=linreg_tiny", "trainer.max_epochs=2", *QUIET)

    class Far:
        absolute = relative = 1.0

    monkeypatch.setattr(export, "largest_difference", lambda *args: Far())
    with pytest.raises(export.ExportMismatch, match="nothing was kept"):
        run.export("pt2")
    assert not (run.dir / "export").exists()


def test_an_encoding_survives_json():
    frame = pd.DataFrame({"n": [1.0, np.nan, 3.0], "c": ["x", "y", None]})
    encoding = TableEncoding.fit(frame, ["c"], impute="mean")
    again = TableEncoding.from_dict(json.loads(json.dumps(encoding.to_dict())))
    assert again.transform(frame).tolist() == encoding.transform(frame).tolist()
    assert encoding.transform(frame).tolist() == [[1, 1, 0], [2, 0, 1], [3, 1, 0]]


def test_categorical_options_are_checked(fit, tmp_path):
    csv = write_regions(tmp_path / "prices.csv", rows=40)
    message = fit_error(
        fit, "data=csv", f"data.path={csv}", "data.target=price", "data.impute=mode"
    )
    assert "data.impute=mode" in message and "median" in message


def test_predict_reads_a_decimal_comma_file_as_training_did(fit, tmp_path):
    rows = [f"{20 + i / 4:.2f};{4 + 2 * (i % 3)};{100 + 7.5 * i:.1f}" for i in range(40)]
    csv = tmp_path / "mtcars_eu.csv"
    csv.write_text("mpg;cyl;disp\n" + "\n".join(rows).replace(".", ",") + "\n")
    run = fit("data=csv", f"data.path={csv}", "data.target=mpg", "trainer.max_epochs=2", *QUIET)
    assert run.config.data.decimal is None and run.trained.task == "regression"

    predicted = run.predict(str(csv))
    assert len(predicted) == 40 and predicted["predicted_mpg"].notna().all()


def test_a_run_from_before_categories_is_evaluated_as_it_was_trained(fit, tmp_path):
    import yaml

    csv = write_regions(tmp_path / "prices.csv", rows=80)
    run = table_fit(fit, csv, "data.categorical_encoding=none", "trainer.max_epochs=2")
    config_file = run.dir / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    for key in (
        "categorical_encoding",
        "categorical",
        "impute",
        "min_category_count",
        "unknown_category",
        "decimal",
    ):
        del config["data"][key]  # as an older dlbasics wrote it: text columns were skipped
    config_file.write_text(yaml.safe_dump(config))

    assert run.evaluate()["test/r2"] == pytest.approx(run.metrics["test/r2"], abs=1e-6)
