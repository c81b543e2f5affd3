"""Reading a user's CSV file exactly, or refusing it in one line (pandas and NumPy only).

:func:`read_csv_data` is the whole job: find the file, detect the separator, check the
layout line by line (every row as long as the header, names unique and present), read it
with pandas, choose the task, pick and check the columns, and return the arrays. Every
problem is a :class:`~dlbasics.errors.DataError` (or a ConfigError for a bad option) that
names the key to change and, where there is one, the file's line number as an editor shows
it (line 1 is the header).

Free of torch and Lightning: the command line runs it before the heavy imports, so a bad
file is reported within a second or two and before any run directory exists.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlbasics.data.arrays import Split, split_rows
from dlbasics.errors import ConfigError, DataError

TASKS = ("auto", "regression", "classification")
# `data.sep=tab` is easier to type than a quoted tab character.
SEPARATOR_NAMES = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
# data.task=auto: whole numbers with at most this many distinct values are class labels.
MAX_AUTO_CLASSES = 20


@dataclass
class CsvTable:
    """The arrays read from a CSV file, and what was decided on the way."""

    x: np.ndarray  # features, float64, (rows, len(feature_names))
    y: np.ndarray  # targets: float64 (regression) or labels (classification)
    feature_names: list[str]
    target: str
    task: str
    task_reason: str  # why data.task=auto chose this task (or "set by data.task")
    path: Path
    separator: str
    lines: np.ndarray = field(repr=False)  # the file line of each row of x
    # What a user should hear about the reading, as (logging level, message): the
    # datamodule logs them into the run's log; the pre-check before the run has no log.
    notes: list[tuple[int, str]] = field(default_factory=list)


Notes = list[tuple[int, str]]
# The last file read, and the arguments that read it: the command line's pre-check and the
# run that follows in the same process share one reading of the file.
_last_read: tuple[tuple, CsvTable] | None = None


def read_csv_data(
    path: str | None,
    target: str | int | None,
    task: str = "auto",
    features: list[str] | str | None = None,
    drop: list[str] | str | None = None,
    dropna: bool = False,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> CsvTable:
    """Read ``path`` and return features and target, or raise one clear error.

    Args mirror the keys of ``conf/data/csv.yaml``: ``task`` is ``auto`` (text labels or a
    few whole numbers -> classification, otherwise regression), ``regression`` or
    ``classification``; ``features`` lists the input columns (``None``: every numeric column
    but the target and ``drop``); ``sep`` is detected when ``None``. Numeric column names
    (a header ``2024`` arrives from Hydra as an int) and a single name for a list are taken
    as the user meant them. An unchanged file read with the same arguments is read once.
    """
    global _last_read
    target = None if target is None else str(target)
    features, drop = column_names(features), column_names(drop) or []
    if features is not None and drop:
        raise ConfigError(
            f"data.drop={drop}: data.features already lists the columns to use, so nothing "
            "would be dropped; give data.features or data.drop, not both"
        )
    if task not in TASKS:
        raise ConfigError(
            f"data.task={task}: unknown task; use data.task=auto, data.task=regression or "
            "data.task=classification"
        )
    check_encoding(encoding)
    file = resolve_path(path)
    status = file.stat()
    arguments = (file, status.st_mtime_ns, status.st_size, target, task, features, drop)
    arguments += (dropna, sep, encoding)
    if _last_read is not None and _last_read[0] == arguments:
        return _last_read[1]
    notes: Notes = []
    separator = resolve_separator(file, sep, encoding, notes)
    header, lines = scan_layout(file, separator, encoding, notes)
    table = read_table(file, separator, encoding, header, lines)
    check_target_exists(table, target, file)
    check_dropped(table, drop, target, file)
    task, reason = choose_task(table[target], target) if task == "auto" else (task, "data.task")
    if task == "regression":
        check_numeric_target(table[target], target, file)
    feature_names = (
        checked_features(table, features, target, file)
        if features is not None
        else default_features(table, target, drop, file, notes)
    )
    used = drop_missing(table[[*feature_names, target]], dropna, file, notes)
    x = used[feature_names].to_numpy(dtype=np.float64)
    check_finite_cells(used, feature_names, x, file)
    if task == "classification":
        if pd.api.types.is_numeric_dtype(used[target]):
            check_finite_cells(used, [target], used[[target]].to_numpy(np.float64), file)
        y = class_labels(used[target], target, file)
    else:
        y = used[target].to_numpy(dtype=np.float64)
        check_finite_cells(used, [target], y[:, None], file)
    result = CsvTable(
        x=x,
        y=y,
        feature_names=feature_names,
        target=target,
        task=task,
        task_reason=reason,
        path=file,
        separator=separator,
        lines=used.index.to_numpy(),
        notes=notes,
    )
    _last_read = (arguments, result)
    return result


# -- the file and its layout -------------------------------------------------------------


def check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(
            f"data.encoding={encoding}: unknown text encoding; e.g. data.encoding=utf-8 or "
            "data.encoding=latin-1"
        ) from None


def resolve_path(path: str | None) -> Path:
    """The file for ``data.path``; relative paths are read from the current directory."""
    if not path:
        raise DataError(
            "data.path: no CSV file given; pass one, e.g. data=csv data.path=houses.csv "
            "data.target=price"
        )
    given = Path(str(path)).expanduser()
    file = given if given.is_absolute() else Path.cwd() / given
    if file.is_file():
        return file
    # The entry point does not change directory: say which one a relative path was read from.
    where = (
        ""
        if given.is_absolute()
        else f" (relative paths are read from the directory you run in: {Path.cwd()})"
    )
    if file.is_dir():
        raise DataError(f"data.path: '{path}' is a directory, not a CSV file{where}")
    raise DataError(f"data.path: no such file '{path}'{where}")


def resolve_separator(file: Path, sep: str | None, encoding: str, notes: Notes) -> str:
    """``data.sep`` as given (``tab`` etc. by name), or the separator detected in the file."""
    if sep is not None:
        separator = SEPARATOR_NAMES.get(str(sep), str(sep))
        if len(separator) != 1:
            raise ConfigError(
                f"data.sep={sep!r}: a separator is one character, e.g. 'data.sep=;' or "
                f"data.sep=tab (names: {', '.join(SEPARATOR_NAMES)})"
            )
        return separator
    with open(file, encoding=_python_encoding(encoding), errors="replace", newline="") as handle:
        sample = handle.read(64 * 1024)
    if "\n" in sample.rstrip("\r\n"):
        sample = sample[: sample.rstrip("\r\n").rfind("\n")]  # whole lines only
    try:
        separator = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","  # one column, or nothing to go by
    if separator != ",":
        notes.append(
            (logging.INFO, f"data.sep: the columns of '{file}' are separated by {separator!r}")
        )
    return separator


def scan_layout(
    file: Path, separator: str, encoding: str, notes: Notes
) -> tuple[list[str], list[int]]:
    """The header's column names and the file line of every data row.

    Every row must have as many fields as the header names columns: pandas would drop
    the extra fields of a longer row with only a warning, and fill a shorter one with
    missing values, so either would train on data the file does not say.
    """
    header: list[str] | None = None
    lines: list[int] = []
    longer, shorter = [], []  # (line, fields) of rows that do not fit the header
    try:
        with open(file, encoding=_python_encoding(encoding), newline="") as handle:
            reader = csv.reader(handle, delimiter=separator)
            for fields in reader:
                if not fields or fields == [""]:
                    continue  # a blank line: pandas skips it too
                if header is None:
                    header = fields
                    continue
                if len(fields) > len(header):
                    longer.append((reader.line_num, len(fields)))
                elif len(fields) < len(header):
                    shorter.append((reader.line_num, len(fields)))
                lines.append(reader.line_num)
    except UnicodeDecodeError as error:
        raise DataError(
            f"data.path: '{file}' is not {encoding} text (byte {error.object[error.start]:#x} "
            f"at position {error.start}); set data.encoding to the file's encoding, e.g. "
            "data.encoding=latin-1"
        ) from None
    except csv.Error as error:
        raise DataError(f"data.path: cannot read '{file}' as CSV: {error}") from None
    if header is None:
        raise DataError(f"data.path: '{file}' has no rows (the file is empty)")
    if not lines:
        raise DataError(f"data.path: '{file}' has no rows (only a header line: {_names(header)})")
    _check_row_lengths(file, header, len(lines), longer, shorter, separator)
    _check_names(file, header)
    numbers = [name for name in header if _is_number(name)]
    if len(numbers) >= max(2, len(header) // 2):
        notes.append((
            logging.WARNING,
            f"data.path: the first line of '{file}' has names that are numbers "
            f"({_names(numbers)}): if it is not a header naming each column (scikit-learn's "
            "bundled files start with counts), the columns are not what their names say",
        ))  # fmt: skip
    return header, lines


def _check_row_lengths(file, header, rows, longer, shorter, separator) -> None:
    width = len(header)
    if longer:
        (line, fields), count = longer[0], len(longer)
        if count == rows and len({f for _, f in longer}) == 1:
            raise DataError(
                f"data.path: every row of '{file}' has {fields} fields but its first line names "
                f"{width} columns ({_names(header)}): the first line is not a header of these "
                f"rows (scikit-learn's bundled files start with counts). Replace it with a "
                f"line naming all {fields} columns"
            )
        raise DataError(
            f"data.path: line {line} of '{file}' has {fields} fields but the header names "
            f"{width} columns ({count} of {rows} rows are longer); a comma inside a value "
            f"needs quotes. Fix that line or the header (separator: {separator!r}, "
            "set data.sep to change it)"
        )
    if shorter:
        (line, fields), count = shorter[0], len(shorter)
        raise DataError(
            f"data.path: line {line} of '{file}' has {fields} fields but the header names "
            f"{width} columns ({count} of {rows} rows are shorter); complete or remove the "
            f"line (separator: {separator!r}, set data.sep to change it)"
        )


def _check_names(file: Path, header: list[str]) -> None:
    """Column names must be unique: pandas would rename the second ``a`` to ``a.1``."""
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen and name != "":
            raise DataError(
                f"data.path: columns {seen[name]} and {position} of '{file}' are both named "
                f"'{name}' in the header; give each column its own name"
            )
        seen[name] = position


def read_table(
    file: Path, separator: str, encoding: str, header: list[str], lines: list[int]
) -> pd.DataFrame:
    """The file as a DataFrame indexed by file line numbers (checked by :func:`scan_layout`)."""
    try:
        table = pd.read_csv(file, sep=separator, encoding=encoding, index_col=False)
    except (pd.errors.ParserError, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        raise DataError(f"data.path: cannot read '{file}' as CSV: {reason}") from None
    if len(table) != len(lines) or len(table.columns) != len(header):
        # Both readers skip blank lines; anything else they disagree on is refused.
        raise DataError(
            f"data.path: '{file}' reads as {len(lines)} rows of {len(header)} fields but pandas "
            f"reads {len(table)} rows of {len(table.columns)}; check its quoting and blank lines"
        )
    table.index = pd.Index(lines, name="line")
    return table


# -- columns --------------------------------------------------------------------------------


def check_target_exists(table: pd.DataFrame, target: str | None, path: Path) -> None:
    """A DataError naming ``data.target`` and the available columns if it is not one."""
    if target is None:
        raise DataError(
            f"data.target: no target column given; name the column to predict, e.g. "
            f"data.target={table.columns[-1]} (columns of '{path}': {_names(table.columns)})"
        )
    if target in table.columns:
        return
    hint = difflib.get_close_matches(target, [str(c) for c in table.columns], n=1)
    maybe = f" Did you mean data.target={hint[0]}?" if hint else ""
    raise DataError(
        f"data.target={target}: no such column in '{path}'. "
        f"Columns: {_names(table.columns)}.{maybe}"
    )


def check_dropped(table: pd.DataFrame, drop: list[str], target: str, path: Path) -> None:
    unknown = [name for name in drop if name not in table.columns]
    if unknown:
        raise DataError(
            f"data.drop: no column {_names(unknown)} in '{path}'. Columns: {_names(table.columns)}"
        )
    if target in drop:
        raise DataError(f"data.drop: '{target}' is the target (data.target); it cannot be dropped")


def choose_task(column: pd.Series, target: str) -> tuple[str, str]:
    """``data.task=auto``: the task a column's values suggest, and why, in words."""
    values = column.dropna()
    distinct = values.nunique()
    if not pd.api.types.is_numeric_dtype(column):
        return "classification", f"'{target}' holds text labels ({distinct} distinct)"
    whole = bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1) == 0))
    if whole and distinct <= MAX_AUTO_CLASSES and distinct <= len(values) / 2:
        return "classification", (
            f"'{target}' holds {distinct} distinct whole numbers (at most {MAX_AUTO_CLASSES} "
            "are taken as class labels)"
        )
    kind = "distinct whole numbers" if whole else "distinct values, not all whole numbers"
    return "regression", f"'{target}' holds numbers ({distinct} {kind})"


def default_features(
    table: pd.DataFrame, target: str, drop: list[str], path: Path, notes: Notes
) -> list[str]:
    """Every numeric column but the target and ``data.drop``; others are skipped with a warning."""
    others = [name for name in table.columns if name != target and name not in drop]
    numeric = [name for name in others if pd.api.types.is_numeric_dtype(table[name])]
    skipped = [name for name in others if name not in numeric]
    for position, name in enumerate(table.columns):
        if name in numeric and _unnamed(name):
            # Usually the index pandas writes with `to_csv()`: row numbers, not a feature.
            raise DataError(
                f"data.features: column {position + 1} of '{path}' has no name in the header "
                f"(pandas reads it as '{name}'; DataFrame.to_csv() writes its index so unless "
                f"index=False). Leave it out with 'data.drop=[{name}]', or name it in the header"
            )
    if skipped:
        # Skipping is the useful default (ids, names, dates), but it must not go unnoticed.
        details = ", ".join(_describe_non_numeric(table[name]) for name in skipped)
        notes.append((
            logging.WARNING,
            f"data.features=null: skipping non-numeric column(s) {details} of '{path}'. To use "
            "one as a feature, make its values numbers and list it in data.features.",
        ))  # fmt: skip
    if not numeric:
        raise DataError(
            f"data.features: '{path}' has no numeric column besides the target "
            f"'{target}' (columns: {_names(table.columns)}); features must be numbers"
        )
    return numeric


def checked_features(
    table: pd.DataFrame, features: list[str], target: str, path: Path
) -> list[str]:
    """``data.features`` as given, after checking each column exists and holds numbers."""
    if not features:
        raise DataError(
            "data.features=[]: no feature columns; list at least one, or use "
            "data.features=null for every numeric column"
        )
    unknown = [name for name in features if name not in table.columns]
    if unknown:
        raise DataError(
            f"data.features: no column {_names(unknown)} in '{path}'. "
            f"Columns: {_names(table.columns)}"
        )
    if target in features:
        raise DataError(
            f"data.features: '{target}' is the target (data.target); list only input columns"
        )
    for name in features:
        bad = first_non_numeric(table[name])
        if bad is not None:
            line, value = bad
            raise DataError(
                f"data.features: column '{name}' is not numeric: line {line} of '{path}' "
                f"holds {value!r}; feature columns must hold numbers"
            )
    return list(features)


def drop_missing(used: pd.DataFrame, dropna: bool, path: Path, notes: Notes) -> pd.DataFrame:
    """Drop rows with missing values if ``dropna``; otherwise name the columns and lines."""
    missing = used.isna()
    counts = missing.sum()
    counts = counts[counts > 0]
    if counts.empty:
        return used
    if not dropna:
        where = ", ".join(
            f"'{name}' ({count}, first on line {used.index[missing[name].to_numpy()][0]})"
            for name, count in counts.items()
        )
        raise DataError(
            f"'{path}' has missing values (empty cells, NA or NaN) in column(s) {where}; "
            "set data.dropna=true to drop those rows, or fill them in"
        )
    kept = used.dropna()
    dropped = len(used) - len(kept)
    notes.append(
        (logging.INFO, f"data.dropna=true: dropped {dropped} of {len(used)} rows of '{path}'")
    )
    if kept.empty:
        raise DataError(f"data.dropna=true dropped every row of '{path}': no rows are left")
    return kept


def check_finite_cells(
    used: pd.DataFrame, names: list[str], values: np.ndarray, path: Path
) -> None:
    """Infinite numbers (``inf``, ``1e999``) would make the loss NaN: name the cell."""
    finite = np.isfinite(values)
    if finite.all():
        return
    row, column = np.argwhere(~finite)[0]
    raise DataError(
        f"column '{names[column]}' holds {values[row, column]} on line {used.index[row]} of "
        f"'{path}'; features and targets must be finite numbers: fix or remove that row"
    )


def column_names(columns: list[str] | str | int | None) -> list[str] | None:
    """``data.features=a`` means one column; numeric header names arrive from Hydra as ints."""
    if columns is None:
        return None
    if isinstance(columns, (str, int)):
        columns = [columns]
    return [str(name) for name in columns]


def split_file_rows(
    x: np.ndarray,
    y: np.ndarray,
    path: Path | None,
    val_fraction: float,
    test_fraction: float,
    stratify: bool,
    seed: int,
) -> Split:
    """:func:`~dlbasics.data.arrays.split_rows`, its errors naming the file's rows."""
    try:
        return split_rows(x, y, val_fraction, test_fraction, stratify, seed)
    except DataError as error:
        raise DataError(
            f"data.val_fraction={val_fraction:g} and data.test_fraction={test_fraction:g} "
            f"cannot split the {len(x)} rows of '{path}': {error}; or add rows to the file "
            "(0 = no such split)"
        ) from None


# -- column values ---------------------------------------------------------------------------


def first_non_numeric(column: pd.Series) -> tuple[int, str] | None:
    """``(line, value)`` of the first value that is neither a number nor missing, or None."""
    if pd.api.types.is_numeric_dtype(column):
        return None
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()  # missing cells are reported separately
    if not bad.any():
        return None
    position = int(np.flatnonzero(bad.to_numpy())[0])
    return int(column.index[position]), str(column.iloc[position])


def check_numeric_target(column: pd.Series, target: str, path: Path) -> None:
    """A regression target must hold numbers; text in it suggests classification."""
    bad = first_non_numeric(column)
    if bad is not None:
        line, value = bad
        raise DataError(
            f"data.target={target}: column '{target}' is not numeric (line {line} of '{path}' "
            f"holds {value!r}), so it cannot be a regression target; for class labels "
            "use data.task=classification"
        )


def class_labels(column: pd.Series, target: str, path: Path) -> np.ndarray:
    """The labels of a class column, of one type so that they sort well (numbers numerically).

    A column that looks like a quantity (numbers that are not whole, or about one distinct
    value per row) is refused: trained as classes it would learn nothing and say so late.
    """
    values = column.to_numpy()
    distinct = column.nunique()
    if pd.api.types.is_numeric_dtype(column):
        fractional = np.mod(values.astype(np.float64), 1) != 0
        if fractional.any():
            line = column.index[int(np.flatnonzero(fractional)[0])]
            raise DataError(
                f"data.target={target}: column '{target}' holds {values[fractional][0]} on "
                f"line {line} of '{path}', not a whole number: it looks like a quantity, not "
                "class labels; use data.task=regression (or data.task=auto)"
            )
        values = values.astype(np.int64)  # labels 0.0, 1.0 (a column that had NaNs) read as 0, 1
    else:
        values = values.astype(str)
    if distinct > MAX_AUTO_CLASSES and distinct > len(values) / 2:
        raise DataError(
            f"data.target={target}: column '{target}' holds {distinct} distinct values in "
            f"{len(values)} rows, about one per row: not class labels; use data.task=regression "
            "for a quantity, or choose another target column"
        )
    return values  # one class only is refused with every dataset's: encode_labels


def _describe_non_numeric(column: pd.Series) -> str:
    """``'city' (line 2: 'Paris')``: the column and its first non-numeric value."""
    bad = first_non_numeric(column)
    return f"'{column.name}'" if bad is None else f"'{column.name}' (line {bad[0]}: {bad[1]!r})"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _unnamed(name: str) -> bool:
    """pandas' name for a column without a header name: ``Unnamed: 0``."""
    return str(name).startswith("Unnamed: ") and str(name)[9:].isdigit()


def _python_encoding(encoding: str) -> str:
    """pandas skips a UTF-8 byte-order mark by itself; Python's csv reader needs telling."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _names(columns) -> str:
    """Column names quoted, so stray spaces show: ``'a', 'b', ' price'``."""
    return ", ".join(f"'{name}'" for name in columns)
