"""Your own data: a CSV file with a header line, one row per sample (``data=csv``).

``python -m dlbasics.train data=csv data.path=houses.csv data.target=price`` trains on
every numeric column except ``price``. Class labels may be text (``data.task=classification``):
they become class indices in sorted order, and :attr:`CsvData.class_names` maps them back.

Every problem with the file is reported as one :class:`~dlbasics.errors.DataError` that
names the key to change (``data.path``, ``data.target``, ...) and what would work. Rows are
counted as a user counts them: ``row 1`` is the first row after the header; blank lines are
skipped (as pandas does) and not counted.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlbasics.data import InMemoryDataModule, Task
from dlbasics.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TASKS = ("regression", "classification")


class CsvData(InMemoryDataModule):
    """Features and a target read from a CSV file with :func:`pandas.read_csv`.

    Args:
        path: the CSV file; a relative path is read from the current working directory.
        target: the column to predict.
        task: ``"regression"`` (a numeric target) or ``"classification"`` (labels: numbers
            or text).
        features: the input columns; ``None`` uses every numeric column except the target
            (non-numeric ones are skipped with a warning).
        dropna: drop rows with a missing value in a used column instead of stopping.
        **split_options: the base class's keys (``batch_size``, ``val_fraction``,
            ``test_fraction``, ``standardize``, ...).
    """

    def __init__(
        self,
        path: str | None = None,
        target: str | None = None,
        task: Task = "regression",
        features: list[str] | str | None = None,
        dropna: bool = False,
        **split_options: Any,
    ) -> None:
        super().__init__(task=task, **split_options)
        # Both are required, but checked when the data are loaded: an error raised here would
        # reach the user wrapped in Hydra's InstantiationException, with a traceback.
        self.path = None if path is None else str(path)
        # A numeric header such as 2024 arrives from Hydra as an int.
        self.target = None if target is None else str(target)
        if isinstance(features, str):
            features = [features]  # `data.features=a` means one column
        self.features = None if features is None else [str(name) for name in features]
        self.dropna = dropna
        self.file: Path | None = None  # data.path resolved, once loaded
        self.feature_names: list[str] = []  # the columns used, in the order fed to the model

    # -- loading ------------------------------------------------------------------------

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Read the file, check the columns and return ``(features, targets)``."""
        if self.task not in TASKS:
            raise ConfigError(
                f"data.task={self.task}: unknown task; use data.task=regression or "
                "data.task=classification"
            )
        path = self.file = resolve_path(self.path)
        table = read_table(path)
        check_target_exists(table, self.target, path)
        if self.task == "regression":
            check_numeric_target(table[self.target], self.target)
        self.feature_names = self._feature_columns(table, path)
        used = self._drop_missing(table[[*self.feature_names, self.target]], path)
        x = used[self.feature_names].to_numpy(dtype=np.float64)
        if self.task == "classification":
            y = class_labels(used[self.target], self.target)  # the base maps them to indices
        else:
            y = used[self.target].to_numpy(dtype=np.float64)
        return x, y

    def _feature_columns(self, table: pd.DataFrame, path: Path) -> list[str]:
        """The listed feature columns (checked), or every other numeric column."""
        if self.features is not None:
            return checked_features(table, self.features, self.target, path)
        others = [name for name in table.columns if name != self.target]
        numeric = [name for name in others if pd.api.types.is_numeric_dtype(table[name])]
        skipped = [name for name in others if name not in numeric]
        if skipped:
            # Skipping is the useful default (ids, names, dates), but it must not go unnoticed.
            details = ", ".join(_describe_non_numeric(table[name]) for name in skipped)
            log.warning(
                "data.features=null: skipping non-numeric column(s) %s of '%s'. To use one as "
                "a feature, make its values numbers and list it in data.features.",
                details,
                path,
            )
        if not numeric:
            raise DataError(
                f"data.features: '{path}' has no numeric column besides the target "
                f"'{self.target}' (columns: {_names(table.columns)}); features must be numbers"
            )
        return numeric

    def _drop_missing(self, used: pd.DataFrame, path: Path) -> pd.DataFrame:
        """Drop rows with missing values if ``dropna``; otherwise name the columns that have them."""
        missing = used.isna().sum()
        missing = missing[missing > 0]
        if missing.empty:
            return used
        if not self.dropna:
            counts = ", ".join(f"'{name}' ({count})" for name, count in missing.items())
            raise DataError(
                f"'{path}' has missing values (empty cells, NA or NaN) in column(s) {counts}; "
                "set data.dropna=true to drop those rows, or fill them in"
            )
        kept = used.dropna()
        log.info(
            "data.dropna=true: dropped %d of %d rows of '%s'",
            len(used) - len(kept),
            len(used),
            path,
        )
        if kept.empty:
            raise DataError(f"data.dropna=true dropped every row of '{path}': no rows are left")
        return kept

    # -- splitting ----------------------------------------------------------------------

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The base split; when the rows cannot be split, the message names the file."""
        fractions = (
            f"data.val_fraction={self.val_fraction:g} and data.test_fraction="
            f"{self.test_fraction:g} cannot split the {len(x)} rows of '{self.file}'"
        )
        try:
            return super()._split_rows(x, y)
        except DataError as error:
            raise DataError(
                f"{fractions}: {error}; or add rows to the file (0 = no such split)"
            ) from None

    # -- class names: saved with checkpoints and beside the run ---------------------------

    def state_dict(self) -> dict[str, Any]:
        """What Lightning stores in a checkpoint: the columns used and the class labels."""
        return {"feature_names": list(self.feature_names), "class_names": list(self.class_names)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the class labels; refuse a file whose labels changed since the checkpoint."""
        saved = list(state_dict.get("class_names", []))
        if self.class_names and saved and saved != self.class_names:
            # Same indices, different labels: the model's outputs would mean other classes.
            raise DataError(
                f"the checkpoint was trained with classes {saved}, but data.path='{self.path}' "
                f"now has {self.class_names}; use the original file or start a new run"
            )
        self.class_names = saved or self.class_names
        self.feature_names = list(state_dict.get("feature_names", self.feature_names))

    def save_class_names(self, directory: str | Path) -> Path | None:
        """Write ``classes.json`` (``{"classes": [...]}``, index -> label) into ``directory``.

        Returns the file written, or ``None`` for regression (there are no classes).
        """
        if self.task != "classification" or not self.class_names:
            return None
        file = Path(directory) / "classes.json"
        file.write_text(json.dumps({"classes": self.class_names}, indent=2) + "\n")
        return file


# -- reading the file -----------------------------------------------------------------------


def resolve_path(path: str | None) -> Path:
    """The file for ``data.path``; relative paths are read from the current directory."""
    if not path:
        raise DataError(
            "data.path: no CSV file given; pass one, e.g. data=csv data.path=houses.csv "
            "data.target=price"
        )
    given = Path(path).expanduser()
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


def read_table(path: Path) -> pd.DataFrame:
    """Read the CSV file; an empty file or one without data rows is a DataError."""
    try:
        # index_col=False: a row with a trailing comma must not turn column 1 into the index.
        table = pd.read_csv(path, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"data.path: '{path}' has no rows (the file is empty)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise DataError(f"data.path: cannot read '{path}' as CSV: {reason}") from None
    if table.empty:
        raise DataError(
            f"data.path: '{path}' has no rows (only a header line: {_names(table.columns)})"
        )
    return table


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
            row, value = bad
            raise DataError(
                f"data.features: column '{name}' is not numeric: row {row} after the header "
                f"holds {value!r}; feature columns must hold numbers"
            )
    return list(features)


# -- column values ---------------------------------------------------------------------------


def first_non_numeric(column: pd.Series) -> tuple[int, str] | None:
    """``(row, value)`` of the first value that is neither a number nor missing, or None.

    ``row`` counts from 1 at the first row after the header.
    """
    if pd.api.types.is_numeric_dtype(column):
        return None
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()  # missing cells are reported separately
    if not bad.any():
        return None
    position = int(np.flatnonzero(bad.to_numpy())[0])
    # The table's index counts data rows from 0 (blank lines skipped); it survives dropna.
    return int(column.index[position]) + 1, str(column.iloc[position])


def check_numeric_target(column: pd.Series, target: str) -> None:
    """A regression target must hold numbers; text in it suggests classification."""
    bad = first_non_numeric(column)
    if bad is not None:
        row, value = bad
        raise DataError(
            f"data.target={target}: column '{target}' is not numeric (row {row} after the "
            f"header holds {value!r}), so it cannot be a regression target; for class labels "
            "use data.task=classification"
        )


def class_labels(column: pd.Series, target: str) -> np.ndarray:
    """The labels of a class column, of one type so that they sort well (numbers numerically)."""
    values = column.to_numpy()
    if pd.api.types.is_float_dtype(column) and np.all(values == np.round(values)):
        values = values.astype(np.int64)  # labels 0.0, 1.0 (a column that had NaNs) read as 0, 1
    elif not pd.api.types.is_numeric_dtype(column):
        values = values.astype(str)
    labels = np.unique(values)
    if len(labels) < 2:
        raise DataError(
            f"data.target={target}: column '{target}' holds one class only ('{labels[0]}'); "
            "classification needs at least two"
        )
    return values


def _describe_non_numeric(column: pd.Series) -> str:
    """``'city' (row 1 after the header: 'Paris')``: the column and its first non-numeric value."""
    bad = first_non_numeric(column)
    return (
        f"'{column.name}'"
        if bad is None
        else f"'{column.name}' (row {bad[0]} after the header: {bad[1]!r})"
    )


def _names(columns) -> str:
    """Column names quoted, so stray spaces show: ``'a', 'b', ' price'``."""
    return ", ".join(f"'{name}'" for name in columns)
