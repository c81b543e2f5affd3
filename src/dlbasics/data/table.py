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
import contextlib
import csv
import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlbasics.data import files
from dlbasics.data.arrays import Split, split_rows, split_sizes
from dlbasics.data.encoding import TableEncoding, check_options
from dlbasics.errors import ConfigError, DataError

TASKS = ("auto", "regression", "classification")
# `data.sep=tab` is easier to type than a quoted tab character; `space`: runs of spaces.
SEPARATOR_NAMES = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": r"\s+"}
# data.task=auto: whole numbers with at most this many distinct values are class labels.
MAX_AUTO_CLASSES = 20
# Cells read as missing, besides pandas' own ("", NA, N/A, n/a, NaN, null, ...): what
# R, SPSS and hand-made files write for "unknown".
MISSING = ["?", "-", ".", "--", "n.a."]


@dataclass
class CsvTable:
    """The columns read from a CSV file, and what was decided on the way.

    ``frame`` holds the feature columns as read (numbers as float64 with NaN where missing,
    categories as text); :meth:`encoding` fits the numbers a net reads on the training rows.
    """

    frame: pd.DataFrame = field(repr=False)  # feature columns of the used rows, raw
    y: np.ndarray  # targets: float64 (regression) or labels (classification)
    columns: list[str]  # the feature columns, in order
    categorical: list[str]  # those of them that are one-hot encoded
    target: str
    task: str
    task_reason: str  # why data.task=auto chose this task (or "set by data.task")
    path: Path
    separator: str
    lines: np.ndarray = field(repr=False)  # the file line of each row
    impute: str | None = None
    min_category_count: int = 1
    unknown_category: str = "error"
    # What a user should hear about the reading, as (logging level, message): the
    # datamodule logs them into the run's log; the pre-check before the run has no log.
    notes: list[tuple[int, str]] = field(default_factory=list)

    def encoding(self, rows: np.ndarray | None = None) -> TableEncoding:
        """The encoding fitted on ``rows`` (positions; the training split), else on all."""
        frame = self.frame if rows is None else self.frame.iloc[rows]
        return TableEncoding.fit(
            frame, self.categorical, self.impute, self.min_category_count, self.unknown_category
        )

    def encode(self, encoding: TableEncoding) -> np.ndarray:
        """Every row through ``encoding``; a DataError names the file line."""
        return encoding.transform(self.frame, self.where)

    def where(self, row: int) -> str:
        return f"line {self.lines[row]} of '{self.path}'"

    @property
    def x(self) -> np.ndarray:
        """All rows encoded with levels and fill values from all rows: a look at the table.
        Training fits them on the training split (:class:`~dlbasics.data.CsvData`)."""
        return self.encode(self.encoding())

    @property
    def feature_names(self) -> list[str]:
        """The encoded columns' names, as :attr:`x` has them."""
        return self.encoding().feature_names


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
    decimal: str | None = None,
    categorical: list[str] | str | None = None,
    categorical_encoding: str = "onehot",
    impute: str | None = None,
    min_category_count: int = 1,
    unknown_category: str = "error",
) -> CsvTable:
    """Read ``path`` and return features and target, or raise one clear error.

    Args mirror the keys of ``conf/data/csv.yaml``: ``task`` is ``auto`` (text labels or a
    few whole numbers -> classification, otherwise regression), ``regression`` or
    ``classification``; ``features`` lists the input columns (``None``: every usable column
    but the target and ``drop``: numbers, and text as categories; identifiers and free text
    are left out, saying why); ``sep`` and ``decimal`` (``.`` or ``,``) are detected when
    ``None``; ``categorical`` names
    whole-number columns to treat as categories too. Numeric column names (a header
    ``2024`` arrives from Hydra as an int) and a single name for a list are taken as the
    user meant them. An unchanged file read with the same arguments is read once.
    """
    global _last_read
    target = None if target is None else str(target)
    features, drop = column_names(features), column_names(drop) or []
    categorical = column_names(categorical) or []
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
    check_options(categorical_encoding, impute, min_category_count, unknown_category)
    if dropna and impute:
        raise ConfigError(
            f"data.dropna=true and data.impute={impute}: drop the rows with a missing value, "
            "or fill them in, not both"
        )
    check_encoding(encoding)
    decimal = files.check_decimal(decimal)
    file = resolve_path(path)
    status = file.stat()
    arguments = (file, status.st_mtime_ns, status.st_size, target, task, features, drop)
    arguments += (dropna, sep, encoding, tuple(categorical), categorical_encoding, impute)
    arguments += (min_category_count, unknown_category)
    arguments += (decimal,)
    if _last_read is not None and _last_read[0] == arguments:
        return _last_read[1]
    notes: Notes = []
    encoding = resolve_encoding(file, encoding, notes)
    separator = resolve_separator(file, sep, encoding, notes)
    header, lines = scan_layout(file, separator, encoding, notes)
    decimal = resolve_decimal(file, separator, encoding, decimal, notes)
    table = read_table(file, separator, encoding, header, lines, decimal, notes)
    check_target_exists(table, target, file)
    check_dropped(table, drop, target, file)
    check_categorical(table, categorical, target, file)
    task, reason = choose_task(table[target], target, file) if task == "auto" else (task, "data.task")
    if task == "regression":
        check_numeric_target(table[target], target, file)
    kinds = (
        checked_features(table, features, target, categorical, file)
        if features is not None
        else default_features(table, target, drop, categorical, categorical_encoding, file, notes)
    )
    names = list(kinds)
    used = drop_missing(table[[*names, target]], target, dropna, impute, file, notes)
    numbers = [name for name in names if kinds[name] == "number"]
    frame = used[names].copy()
    frame[numbers] = frame[numbers].astype(np.float64)
    check_finite_cells(used, numbers, frame[numbers].to_numpy(), file)
    if task == "classification":
        if pd.api.types.is_numeric_dtype(used[target]):
            check_finite_cells(used, [target], used[[target]].to_numpy(np.float64), file)
        y = class_labels(used[target], target, file)
    else:
        y = used[target].to_numpy(dtype=np.float64)
        check_finite_cells(used, [target], y[:, None], file)
    result = CsvTable(
        frame=frame,
        y=y,
        columns=names,
        categorical=[name for name in names if kinds[name] == "category"],
        target=target,
        task=task,
        task_reason=reason,
        path=file,
        separator=separator,
        lines=used.index.to_numpy(),
        impute=impute,
        min_category_count=min_category_count,
        unknown_category=unknown_category,
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


def resolve_encoding(file: Path, encoding: str, notes: Notes) -> str:
    """The encoding to read ``file`` with: ``data.encoding``, or the one its byte-order mark
    says. A file that is not CSV text (a workbook, UTF-16 without a mark, binary data) is a
    DataError here; a compressed one is read decompressed (:mod:`dlbasics.data.files`)."""
    return files.check_file(file, encoding, notes)


def resolve_separator(file: Path, sep: str | None, encoding: str, notes: Notes) -> str:
    """``data.sep`` as given (``tab`` etc. by name; ``space``: runs of spaces), or the
    separator detected in the file."""
    if sep is not None:
        separator = SEPARATOR_NAMES.get(str(sep), str(sep))
        if len(separator) != 1 and separator != files.WHITESPACE:
            raise ConfigError(
                f"data.sep={sep!r}: a separator is one character, e.g. 'data.sep=;' or "
                f"data.sep=tab (names: {', '.join(SEPARATOR_NAMES)})"
            )
        return separator
    try:
        with files.open_text(file, _python_encoding(encoding), errors="replace") as handle:
            sample = handle.read(64 * 1024)
    except files.DECOMPRESSION_ERRORS as error:
        raise files.broken(file, error) from None
    if "\n" in sample.rstrip("\r\n"):
        sample = sample[: sample.rstrip("\r\n").rfind("\n")]  # whole lines only
    try:
        separator = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        if not files.whitespace_separated(sample):
            return ","  # one column, or nothing to go by
        notes.append((
            logging.INFO,
            f"data.sep: the columns of '{file}' are separated by runs of spaces "
            "(data.sep=space)",
        ))  # fmt: skip
        return files.WHITESPACE
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
        with files.open_text(file, _python_encoding(encoding)) as handle:
            for line, fields in files.rows(handle, separator):
                if not fields or fields == [""]:
                    continue  # a blank line: pandas skips it too
                if header is None:
                    header = fields
                    continue
                if len(fields) > len(header):
                    longer.append((line, len(fields)))
                elif len(fields) < len(header):
                    shorter.append((line, len(fields)))
                lines.append(line)
    except UnicodeDecodeError:
        raise files.undecodable(file, encoding) from None
    except csv.Error as error:
        raise DataError(f"data.path: cannot read '{file}' as CSV: {error}") from None
    except files.DECOMPRESSION_ERRORS as error:
        raise files.broken(file, error) from None
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
    shown = "runs of spaces" if separator == files.WHITESPACE else repr(separator)
    if longer:
        (line, fields), count = longer[0], len(longer)
        if count == rows and len({f for _, f in longer}) == 1:
            row_names = (
                " (R's write.table writes row names without a header: write with row.names=FALSE)"
                if separator == files.WHITESPACE and fields == width + 1
                else ""
            )
            raise DataError(
                f"data.path: every row of '{file}' has {fields} fields but its first line names "
                f"{width} columns ({_names(header)}): the first line is not a header of these "
                f"rows (scikit-learn's bundled files start with counts). Replace it with a "
                f"line naming all {fields} columns{row_names}"
            )
        raise DataError(
            f"data.path: line {line} of '{file}' has {fields} fields but the header names "
            f"{width} columns ({count} of {rows} rows are longer); a comma inside a value "
            f"needs quotes. Fix that line or the header (separator: {shown}, "
            "set data.sep to change it)"
        )
    if shorter:
        (line, fields), count = shorter[0], len(shorter)
        raise DataError(
            f"data.path: line {line} of '{file}' has {fields} fields but the header names "
            f"{width} columns ({count} of {rows} rows are shorter); complete or remove the "
            f"line (separator: {shown}, set data.sep to change it)"
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


def resolve_decimal(
    file: Path, separator: str, encoding: str, decimal: str | None, notes: Notes
) -> str:
    """``data.decimal`` (checked by :func:`files.check_decimal`), or the decimal mark the
    numbers of the file use: ``,`` when most numbers with a fraction in a file not separated
    by commas are written ``12,5``."""
    if decimal == "," and separator == ",":
        raise ConfigError(
            f"data.decimal=',': the columns of '{file}' are separated by ',' too; set "
            "data.sep to the separator (e.g. 'data.sep=;'), or data.decimal=."
        )
    if decimal is not None or separator == ",":
        return decimal or "."
    sample = []
    with files.open_text(file, _python_encoding(encoding), errors="replace") as handle:
        for line, fields in files.rows(handle, separator):
            if line > 2000:
                break
            sample.append(fields)
    if not files.decimal_comma(sample[1:]):
        return "."
    notes.append((
        logging.INFO,
        f"data.decimal: the numbers of '{file}' are written with a decimal comma (12,5): "
        "read as numbers (data.decimal=. to read them as text)",
    ))  # fmt: skip
    return ","


def read_table(
    file: Path,
    separator: str,
    encoding: str,
    header: list[str],
    lines: list[int],
    decimal: str = ".",
    notes: Notes | None = None,
) -> pd.DataFrame:
    """The file as a DataFrame indexed by file line numbers (checked by :func:`scan_layout`).

    An empty last column without a name, which a separator at the end of every line (the
    header's too) makes, is left out, with a note."""
    try:
        with files.pandas_source(file) as (source, compression):
            table = pd.read_csv(
                source,
                sep=separator,
                encoding=encoding,
                index_col=False,
                na_values=MISSING,
                compression=compression,
                decimal=decimal,
            )
    except (pd.errors.ParserError, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        raise DataError(f"data.path: cannot read '{file}' as CSV: {reason}") from None
    except files.DECOMPRESSION_ERRORS as error:
        raise files.broken(file, error) from None
    if len(table) != len(lines) or len(table.columns) != len(header):
        # Both readers skip blank lines; anything else they disagree on is refused.
        raise DataError(
            f"data.path: '{file}' reads as {len(lines)} rows of {len(header)} fields but pandas "
            f"reads {len(table)} rows of {len(table.columns)}; check its quoting and blank lines"
        )
    table.index = pd.Index(lines, name="line")
    if len(header) > 1 and header[-1] == "" and table.iloc[:, -1].isna().all():
        table = table.iloc[:, :-1]
        if notes is not None:
            notes.append((
                logging.INFO,
                f"data.path: every line of '{file}' ends with {separator!r}, which makes an "
                "empty column without a name: left out",
            ))  # fmt: skip
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


def check_listed(table: pd.DataFrame, names: list[str], key: str, path: Path) -> None:
    """A DataError naming ``key`` (``data.drop``, ...) and the file's columns when one of
    ``names`` is not a column."""
    unknown = [name for name in names if name not in table.columns]
    if unknown:
        raise DataError(
            f"{key}: no column {_names(unknown)} in '{path}'. Columns: {_names(table.columns)}"
        )


def check_dropped(table: pd.DataFrame, drop: list[str], target: str, path: Path) -> None:
    check_listed(table, drop, "data.drop", path)
    if target in drop:
        raise DataError(f"data.drop: '{target}' is the target (data.target); it cannot be dropped")


def check_categorical(
    table: pd.DataFrame, categorical: list[str], target: str, path: Path
) -> None:
    check_listed(table, categorical, "data.categorical", path)
    if target in categorical:
        raise DataError(
            f"data.categorical: '{target}' is the target (data.target); list only input columns "
            "(a target of classes is chosen by data.task)"
        )


def choose_task(column: pd.Series, target: str, path: Path | None = None) -> tuple[str, str]:
    """``data.task=auto``: the task a column's values suggest, and why, in words."""
    values = column.dropna()
    distinct = values.nunique()
    if not pd.api.types.is_numeric_dtype(column):
        if mostly_numbers(column):
            # Numbers with a stray token: as classes they would make a many-class task
            # that learns nothing (a decimal comma did exactly that).
            line, value = first_non_numeric(column)
            raise DataError(
                f"data.target={target}: column '{target}' holds numbers, but line {line} of "
                f"'{path}' holds {value!r}; fix that cell (NA, ?, - or an empty cell mean "
                "missing), or set data.task=regression or data.task=classification"
            )
        return "classification", f"'{target}' holds text labels ({distinct} distinct)"
    whole = bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1) == 0))
    if whole and distinct <= MAX_AUTO_CLASSES and distinct <= len(values) / 2:
        return "classification", (
            f"'{target}' holds {distinct} distinct whole numbers (at most {MAX_AUTO_CLASSES} "
            "are taken as class labels)"
        )
    kind = "distinct whole numbers" if whole else "distinct values, not all whole numbers"
    return "regression", f"'{target}' holds numbers ({distinct} {kind})"


def column_kind(
    column: pd.Series, categorical: list[str], first: bool = False
) -> tuple[str, str]:
    """What a column is to the model, and why in words: ``number``, ``category``,
    ``identifier`` or ``free text`` (the last two are left out by default), or ``stray``
    (numbers with a stray word: refused, naming the line)."""
    name = str(column.name)
    if name in categorical:
        return "category", "listed in data.categorical"
    present = column.dropna()
    distinct = present.nunique()
    if pd.api.types.is_numeric_dtype(column):
        numbers = present.to_numpy(dtype=np.float64)
        whole = bool(np.isfinite(numbers).all()) and bool(np.all(np.mod(numbers, 1) == 0))
        whole = whole and len(numbers) > 0
        if _named_like_id(name) and whole:
            return "identifier", "named like an identifier"
        if first and whole and len(numbers) >= 10 and distinct == len(column):
            span = numbers.max() - numbers.min() + 1
            if span <= 2 * len(numbers):  # row numbers, perhaps shuffled: not a quantity
                return "identifier", "a unique whole number per row, in the first column"
        return "number", ""
    if mostly_numbers(column):
        return "stray", ""
    if distinct >= 10 and distinct > len(present) / 2:
        return "free text", f"{distinct} distinct values in {len(present)} rows"
    return "category", f"{distinct} levels"


def default_features(
    table: pd.DataFrame,
    target: str,
    drop: list[str],
    categorical: list[str],
    encoding: str,
    path: Path,
    notes: Notes,
) -> dict[str, str]:
    """Every usable column but the target and ``data.drop``, by kind (``number`` or
    ``category``); identifiers and free text are left out, each with a note saying why."""
    kinds: dict[str, str] = {}
    left_out: list[str] = []
    for position, name in enumerate(table.columns):
        if name == target or name in drop:
            continue
        kind, why = column_kind(table[name], categorical, first=position == 0)
        if kind == "stray":
            line, value = first_non_numeric(table[name])
            raise _stray_value(name, line, value, path)
        if kind == "number" and _unnamed(name):
            # Usually the index pandas writes with `to_csv()`, but these are not row numbers.
            raise DataError(
                f"data.features: column {position + 1} of '{path}' has no name in the header "
                f"(pandas reads it as '{name}'); name it in the header, or leave it out with "
                f"'data.drop=[\"{name}\"]'"
            )
        if kind == "category" and encoding == "none" and name not in categorical:
            left_out.append(f"'{name}' (text; data.categorical_encoding=none)")
        elif kind in ("identifier", "free text"):
            left_out.append(f"'{name}' ({kind}: {why})")
        else:
            kinds[name] = kind
    if left_out:
        notes.append((
            logging.WARNING,
            f"data.features=null: left out {', '.join(left_out)} of '{path}'; to use one, "
            "list the columns in data.features",
        ))  # fmt: skip
    if not kinds:
        raise DataError(
            f"data.features: '{path}' has no usable column besides the target "
            f"'{target}' (columns: {_names(table.columns)}); list the inputs in data.features"
        )
    return kinds


def checked_features(
    table: pd.DataFrame, features: list[str], target: str, categorical: list[str], path: Path
) -> dict[str, str]:
    """``data.features`` as given, after checking each column exists, by kind: numbers,
    or categories (text, or listed in ``data.categorical``)."""
    if not features:
        raise DataError(
            "data.features=[]: no feature columns; list at least one, or use "
            "data.features=null for every usable column"
        )
    check_listed(table, features, "data.features", path)
    if target in features:
        raise DataError(
            f"data.features: '{target}' is the target (data.target); list only input columns"
        )
    kinds = {}
    for name in features:
        kind, _ = column_kind(table[name], categorical)
        if kind == "stray":
            line, value = first_non_numeric(table[name])
            raise _stray_value(name, line, value, path)
        numeric = pd.api.types.is_numeric_dtype(table[name]) and name not in categorical
        kinds[name] = "number" if numeric else "category"
    return kinds


def drop_missing(
    used: pd.DataFrame, target: str, dropna: bool, impute: str | None, path: Path, notes: Notes
) -> pd.DataFrame:
    """Count the missing cells per column; then drop those rows (``dropna``), or keep the
    features' gaps for ``impute`` to fill (rows without a target are dropped), or stop."""
    missing = used.isna()
    counts = missing.sum()
    counts = counts[counts > 0]
    if counts.empty:
        return used
    where = ", ".join(
        f"'{name}' ({count}, first on line {used.index[missing[name].to_numpy()][0]})"
        for name, count in counts.items()
    )
    if not dropna and not impute:
        raise DataError(
            f"'{path}' has missing values (empty cells, NA, ?, - or .) in column(s) {where}; "
            "set data.dropna=true to drop those rows, data.impute=median (or mean, "
            "most_frequent) to fill them in, or fill them in the file"
        )
    notes.append((logging.INFO, f"data: missing values in column(s) {where} of '{path}'"))
    if impute:
        kept = used[used[target].notna()]
        filled = ", ".join(f"'{n}'" for n in counts.index if n != target)
        if filled:
            notes.append((
                logging.INFO,
                f"data.impute={impute}: filling in {filled} with the training rows' "
                f"{impute.replace('_', ' ')} (a category's most frequent level)",
            ))  # fmt: skip
        what = f"rows without a target ('{target}')"
    else:
        kept = used.dropna()
        what = "rows"
    dropped = len(used) - len(kept)
    if dropped:
        key = f"data.impute={impute}" if impute else "data.dropna=true"
        notes.append(
            (logging.INFO, f"{key}: dropped {dropped} of {len(used)} {what} of '{path}'")
        )
    if kept.empty:
        raise DataError(f"'{path}': no rows are left once rows with missing values are dropped")
    return kept


def check_finite_cells(
    used: pd.DataFrame, names: list[str], values: np.ndarray, path: Path
) -> None:
    """Infinite numbers (``inf``, ``1e999``) would make the loss NaN: name the cell. (Missing
    cells were dealt with already: dropped, or left for data.impute.)"""
    finite = ~np.isinf(values)
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
    with _naming_the_file(path, len(x), val_fraction, test_fraction):
        return split_rows(x, y, val_fraction, test_fraction, stratify, seed)


def check_split_sizes(n: int, path: Path | None, val_fraction: float, test_fraction: float):
    """The DataError :func:`split_file_rows` raises for ``n`` rows that the fractions cannot
    split (a split of no row, no training row left), found from the count alone."""
    with _naming_the_file(path, n, val_fraction, test_fraction):
        split_sizes(n, val_fraction, test_fraction)


@contextlib.contextmanager
def _naming_the_file(path: Path | None, n: int, val_fraction: float, test_fraction: float):
    try:
        yield
    except DataError as error:
        raise DataError(
            f"data.val_fraction={val_fraction:g} and data.test_fraction={test_fraction:g} "
            f"cannot split the {n} rows of '{path}': {error}; or add rows to the file "
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


def mostly_numbers(column: pd.Series) -> bool:
    """Text where most present cells are numbers: a numeric column with stray words."""
    present = column.dropna()
    if present.empty or pd.api.types.is_numeric_dtype(column):
        return False
    return bool(pd.to_numeric(present, errors="coerce").notna().mean() >= 0.5)


def _stray_value(name: str, line: int, value: str, path: Path) -> DataError:
    return DataError(
        f"data.features: column '{name}' holds numbers, but line {line} of '{path}' holds "
        f"{value!r}; fix or "
        f"empty that cell (NA, ?, - and . are read as missing), or list the column in "
        "data.categorical to use its values as categories"
    )


def _named_like_id(name: str) -> bool:
    """``id``, ``ID``, ``index``, ``OBS``, ``customer_id``, ``PassengerId``, ``Unnamed: 0``."""
    lowered = name.strip().lower()
    return (
        lowered in ("id", "index", "obs", "row", "rownames", "row.names", "unnamed: 0")
        or lowered.endswith(("_id", " id", ".id"))
        or (name.endswith("Id") and len(name) > 2)
    )


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
