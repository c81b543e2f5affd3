"""Predict on new rows with a trained run or an exported model.

usage: python -m dlbasics.predict run=<run dir> input=<file.csv> [output=<file.csv>] [ckpt=...]
       python -m dlbasics.predict model=<file.onnx|file.pt2> input=<file.csv> [output=...]
       python -m dlbasics.predict run=<run dir> input=<folder or image file> [output=...]

  run=DIR        the run directory whose model predicts
  model=FILE     or an exported model instead of a run: model.onnx or model.pt2 (the
                 JSON beside it names the columns); ONNX runs on onnxruntime, no torch
  input=FILE     a CSV file with a header line and the run's feature columns, by name
                 (any order; the target column may be there or not; other columns are
                 carried through to the output untouched); for a run of images, an image
                 file or a folder of them (read as the run read its own: its channels,
                 resized to its size)
  output=FILE    where the predictions go (default: <input name>.csv in <run dir>/predict/,
                 or with model= in predict/ beside the model file)
  ckpt=CHOICE    best (default), last, or a .ckpt file

The output holds the input's columns (for images: the file's path), then
predicted_<target> (the value for regression, the class name for classification) and, for
classification, probability_<class> per class. The file is read and written in chunks (bounded memory, a progress bar); a missing
column, an empty or non-numeric feature value stops with the row and column, and nothing
is left at output.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import io
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics.cli import commands
from dlbasics.errors import ConfigError, DataError
from dlbasics.using.saved_run import feature_columns, open_run, takes_images, target_name

CHUNK_ROWS = 16_384  # rows read, predicted and written at a time: memory stays bounded
# Cells read as missing in a feature column, as training read them (pandas' defaults and
# dlbasics.data.table.MISSING): filled in where the run imputed, otherwise they stop.
_MISSING = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "-NaN", "-nan", "#N/A"]
_MISSING += ["?", "-", ".", "--", "n.a."]


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
        return target_name(self.description)

    @functools.cached_property
    def encoding(self):
        """A table's encoding (categories, fill values), or None: the columns are numbers."""
        from dlbasics.data.encoding import TableEncoding

        encoding = TableEncoding.of(self.description)
        return None if encoding is None or encoding.is_identity else encoding

    @property
    def text_columns(self) -> list[str]:
        return [c.name for c in self.encoding.categories] if self.encoding else []

    # An exported ONNX graph with categories reads the raw columns (numbers and text);
    # everything else reads the encoded float32 matrix.
    takes_table: bool = False


def main(argv: list[str]) -> None:
    keys = ("run", "model", "input", "output", "ckpt")
    options, _ = commands.parse(argv, keys, "predict")
    output, rows, seconds, name = predict_to_file(options)
    print(
        f"Predicted {rows} rows with {name} in {seconds:.1f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s): {output}"
    )


def predict_to_file(options: dict[str, str]) -> tuple[Path, int, float, str]:
    """Predict ``options["input"]`` (a CSV file) with ``run=`` or ``model=``; returns the
    output file, the rows predicted, the seconds it took and what predicted."""
    if not options.get("input"):
        raise ConfigError("input= is required: the CSV file to predict on")
    source = Path(options["input"]).expanduser()
    if ("run" in options) == ("model" in options):
        raise ConfigError(
            "predict: give run=<run dir> (a checkpoint) or model=<file.onnx|file.pt2> (an "
            "export), one of them"
        )
    if "model" in options and "ckpt" in options:
        raise ConfigError("ckpt= picks a checkpoint of run=; model= is one file already")
    description, default_output = describe(options)
    files = image_files(source)
    if files is not None:
        return predict_images(options, description, default_output, source, files)
    header, sep = read_header(source, "input")
    check_columns(header, description, source)  # before torch or onnxruntime are imported
    output = Path(options.get("output") or default_output / f"{source.stem}.csv")
    if output.is_dir():
        raise ConfigError(f"output={output}: a folder; name the CSV file to write")
    if output.resolve() == source.resolve():
        raise ConfigError(f"output={output}: that is the input file; choose another name")

    model = load_model(options, description)
    check_output_names(header, model)
    started = time.perf_counter()
    rows = predict_file(model, source, output, header, sep, input_decimal(source, sep))
    return output, rows, time.perf_counter() - started, model.name


# What an input of images may be named: torchvision's ImageFolder's own suffixes (which
# data=images trains on), and GIF.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGE_CHUNK = 256  # images read and predicted at a time


def listed_images(files: list) -> list[Path]:
    """A list of image files given in Python, each checked: a ConfigError naming the first
    that is not an image file."""
    paths = [Path(file).expanduser() for file in files]
    for path in paths:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"predict: {path} is not an image file (PNG, JPEG, BMP, ...)")
        if not path.is_file():
            raise ConfigError(f"predict: {path}: no such file")
    return paths


def image_files(source: Path) -> list[Path] | None:
    """The images of ``input=``: a folder's (with its subfolders), or one image file; None
    when it names a table."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"input={source}: a folder without image files (PNG, JPEG, BMP, ...)")
        return files
    if source.suffix.lower() in IMAGE_SUFFIXES:
        if not source.is_file():
            raise ConfigError(f"input={source}: no such file")
        return [source]
    return None


def predict_images(
    options: dict[str, str], description: dict[str, Any], default_output: Path,
    source: Path | None, files: list[Path],
) -> tuple[Path, int, float, str]:  # fmt: skip
    """Predict each image file: one row per file, its path (within ``source`` if a folder;
    as given for a list of files, ``source=None``) then the model's outputs, written as
    :func:`predict_file` writes a table's."""
    from dlbasics.data.images import read_image

    if not takes_images(description):
        raise ConfigError(
            f"input={source}: images, but the run learned from samples shaped "
            f"{description.get('input_shape') or []} (a table); give it a CSV file of its columns"
        )
    channels, height, width = description["input_shape"]
    mode = "L" if channels == 1 else "RGB"
    named = f"{source.stem}.csv" if source else "images.csv"
    output = Path(options.get("output") or default_output / named)
    if output.is_dir():
        raise ConfigError(f"output={output}: a folder; name the CSV file to write")
    model = load_model(options, description)
    started = time.perf_counter()
    within = source if source is not None and source.is_dir() else None
    with written_whole(output) as out:
        out.write(_csv_fields(["path", *output_names(model)], ",") + b"\n")
        for start in range(0, len(files), IMAGE_CHUNK):
            chunk = files[start : start + IMAGE_CHUNK]
            pixels = np.stack([read_image(f, mode, (height, width), key="input") for f in chunk])
            outputs = model.predict(pixels.reshape(len(chunk), -1))
            names = [_csv_fields([str(f.relative_to(within) if within else f)], ",") for f in chunk]
            out.writelines(_with_predictions(names, model, outputs, ","))
    return output, len(files), time.perf_counter() - started, model.name


@contextlib.contextmanager
def written_whole(output: Path) -> Iterator:
    """A binary file to write ``output`` into: a temporary file beside it, moved into place
    when the block ends; a failure (or Ctrl-C) leaves nothing at ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as out:
            yield out
        partial.replace(output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


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
        from dlbasics.using.export import load_exported

        file = Path(options["model"]).expanduser()
        model = Model(load_exported(file, description), description, str(file))
        model.takes_table = bool(model.text_columns)
        return model
    import torch

    trained = open_run(options["run"]).load(options.get("ckpt"))
    net = trained.raw_feature_model()

    @torch.inference_mode()
    def predict(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x)).numpy()

    return Model(predict, trained.description, str(trained.checkpoint))


# -- reading and checking the input -------------------------------------------------------


def read_header(file: Path, key: str) -> tuple[list[str], str]:
    """The column names on the first line of a CSV file and its separator (, ; tab or |,
    as detected), or a DataError naming ``key``. Only that line is read: a problem further
    down is reported with its row when predicting reaches it."""
    from dlbasics.data.files import WHITESPACE, not_plain_text
    from dlbasics.data.table import resolve_separator

    if not file.is_file():
        raise DataError(f"{key}={file}: no such file")
    problem = not_plain_text(file)  # compressed, a workbook, UTF-16: not read line by line
    if problem:
        raise DataError(f"{key}={file}: {problem}")
    with file.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        first = handle.readline()
    if not first.strip():
        raise DataError(f"{key}={file}: the file is empty; it needs a header line of column names")
    sep = resolve_separator(file, None, "utf-8", notes=[])
    if sep == WHITESPACE:
        raise DataError(
            f"{key}={file}: its columns are separated by runs of spaces; this reads , ; tab "
            "or | separated files: save it with one of those"
        )
    return next(csv.reader([first], delimiter=sep)), sep


def input_decimal(file: Path, sep: str) -> str:
    """``,`` when the file writes its numbers ``12,5`` (as training detects it), else ``.``."""
    from dlbasics.data.files import decimal_comma

    if sep == ",":
        return "."
    with file.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        head = list(itertools.islice(csv.reader(handle, delimiter=sep), 2000))
    return "," if decimal_comma(head[1:]) else "."


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


@dataclass
class Chunk:
    """Up to :data:`CHUNK_ROWS` data lines of the input, as read (bytes), and where they are."""

    lines: list[bytes]
    first_row: int  # 1-based number of the chunk's first data row
    first_line: int  # the file line of its first row (the header is line 1)
    line_numbers: list[int] | None = None  # each row's line, where blank lines were skipped

    @functools.cached_property
    def text(self) -> bytes:
        """The lines as one block of bytes (what pandas parses)."""
        return b"".join(self.lines)

    def where(self, row: int) -> str:
        """ "row N (line L)" for the chunk's ``row``-th data row (0-based)."""
        line = self.line_numbers[row] if self.line_numbers else self.first_line + row
        return f"row {self.first_row + row} (line {line})"


def line_chunks(handle) -> Iterator[Chunk]:
    """The data lines left in ``handle``, :data:`CHUNK_ROWS` at a time, without blank lines
    (pandas would skip them), each row keeping the number of its line for messages."""
    row, line = 1, 2
    while raw := list(itertools.islice(handle, CHUNK_ROWS)):
        lines, numbers = raw, None
        if min(map(len, raw)) <= 2 and not all(map(bytes.strip, raw)):  # cheap test first
            numbers = [line + i for i, text in enumerate(raw) if text.strip()]
            lines = [text for text in raw if text.strip()]
        if lines:
            yield Chunk(lines, row, line, numbers)
        row += len(lines)
        line += len(raw)


def check_field_counts(chunk: Chunk, fields: int, sep: str, source: Path) -> None:
    """A DataError naming the first row with more or fewer fields than the header: pandas
    would silently drop the extra fields of a longer row, or pad a shorter one."""
    quoted = b'"' in chunk.text
    separators = map(bytes.count, chunk.lines, itertools.repeat(sep.encode()))
    if not quoted and set(separators) == {fields - 1}:
        return  # the common case, every line counted in C
    if quoted:  # count fields as CSV does: a quoted separator is part of a value
        text = io.StringIO(chunk.text.decode("utf-8", errors="replace"), newline="")
        counts = [len(record) for record in csv.reader(text, delimiter=sep)]
        if len(counts) != len(chunk.lines):
            raise DataError(
                f"input={source}: a quoted value spans lines, or a quote is not closed, near "
                f"{chunk.where(0)}; predict reads one row per line"
            )
    else:
        counts = [line.count(sep.encode()) + 1 for line in chunk.lines]
    row = next((i for i, count in enumerate(counts) if count != fields), None)
    if row is not None:
        raise DataError(
            f"input={source}: {chunk.where(row)} has {counts[row]} fields, but the header "
            f"names {fields} columns"
        )


def parse_features(
    chunk: Chunk,
    header: bytes,
    columns: list[str],
    sep: str,
    source: Path,
    texts=(),
    decimal: str = ".",
):
    """The chunk's feature columns as float64, ``texts`` (categories) as text (a DataFrame);
    an error names the row, its line and the column."""
    import pandas as pd

    text = io.BytesIO(header + chunk.text)
    options = {"sep": sep, "usecols": columns, "keep_default_na": False, "index_col": False}
    types = {name: str if name in texts else np.float64 for name in columns}
    try:
        return pd.read_csv(text, dtype=types, na_values=_MISSING, decimal=decimal, **options)
    except ValueError as error:  # a cell that is not a number: find it, the slow way
        text.seek(0)
        cells = pd.read_csv(text, dtype=str, **options)
        for name in (name for name in columns if name not in texts):
            values = cells[name].str.strip()
            bad = pd.to_numeric(values, errors="coerce").isna() & ~values.isin(_MISSING)
            if bad.any():
                row = int(np.argmax(bad.to_numpy()))
                raise DataError(
                    f"input={source}: {chunk.where(row)}, column '{name}' holds "
                    f"{cells[name].iloc[row]!r}, which is not a number"
                ) from None
        reason = " ".join(str(error).split())[:200]
        raise DataError(f"input={source}: rows from {chunk.where(0)}: {reason}") from None


def features_of(frame, model: Model, chunk: Chunk, source: Path):
    """The chunk's feature matrix in the model's column order, float32, all finite: a
    table's categories one-hot encoded and its gaps filled in as the run did (an unseen
    level or an unfilled gap names the row). An ONNX graph that encodes them itself gets
    the checked columns as they are."""
    columns = model.columns
    if model.encoding is not None:
        encoded = model.encoding.transform(frame, lambda row: f"input={source}: {chunk.where(row)}")
        return frame[columns] if model.takes_table else encoded.astype(np.float32)
    x = frame[columns].to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        value = "empty" if np.isnan(x[row, column]) else f"{x[row, column]}"
        raise DataError(
            f"input={source}: {chunk.where(row)}, column '{columns[column]}' is {value}; "
            "the model needs a number in every feature column"
        )
    return x.astype(np.float32)


# -- predicting ---------------------------------------------------------------------------


def predict_file(
    model: Model, source: Path, output: Path, header: list[str], sep: str, decimal: str = "."
) -> int:
    """Stream ``source`` through ``model`` into ``output``; returns the rows predicted.

    Each input line is written back as it was read, with the predictions appended, so
    every column the model does not read (an id, the target) is carried through byte for
    byte. The output goes to a temporary file beside ``output``, moved into place at the
    end: a failure (or Ctrl-C) leaves nothing at ``output``.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from dlbasics.training.report import console

    progress = Progress(
        TextColumn("predicting"), BarColumn(), TextColumn("{task.fields[rows]:,} rows"),
        TimeRemainingColumn(), console=console, transient=True,
        disable=not console.is_terminal,  # a bar in a piped log is noise
    )  # fmt: skip
    rows = 0
    # The loop makes millions of short-lived lists and tuples, none in a cycle; with torch and
    # Lightning loaded, the collector's passes over their objects would double its time.
    gc.freeze()
    try:
        with progress, source.open("rb") as handle, written_whole(output) as out:
            task = progress.add_task("predict", total=max(source.stat().st_size, 1), rows=0)
            first_line = handle.readline()
            added = sep.encode() + _csv_fields(output_names(model), sep)
            out.write(first_line.rstrip(b"\r\n") + added + b"\n")
            for chunk in line_chunks(handle):
                check_field_counts(chunk, len(header), sep, source)
                frame = parse_features(
                    chunk, first_line, model.columns, sep, source, model.text_columns, decimal
                )
                outputs = model.predict(features_of(frame, model, chunk, source))
                out.writelines(_with_predictions(chunk.lines, model, outputs, sep, decimal))
                rows += len(chunk.lines)
                progress.update(task, completed=handle.tell(), rows=rows)
            if rows == 0:
                raise DataError(f"input={source}: no rows below the header")
    finally:
        gc.unfreeze()
    return rows


def _with_predictions(
    lines: list[bytes], model: Model, outputs: np.ndarray, sep: str, decimal: str = "."
):
    """Each line as read, then its predictions: class name and probabilities, or values,
    with the input's decimal mark.

    ``%.9g`` writes every digit a float32 holds, so the file round-trips the model's output.
    """
    if decimal != ".":  # the slow way: the numbers apart from the line, then their mark
        empty = [b"" for _ in lines]
        added = _with_predictions(empty, model, outputs, sep)
        return [
            line.rstrip(b"\r\n") + tail.rstrip(b"\n").replace(b".", decimal.encode()) + b"\n"
            for line, tail in zip(lines, added, strict=True)
        ]
    # float64 first: NumPy turns float32 into Python floats at half the speed.
    values, sep_bytes = outputs.astype(np.float64).tolist(), sep.encode()
    if model.classes:
        names = [_csv_fields([name], sep) for name in model.classes]
        pattern = b"%s" + sep_bytes + b"%s" + (sep_bytes + b"%.9g") * len(model.classes) + b"\n"
        chosen = outputs.argmax(axis=1).tolist()
        return [
            pattern % (line.rstrip(b"\r\n"), names[best], *row)
            for line, best, row in zip(lines, chosen, values, strict=True)
        ]
    pattern = b"%s" + (sep_bytes + b"%.9g") * outputs.shape[1] + b"\n"
    return [pattern % (line.rstrip(b"\r\n"), *row) for line, row in zip(lines, values, strict=True)]


def _csv_fields(fields: list[str], sep: str) -> bytes:
    """``fields`` as one CSV row (quoted where needed), UTF-8, no line ending."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=sep, lineterminator="").writerow(fields)
    return buffer.getvalue().encode()


def cli() -> None:
    """Entry point of ``python -m dlbasics.predict`` and ``dlbasics-predict``."""
    commands.run(main, __doc__)
