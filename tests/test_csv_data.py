"""`data=csv`: train on your own CSV file, and get one clear message when the file cannot work."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import run_cli
from dlbasics.data import CsvData
from dlbasics.errors import ConfigError, DataError
from dlbasics.training.module import SupervisedModule


def write_linear_csv(path, rows=200, seed=0):
    """``price = 3a - 2b + 1`` plus small noise, and a text column that is not a feature."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(rows), rng.standard_normal(rows)
    price = 3 * a - 2 * b + 1 + 0.05 * rng.standard_normal(rows)
    lines = ["a,b,city,price"] + [
        f"{a[i]:.6f},{b[i]:.6f},town{i % 3},{price[i]:.6f}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_blobs_csv(path, rows=200, seed=0):
    """Two well-separated blobs labelled "dog" (first in the file) and "cat"."""
    rng = np.random.default_rng(seed)
    lines = ["x1,x2,animal"]
    for i in range(rows):
        label, centre = ("dog", 3.0) if i % 2 == 0 else ("cat", -3.0)
        x1, x2 = centre + rng.standard_normal(2)
        lines.append(f"{x1:.5f},{x2:.5f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- training through the configs ---------------------------------------------------------------


def test_regression_recovers_the_weights_of_the_file(run_training, tmp_path):
    csv = write_linear_csv(tmp_path / "houses.csv")
    cfg, metrics = run_training(
        "model=linreg",
        "data=csv",
        f"data.path={csv}",
        "data.target=price",
        "data.standardize=false",  # weights in the file's own units
        "data.standardize_target=false",  # (auto would learn the price in standard units)
        "data.categorical_encoding=none",  # the text column `city` left out
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "trainer.max_epochs=30",
        "logger=none",
    )
    module = SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    linear = module.net.linear
    assert linear.in_features == 2  # a and b; the text column `city` was left out
    assert linear.weight.detach().flatten().tolist() == pytest.approx([3.0, -2.0], abs=0.05)
    assert linear.bias.item() == pytest.approx(1.0, abs=0.05)
    assert metrics["test/r2"] > 0.99
    described = json.loads((tmp_path / "data.json").read_text())
    assert described["task"] == "regression" and described["class_names"] == []
    assert described["feature_names"] == ["a", "b"]  # in the order fed to the model


def test_classification_with_text_labels(run_training, tmp_path):
    csv = write_blobs_csv(tmp_path / "pets.csv")
    cfg, metrics = run_training(
        "model=linreg",
        "data=csv",
        f"data.path={csv}",
        "data.target=animal",
        "data.task=classification",
        "optimizer=sgd",
        "optimizer.lr=0.5",
        "trainer.max_epochs=5",
        "logger=none",
    )
    assert metrics["test/acc"] > 0.95
    # Labels become indices in sorted order, whatever order the file lists them in.
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    assert datamodule.class_names == ["cat", "dog"]
    assert datamodule.num_outputs == 2
    # The entry point writes them beside the run, and every checkpoint carries them.
    described = json.loads((tmp_path / "data.json").read_text())
    assert described["class_names"] == ["cat", "dog"]
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["hyper_parameters"]["data"]["class_names"] == ["cat", "dog"]
    assert checkpoint["hyper_parameters"]["data"]["feature_names"] == ["x1", "x2"]


def test_listed_features_are_the_only_inputs(run_training, tmp_path):
    csv = write_linear_csv(tmp_path / "houses.csv")
    run_training(
        "model=linreg",
        "data=csv",
        f"data.path={csv}",
        "data.target=price",
        "data.features=[a]",
        "trainer.max_epochs=1",
        "logger=none",
    )
    module = SupervisedModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    assert module.net.linear.in_features == 1


# -- behaviour of the datamodule ------------------------------------------------------------------


def make_data(tmp_path, text: str, **options) -> CsvData:
    """A CsvData on a file holding ``text``; no validation or test split unless asked."""
    path = tmp_path / "data.csv"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    options = {"val_fraction": 0.0, "test_fraction": 0.0, "standardize": False, **options}
    return CsvData(path=str(path), **options)


def test_identifiers_and_free_text_are_left_out_with_a_warning(tmp_path, caplog):
    # ISLP's Credit.csv starts with `ID`; Auto.csv's `name` is a car's name per row.
    rows = [f"{i + 1},car {i},{i % 3},{2 * (i % 3) + 1}" for i in range(20)]
    data = make_data(tmp_path, "ID,name,a,y\n" + "\n".join(rows) + "\n", target="y")
    with caplog.at_level(logging.WARNING, logger="dlbasics.data"):
        data.setup()
    assert data.feature_names == ["a"]
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "'ID' (identifier: named like an identifier)" in record.message
    assert "'name' (free text: 20 distinct values in 20 rows)" in record.message
    assert "data.features" in record.message


def test_a_saved_pandas_index_is_left_out(tmp_path, caplog):
    rows = [f"{i},{i % 4},{i % 4 * 2}" for i in range(12)]  # DataFrame.to_csv()'s index
    data = make_data(tmp_path, ",a,y\n" + "\n".join(rows) + "\n", target="y")
    with caplog.at_level(logging.WARNING, logger="dlbasics.data"):
        data.setup()
    assert data.feature_names == ["a"]
    assert "'Unnamed: 0' (identifier" in caplog.text


def test_dropna_drops_the_rows_with_missing_values(tmp_path):
    text = "a,b,y\n1,2,3\n2,,5\n3,4,7\n,5,9\n5,6,11\n"
    data = make_data(tmp_path, text, target="y", dropna=True)
    data.setup()
    x, y = data.splits["train"]
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert y.flatten().tolist() == [3, 7, 11]


def test_relative_paths_are_read_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("a,y\n1,2\n2,4\n3,6\n")
    monkeypatch.chdir(tmp_path)
    data = CsvData(path="sub/d.csv", target="y", val_fraction=0, test_fraction=0)
    data.setup()
    assert data.input_shape == (1,)


def test_numeric_labels_sort_as_numbers_and_round_trip_through_state_dict(tmp_path):
    data = make_data(tmp_path, "a,y\n1,10\n2,2\n3,10\n4,2\n", target="y", task="classification")
    data.setup()
    assert data.class_names == ["2", "10"]
    assert data.save_description(tmp_path) == tmp_path / "data.json"
    assert json.loads((tmp_path / "data.json").read_text())["class_names"] == ["2", "10"]


def test_a_checkpoint_with_other_labels_is_refused(tmp_path):
    data = make_data(tmp_path, "a,y\n1,cat\n2,dog\n", target="y", task="classification")
    data.setup()
    with pytest.raises(DataError, match=r"trained with classes \['ant', 'bee'\].*\['cat', 'dog'\]"):
        data.load_state_dict({"class_names": ["ant", "bee"]})
    with pytest.raises(DataError, match=r"feature columns \['b'\], but the data now have \['a'\]"):
        data.load_state_dict({"feature_names": ["b"]})


# -- one clear error per problem ------------------------------------------------------------------

ERRORS = {
    "empty file": ("", {}, [r"data\.path: '.*data\.csv' has no rows \(the file is empty\)"]),
    "header only": ("a,y\n", {}, [r"'.*data\.csv' has no rows \(only a header line: 'a', 'y'\)"]),
    "unknown target": (
        "a,b,price\n1,2,3\n",
        {"target": "prise"},
        [r"data\.target=prise: no such column", r"Columns: 'a', 'b', 'price'", "data.target=price"],
    ),
    "no target given": (
        "a,b,price\n1,2,3\n",
        {"target": None},
        [r"data\.target: no target column given", r"data\.target=price \(columns of '.*': 'a'"],
    ),
    "unknown feature": (
        "a,b,y\n1,2,3\n",
        {"features": ["a", "c"]},
        [r"data\.features: no column 'c' in '.*data\.csv'\. Columns: 'a', 'b', 'y'"],
    ),
    "text in a listed feature": (
        "a,b,y\n1,2,3\n\n2,x,4\n",  # line numbers as an editor shows them
        {"features": ["a", "b"]},
        [r"data\.features: column 'b' holds numbers, but line 4 of '.*' holds 'x'"],
    ),
    "text target for regression": (
        "a,y\n1,2\n2,high\n",
        {"task": "regression"},
        [
            r"data\.target=y: column 'y' is not numeric \(line 3 .* 'high'\)",
            "data.task=classification",
        ],
    ),
    "text target after a dropped row": (
        "a,y\n1,\n2,3\n3,high\n",
        {"dropna": True, "task": "regression"},
        [r"column 'y' is not numeric \(line 4 of '.*' holds 'high'\)"],
    ),
    "rows longer than the header": (
        "a,y\n1,2\n3,4,5,6\n",
        {},
        [r"data\.path: line 3 of '.*data\.csv' has 4 fields but the header names 2 columns"],
    ),
    "missing values": (
        "a,b,y\n1,,3\n,2,5\n3,,7\n",
        {},
        [
            r"missing values .* 'a' \(1, first on line 3\), 'b' \(2, first on line 2\)",
            r"data\.dropna=true",
        ],
    ),
    "too few rows": (
        "a,y\n1,2\n2,3\n",
        {"val_fraction": 0.4, "test_fraction": 0.4},
        [r"data\.val_fraction=0\.4 and data\.test_fraction=0\.4 cannot split the 2 rows"],
    ),
    "a fraction that gives no row": (
        "a,y\n1,2\n2,3\n3,4\n",
        {"val_fraction": 0.1},
        [r"data\.val_fraction=0\.1 and data\.test_fraction=0 cannot split the 3 rows"],
    ),
    "a class too rare to stratify": (
        "a,y\n1,cat\n2,cat\n3,cat\n4,cat\n5,cat\n6,cat\n7,cat\n8,dog\n",
        {"task": "classification", "test_fraction": 0.25},
        [r"cannot split the 8 rows .*least populated class", r"data\.stratify=false"],
    ),
    "empty feature list": ("a,y\n1,2\n", {"features": []}, [r"data\.features=\[\]"]),
    "target listed as a feature": (
        "a,y\n1,2\n",
        {"features": ["a", "y"]},
        [r"data\.features: 'y' is the target"],
    ),
    "no usable feature": (
        "id,y\n1,2\n2,3\n",
        {},
        [r"data\.features: .* has no usable column besides the target 'y'"],
    ),
    "every row dropped": ("a,y\n1,\n,2\n", {"dropna": True}, [r"no rows are left"]),
    "one class": ("a,y\n1,cat\n2,cat\n", {"task": "classification"}, [r"one class only \('cat'\)"]),
    # Files read exactly or refused: pandas alone would read each of these silently.
    "every row longer than the header (scikit-learn's files)": (
        "3,cat\n1,2,0\n3,4,1\n5,6,0\n",
        {"target": "cat"},
        [r"every row of '.*' has 3 fields but its first line names 2 columns", "not a header"],
    ),
    "a short row": (
        "a,b,y\n1,2,3\n4,5\n6,7,8\n",
        {},
        [r"line 3 of '.*' has 2 fields but the header names 3 columns", "complete or remove"],
    ),
    "duplicate column names": (
        "a,b,a,y\n1,2,3,4\n",
        {},
        [r"columns 1 and 3 of '.*' are both named 'a'"],
    ),
    "an unnamed column that is not an index": (
        ",a,y\n0.5,1,2\n1.5,2,4\n",
        {},
        [r"column 1 of '.*' has no name in the header", r"""'data\.drop=\["Unnamed: 0"\]'"""],
    ),
    "infinity in a feature": (
        "a,y\n1,2\ninf,3\n",
        {},
        [r"column 'a' holds inf on line 3 of '.*'; features and targets must be finite"],
    ),
    "infinity in a class target": (
        "a,y\n1,0\n2,1\n3,inf\n",
        {"task": "classification"},
        [r"column 'y' holds inf on line 4 of '.*'; features and targets must be finite"],
    ),
    "continuous numbers as classes": (
        "a,y\n1,0.5\n2,1.25\n3,0\n",
        {"task": "classification"},
        [r"holds 0\.5 on line 2 of '.*', not a whole number", "data.task=regression"],
    ),
    "one distinct label per row": (
        "a,y\n" + "".join(f"{i / 4},{i}\n" for i in range(40)),
        {"task": "classification"},
        [r"holds 40 distinct values in 40 rows, about one per row"],
    ),
    "a dropped column that is not there": (
        "a,y\n1,2\n",
        {"drop": ["id"]},
        [r"data\.drop: no column 'id'"],
    ),
    "a file in another encoding": (
        "a,caf\xe9\n1,2\n".encode("latin-1"),
        {"target": "café"},
        [r"is not utf-8 text \(byte 0xe9", "data.encoding=latin-1"],
    ),
}


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"features": ["a"], "drop": ["b"]}, r"data\.drop=\['b'\]: data\.features already lists"),
        ({"task": "classification", "standardize_target": True}, r"standardize_target=true: .*"),
    ],
    ids=["drop-with-features", "standardize_target-for-classes"],
)
def test_values_that_would_be_ignored_are_refused(tmp_path, options, pattern):
    data = make_data(tmp_path, "a,b,y\n1,2,0\n2,3,1\n3,1,0\n4,2,1\n", target="y", **options)
    with pytest.raises(ConfigError, match=pattern):
        data.setup()


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_problem_is_one_clear_data_error(tmp_path, case):
    text, options, patterns = ERRORS[case]
    data = make_data(tmp_path, text, **{"target": "y", **options})
    with pytest.raises(DataError, match=patterns[0]) as error:
        data.setup()
    message = str(error.value)
    assert "\n" not in message
    for pattern in patterns[1:]:
        assert re.search(pattern, message), message


def test_no_path_given():
    with pytest.raises(
        DataError, match=r"data\.path: no CSV file given; pass one, e\.g\. data=csv"
    ):
        CsvData(target="y").setup()


def test_missing_file_names_the_path_and_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = CsvData(path="nope.csv", target="y")
    expected = f"data.path: no such file 'nope.csv' (relative paths are read from the directory you run in: {tmp_path})"
    with pytest.raises(DataError, match=re.escape(expected)):
        data.setup()


def test_the_rows_left_by_dropna_are_the_rows_that_are_split(tmp_path):
    text = "a,y\n1,2\n2,\n3,4\n"
    with pytest.raises(
        DataError, match=r"column\(s\) 'y' \(1, first on line 3\); set data\.dropna=true"
    ):
        make_data(tmp_path, text, target="y").setup()
    data = make_data(tmp_path, text, target="y", dropna=True, val_fraction=0.5, test_fraction=0.4)
    with pytest.raises(DataError, match="cannot split the 2 rows"):
        data.setup()


def test_unknown_task_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.task=regresion: unknown task; use data.task=auto"):
        make_data(tmp_path, "a,y\n1,2\n", target="y", task="regresion").setup()


def test_the_command_line_prints_the_error_in_one_line(tmp_path):
    # In a process of its own: the exit code and what the command line prints.
    result = run_cli("data=csv", "data.path=nope.csv", "data.target=y", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("Error:")]
    assert "data.path: no such file 'nope.csv'" in line


def test_fit_raises_the_error_the_command_line_prints(fit, capsys):
    # The command line prints "Error: " and this message, here without a CSV file given;
    # a ConfigError or DataError is what it exits with 2 for.
    with pytest.raises((ConfigError, DataError)) as caught:
        fit("data=csv")
    message = str(caught.value)
    assert "data.path: no CSV file given" in message and "\n" not in message
    output = capsys.readouterr()
    assert "Traceback" not in message + output.out + output.err
