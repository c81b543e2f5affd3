"""Predict on new rows: ``python -m dlbasics.predict run=<run dir> input=<file.csv> [...]``

  run=DIR        the run directory whose model predicts
  model=FILE     or an exported model instead of a run: model.onnx or model.pt2 (the
                 JSON beside it names the columns); ONNX runs on onnxruntime, no torch
  input=FILE     a CSV file with a header line and the run's feature columns, by name
                 (any order; the target column may be there or not; other columns are
                 carried through to the output untouched)
  output=FILE    where the predictions go (default: <run dir>/predict/<input name>.csv)
  ckpt=CHOICE    best (default), last, or a .ckpt file

The output holds the input's columns, then predicted_<target> (the value for regression,
the class name for classification) and, for classification, probability_<class> per
class. The file is read and written in chunks (bounded memory, a progress bar); a missing
column, an empty or non-numeric feature value stops with the row and column, and nothing
is left at output.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics import commands
from dlbasics.errors import ConfigError, DataError
from dlbasics.saved_run import feature_columns, open_run

CHUNK_ROWS = 65_536  # rows read, predicted and written at a time: memory stays bounded
# Cells read as missing in a feature column (pandas' defaults, minus none): any of them stops.
_MISSING = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "-NaN", "-nan", "#N/A"]


@dataclass
class Model:
    """What predicts, and what its inputs and outputs mean (a run's data.json, or the
    JSON beside an exported model)."""

    predict: Any  # float32 (rows, features) -> (rows, outputs) probabilities or values
    description: dict[str, Any]
    name: str  # for messages: the checkpoint or the exported file

    @property
    def columns(self) -> list[str]:
        return feature_columns(self.description)

    @property
    def classes(self) -> list[str]:
        return list(self.description.get("class_names") or [])

    @property
    def target(self) -> str:
        return self.description.get("target_name") or "y"


def main(argv: list[str]) -> None:
    keys = ("run", "model", "input", "output", "ckpt")
    options, _ = commands.parse(argv, keys, "predict")
    if not options.get("input"):
        raise ConfigError("input= is required: the CSV file to predict on")
    source = Path(options["input"]).expanduser()
    if "run" in options and "model" in options:
        raise ConfigError("predict: give run= or model=, not both")
    description, default_output = describe(options)
    header = read_header(source, "input")
    check_columns(header, description, source)  # before torch or onnxruntime are imported
    output = Path(options.get("output") or default_output / f"{source.stem}.csv")
    if output.resolve() == source.resolve():
        raise ConfigError(f"output={output}: that is the input file; choose another name")

    model = load_model(options, description)
    check_output_names(header, model)
    started = time.perf_counter()
    rows = predict_file(model, source, output, header)
    seconds = time.perf_counter() - started
    print(
        f"Predicted {rows} rows with {model.name} in {seconds:.1f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s): {output}"
    )


def describe(options: dict[str, str]) -> tuple[dict[str, Any], Path]:
    """What the model's columns mean, read without torch, and the default output folder."""
    if options.get("model"):
        file = Path(options["model"]).expanduser()
        if not file.is_file():
            raise ConfigError(f"model={file}: no such file")
        sidecar = file.with_name(file.name + ".json")
        if not sidecar.is_file():
            raise ConfigError(
                f"model={file}: no {sidecar.name} beside it (export writes one, naming the "
                "columns the model reads)"
            )
        return json.loads(sidecar.read_text()), file.parent / "predict"
    saved = open_run(options.get("run"))
    saved.checkpoint(options.get("ckpt"))  # a missing checkpoint is reported now
    return saved.data_description(), saved.directory / "predict"


def load_model(options: dict[str, str], description: dict[str, Any]) -> Model:
    """The predicting function: a run's checkpoint (torch) or an exported file."""
    if options.get("model"):
        from dlbasics.export import load_exported

        file = Path(options["model"]).expanduser()
        return Model(load_exported(file), description, str(file))
    import torch

    trained = open_run(options["run"]).load(options.get("ckpt"))
    net = trained.raw_feature_model()

    @torch.inference_mode()
    def predict(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x)).numpy()

    return Model(predict, trained.description, str(trained.checkpoint))


# -- reading and checking the input -------------------------------------------------------


def read_header(file: Path, key: str) -> list[str]:
    """The column names of a CSV file, or a DataError naming ``key``."""
    import pandas as pd

    if not file.is_file():
        raise DataError(f"{key}={file}: no such file")
    try:
        return [str(name) for name in pd.read_csv(file, nrows=0).columns]
    except (pd.errors.EmptyDataError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{key}={file}: cannot be read as CSV ({error})") from None


def check_columns(header: list[str], description: dict[str, Any], file: Path) -> None:
    missing = [name for name in feature_columns(description) if name not in header]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(
            f"input={file}: missing feature column(s) {shown}; the model reads "
            f"{len(feature_columns(description))} columns by name: "
            f"{', '.join(feature_columns(description)[:10])}"
            f"{' ...' if len(feature_columns(description)) > 10 else ''}"
        )


def output_names(model: Model) -> list[str]:
    """The columns predict adds to the input's."""
    names = [f"predicted_{model.target}"]
    if model.classes:
        names += [f"probability_{name}" for name in model.classes]
    elif model.description.get("num_outputs", 1) > 1:
        names = [f"predicted_{model.target}_{i}" for i in range(model.description["num_outputs"])]
    return names


def check_output_names(header: list[str], model: Model) -> None:
    clash = [name for name in output_names(model) if name in header]
    if clash:
        raise DataError(
            f"input: already has column(s) {', '.join(clash)} that predict would add; "
            "rename or drop them"
        )


def chunks(file, columns: list[str], header: list[str]) -> Iterator[tuple[int, Any]]:
    """``(first row number, DataFrame)`` per chunk: feature columns as float64, every other
    column as its own text, so it is written back as it was read."""
    import pandas as pd

    dtypes = {name: (np.float64 if name in columns else str) for name in header}
    reader = pd.read_csv(
        file,
        dtype=dtypes,
        keep_default_na=False,
        na_values={name: _MISSING for name in columns},
        chunksize=CHUNK_ROWS,
        low_memory=False,
    )
    first = 1
    with reader:
        for frame in reader:
            yield first, frame
            first += len(frame)


def first_bad_cell(file: Path, columns: list[str]) -> str:
    """Where the first non-numeric feature value is (the slow path, after a failure)."""
    import pandas as pd

    first = 1
    reader = pd.read_csv(file, usecols=columns, dtype=str, keep_default_na=False,
                         chunksize=CHUNK_ROWS)  # fmt: skip
    with reader:
        for frame in reader:
            for name in columns:
                values = pd.to_numeric(frame[name].str.strip(), errors="coerce")
                bad = values.isna() & ~frame[name].str.strip().isin(_MISSING)
                if bad.any():
                    index = int(np.argmax(bad.to_numpy()))
                    return (
                        f"row {first + index} (line {first + index + 1}), column '{name}' "
                        f"holds {frame[name].iloc[index]!r}, which is not a number"
                    )
            first += len(frame)
    return "a feature value is not a number"


def features_of(frame, columns: list[str], first: int, source: Path) -> np.ndarray:
    """The chunk's feature matrix in the model's column order, float32, all finite."""
    x = frame[columns].to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        value = "empty" if np.isnan(x[row, column]) else f"{x[row, column]}"
        raise DataError(
            f"input={source}: row {first + row} (line {first + row + 1}), column "
            f"'{columns[column]}' is "
            f"{value}; the model needs a number in every feature column"
        )
    return x.astype(np.float32)


# -- predicting ---------------------------------------------------------------------------


def predict_file(model: Model, source: Path, output: Path, header: list[str]) -> int:
    """Stream ``source`` through ``model`` into ``output``; returns the rows predicted.

    The predictions are written to a temporary file beside ``output`` and moved into place
    at the end, so a failure (or Ctrl-C) leaves nothing at ``output``.
    """
    import pandas as pd
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from dlbasics.report import console

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    names = output_names(model)
    size = max(source.stat().st_size, 1)
    rows = 0
    progress = Progress(
        TextColumn("predicting"), BarColumn(), TextColumn("{task.fields[rows]:,} rows"),
        TimeRemainingColumn(), console=console, transient=True,
        disable=not console.is_terminal,  # a bar in a piped log is noise
    )  # fmt: skip
    try:
        with progress, source.open("rb") as handle, partial.open("w", encoding="utf-8") as out:
            task = progress.add_task("predict", total=size, rows=0)
            try:
                for first, frame in chunks(handle, model.columns, header):
                    outputs = model.predict(features_of(frame, model.columns, first, source))
                    frame = frame.assign(**dict(zip(names, _columns(model, outputs), strict=True)))
                    frame.to_csv(out, header=first == 1, index=False)
                    rows += len(frame)
                    # pandas reads the file in blocks: how far it got is close enough.
                    progress.update(task, completed=handle.tell(), rows=rows)
            except (ValueError, pd.errors.ParserError) as error:
                raise DataError(f"input={source}: {_reading_error(error, source, model)}") from None
            if rows == 0:
                raise DataError(f"input={source}: no rows below the header")
        partial.replace(output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def _columns(model: Model, outputs: np.ndarray) -> list[np.ndarray]:
    if model.classes:
        predicted = np.asarray(model.classes, dtype=object)[outputs.argmax(axis=1)]
        return [predicted, *outputs.T]
    return list(outputs.T)


def _reading_error(error: Exception, source: Path, model: Model) -> str:
    text = str(error)
    if "could not convert" in text or "Unable to parse" in text:
        return first_bad_cell(source, model.columns)
    return " ".join(text.split())[:200]


def cli() -> None:
    """Entry point of ``python -m dlbasics.predict`` and ``dlbasics-predict``."""
    commands.run(main, __doc__)


if __name__ == "__main__":
    cli()
