"""Table columns -> the numbers a net reads: one-hot categories and filled-in missing values.

A :class:`TableEncoding` is fitted on the training rows only (the levels of each category,
the value that fills a missing cell), kept as plain JSON in ``data.json`` and in every
checkpoint, and applied the same way wherever the model meets raw rows: the run's own
validation and test rows, ``evaluate`` on another file, ``predict``, and the exported
ONNX graph (see :mod:`dlbasics.export`).

The encoded columns keep the table's order: a number stays one column (``age``), a
category becomes one column per level (``student=Yes``, ``student=No``), and levels seen
fewer than ``min_count`` times in training share one column (``region=(other)``).

Hand-written rather than scikit-learn's ``OneHotEncoder``: the fitted state must be plain
JSON (a run is read without pickles) and be mirrored operator by operator in ONNX.

NumPy and pandas only: the command line's pre-checks import it before torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dlbasics.errors import ConfigError, DataError

ENCODINGS = ("onehot", "none")
IMPUTERS = ("median", "mean", "most_frequent")
UNKNOWN = ("error", "ignore")
OTHER = "(other)"  # the shared column of a category's rare levels


@dataclass
class Column:
    """How one table column becomes encoded columns."""

    name: str
    kind: str  # "number" or "category"
    levels: list[str] = field(default_factory=list)  # category: one encoded column each
    rare: list[str] = field(default_factory=list)  # category: training levels put in OTHER
    fill: float | str | None = None  # the value of a missing cell (data.impute), or None

    @property
    def encoded_names(self) -> list[str]:
        if self.kind == "number":
            return [self.name]
        return [f"{self.name}={level}" for level in self.levels]

    def to_dict(self) -> dict[str, Any]:
        saved: dict[str, Any] = {"name": self.name, "kind": self.kind, "fill": self.fill}
        if self.kind == "category":
            saved.update(levels=self.levels, rare=self.rare)
        return saved


@dataclass
class TableEncoding:
    """The fitted encoding of a table's feature columns (see the module's docstring)."""

    columns: list[Column]
    unknown: str = "error"  # a level never seen in training: "error" or "ignore" (all zeros)

    # -- fitting -------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        categories: list[str],
        impute: str | None = None,
        min_count: int = 1,
        unknown: str = "error",
    ) -> TableEncoding:
        """Learn levels and fill values from ``frame`` (the training rows only).

        ``categories`` names the columns to one-hot encode (text, or whole numbers the user
        listed in ``data.categorical``); every other column is a number.
        """
        columns = []
        for name in frame.columns:
            values = frame[name]
            if name in categories:
                text = as_text(values).dropna()
                counts = text.value_counts()  # most frequent first; ties in order of appearance
                kept = [str(v) for v, n in counts.items() if n >= min_count]
                rare = [str(v) for v, n in counts.items() if n < min_count]
                levels = sorted(kept) + ([OTHER] if rare else [])
                fill = str(counts.index[0]) if impute and len(counts) else None
                if fill in rare:
                    fill = OTHER
                columns.append(Column(str(name), "category", levels, sorted(rare), fill))
            else:
                columns.append(Column(str(name), "number", fill=_fill(values, impute)))
        return cls(columns, unknown)

    # -- applying ------------------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        """The encoded columns in order: what the net's inputs mean."""
        return [name for column in self.columns for name in column.encoded_names]

    @property
    def input_columns(self) -> list[str]:
        """The table columns the encoding reads, in order."""
        return [column.name for column in self.columns]

    @property
    def categories(self) -> list[Column]:
        return [column for column in self.columns if column.kind == "category"]

    @property
    def numbers(self) -> list[Column]:
        return [column for column in self.columns if column.kind == "number"]

    @property
    def is_identity(self) -> bool:
        """Numbers only, nothing filled in: the encoded table is the table."""
        return not self.categories and all(c.fill is None for c in self.columns)

    def fill_values(self) -> list[float | None] | None:
        """Per encoded column, the number that fills a missing cell (None: none), or None
        when no number column is filled in: what the exported graph applies to NaN."""
        if all(c.fill is None for c in self.numbers):
            return None
        values: list[float | None] = []
        for column in self.columns:
            if column.kind == "number":
                values.append(column.fill)
            else:
                values += [None] * len(column.levels)
        return values

    def transform(self, frame: pd.DataFrame, where=None) -> np.ndarray:
        """``frame``'s columns -> a float64 matrix of :attr:`feature_names`.

        ``where(i)`` names row ``i`` for messages (e.g. "line 12 of 'x.csv'"). A missing
        cell without a fill value, or a level never seen in training (unless ``unknown`` is
        ``ignore``), is a DataError naming the row and the column.
        """
        where = where or (lambda i: f"row {i + 1}")
        blocks = []
        for column in self.columns:
            values = frame[column.name]
            if column.kind == "number":
                block = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
                if column.fill is not None:
                    block = np.where(np.isnan(block), column.fill, block)
                _check_present(np.isnan(block), column, where)
                blocks.append(block[:, None])
                continue
            text = as_text(values)
            if column.fill is not None:
                text = text.fillna(column.fill)
            _check_present(text.isna().to_numpy(), column, where)
            text = text.replace(dict.fromkeys(column.rare, OTHER)) if column.rare else text
            codes = pd.Index(column.levels).get_indexer(text)  # -1: never seen in training
            unseen = codes < 0
            if unseen.any() and self.unknown != "ignore":
                row = int(np.flatnonzero(unseen)[0])
                raise DataError(
                    f"{where(row)}: column '{column.name}' holds {text.iloc[row]!r}, a category "
                    f"never seen in training (levels: {_shown(column.levels)}); a run trained "
                    "with data.unknown_category=ignore encodes unseen levels as all zeros"
                )
            block = np.zeros((len(text), len(column.levels)))
            block[np.flatnonzero(~unseen), codes[~unseen]] = 1.0
            blocks.append(block)
        if not blocks:
            return np.zeros((len(frame), 0))
        return np.concatenate(blocks, axis=1)

    # -- saving --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"unknown": self.unknown, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def of(cls, description: dict[str, Any]) -> TableEncoding | None:
        """The encoding a run's data description (``data.json``, a checkpoint's, an
        export's sidecar) holds, or None for data that are numbers already."""
        saved = (description or {}).get("encoding")
        return cls.from_dict(saved) if saved else None

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TableEncoding:
        columns = [
            Column(
                c["name"], c["kind"], list(c.get("levels", [])), list(c.get("rare", [])), c["fill"]
            )
            for c in saved["columns"]
        ]
        return cls(columns, saved.get("unknown", "error"))


def as_text(values: pd.Series) -> pd.Series:
    """A column as text labels: ``3.0`` read from a whole-number column is the level ``3``."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole % 1 == 0).all():
            return values.map(lambda v: v if pd.isna(v) else str(int(v)))
    return values.map(lambda v: v if pd.isna(v) else str(v).strip())


def check_options(encoding: str, impute: str | None, min_count: Any, unknown: str) -> None:
    """A ConfigError naming the key of a bad choice."""
    if encoding not in ENCODINGS:
        raise ConfigError(
            f"data.categorical_encoding={encoding}: use onehot (one column per level) or none "
            "(text columns are left out)"
        )
    if impute is not None and impute not in IMPUTERS:
        raise ConfigError(
            f"data.impute={impute}: use one of {', '.join(IMPUTERS)}, or null to stop at a "
            "missing value"
        )
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ConfigError(
            f"data.min_category_count={min_count}: a whole number >= 1 (levels seen fewer "
            f"times in training share one column, {OTHER})"
        )
    if unknown not in UNKNOWN:
        raise ConfigError(
            f"data.unknown_category={unknown}: use error (stop, naming the row) or ignore "
            "(all zeros)"
        )


def _fill(values: pd.Series, impute: str | None) -> float | None:
    if impute is None:
        return None
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return 0.0
    if impute == "median":
        return float(numbers.median())
    if impute == "mean":
        return float(numbers.mean())
    return float(numbers.mode().iloc[0])  # most_frequent: the smallest of the most common


def _check_present(missing: np.ndarray, column: Column, where) -> None:
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{where(row)}: column '{column.name}' is empty (missing); the model was trained "
            "without filling in missing values (data.impute=median|mean|most_frequent does)"
        )


def _shown(levels: list[str]) -> str:
    return ", ".join(repr(level) for level in levels[:8]) + (" ..." if len(levels) > 8 else "")
