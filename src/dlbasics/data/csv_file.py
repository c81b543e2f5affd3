"""Your own data: a CSV file with a header line, one row per sample (``data=csv``).

``python -m dlbasics.train data=csv data.path=houses.csv data.target=price`` trains on
every column except ``price``: numbers as they are, text one-hot encoded. Reading and
checking the file is :func:`dlbasics.data.table.read_csv_data`'s job; this datamodule
splits the rows, fits the encoding (:mod:`dlbasics.data.encoding`) on the training rows,
adds the scaling and batches of :class:`~dlbasics.data.base.InMemoryDataModule`, and
writes what the run used (columns in order, their encoding, task, classes, scaling) to
``data.json`` beside the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics.data.arrays import Split
from dlbasics.data.base import InMemoryDataModule
from dlbasics.data.encoding import TableEncoding
from dlbasics.data.table import CsvTable, read_csv_data, split_file_rows

log = logging.getLogger("dlbasics.data")


class CsvData(InMemoryDataModule):
    """Features and a target read from a CSV file (see :func:`~dlbasics.data.table.read_csv_data`).

    Args:
        path: the CSV file; a relative path is read from the current working directory.
        target: the column to predict.
        task: ``"auto"`` (text labels or a few whole numbers -> classification, otherwise
            regression; the run log says which and why), ``"regression"`` or
            ``"classification"``.
        features: the input columns; ``None`` uses every column except the target and
            ``drop``, leaving out identifiers and free text with a warning.
        drop: columns never to use as features (e.g. an id or a saved index).
        dropna: drop rows with a missing value in a used column instead of stopping.
        sep: the separator; ``None`` detects it (``,`` ``;`` tab ``|`` or runs of spaces,
            ``"space"``).
        encoding: the file's text encoding (a byte-order mark overrides it).
        decimal: the decimal mark, ``"."`` or ``","``; ``None`` detects ``12,5``.
        categorical: whole-number columns to one-hot encode as categories (text columns
            always are, unless ``categorical_encoding`` is ``"none"``).
        categorical_encoding: ``"onehot"`` or ``"none"`` (text columns left out).
        impute: fill missing feature cells with the training rows' ``"median"``,
            ``"mean"`` or ``"most_frequent"`` value (categories: their most frequent level).
        min_category_count: levels seen fewer times in training share one column.
        unknown_category: a level never seen in training: ``"error"`` or ``"ignore"``
            (all zeros).
        **split_options: the base class's keys (``batch_size``, ``val_fraction``,
            ``test_fraction``, ``standardize``, ...).
    """

    def __init__(
        self,
        path: str | None = None,
        target: str | None = None,
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
        **split_options: Any,
    ) -> None:
        super().__init__(task=task, **split_options)
        # Both are required, but checked when the data are loaded: an error raised here would
        # reach the user wrapped in Hydra's InstantiationException, with a traceback.
        self.path = None if path is None else str(path)
        self.target = target  # names as the user gave them; read_csv_data reads them as meant
        self.features = features
        self.drop = drop
        self.dropna = dropna
        self.sep = sep
        self.encoding = encoding
        self.decimal = decimal
        self.categorical = categorical
        self.categorical_encoding = categorical_encoding
        self.impute = impute
        self.min_category_count = min_category_count
        self.unknown_category = unknown_category
        self.file: Path | None = None  # data.path resolved, once loaded
        # Fitted on the training rows by load_arrays; evaluate sets the run's own first.
        self.table_encoding: TableEncoding | None = None
        self.table: CsvTable | None = None
        self.row_split: dict[str, np.ndarray] | None = None  # row positions of each split

    def read(self) -> CsvTable:
        """The file read and checked (:func:`~dlbasics.data.table.read_csv_data`)."""
        return read_csv_data(
            self.path,
            self.target,
            task=self.task,
            features=self.features,
            drop=self.drop,
            dropna=self.dropna,
            sep=self.sep,
            encoding=self.encoding,
            decimal=self.decimal,
            categorical=self.categorical,
            categorical_encoding=self.categorical_encoding,
            impute=self.impute,
            min_category_count=self.min_category_count,
            unknown_category=self.unknown_category,
        )

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Read the file, split its rows, fit the encoding on the training rows and return
        ``(encoded features, targets)`` of every row."""
        table = self.read()
        for level, message in table.notes:
            log.log(level, message)
        self.table = table
        self.file = table.path
        self.task = table.task
        self.target_name = table.target
        if table.task_reason != "data.task":
            log.info("data.task=auto: %s, so the task is %s", table.task_reason, table.task)
        if self.table_encoding is None:  # a run fits its own; evaluate brings the run's
            rows = np.arange(len(table.y))
            positions = self._split_positions(rows, table.y)
            self.row_split = positions
            self.table_encoding = table.encoding(positions["train"])
        x = table.encode(self.table_encoding)
        self.feature_names = self.table_encoding.feature_names
        described = [
            f"{c.name} ({len(c.levels)} levels)" if c.kind == "category" else c.name
            for c in self.table_encoding.columns
        ]
        log.info(
            "data: %d rows of '%s'; target '%s'; %d feature(s) in order: %s",
            len(x),
            table.path,
            table.target,
            len(described),
            ", ".join(described),
        )
        return x, table.y

    def describe(self) -> dict[str, Any]:
        """The base's description, and the table's columns and their fitted encoding."""
        described = super().describe()
        if self.table_encoding is not None:
            described["columns"] = self.table_encoding.input_columns
            described["encoding"] = self.table_encoding.to_dict()
        return described

    def raw_split(self, name: str):
        """A split's rows as the file has them (a DataFrame of the feature columns)."""
        if not self.splits:
            self.setup()
        return self.table.frame.iloc[self.row_split[name]]

    def _split_positions(self, rows: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Row positions of each split: the base's split of these rows, drawn before the
        encoding so that only the training rows teach it."""
        parts = split_file_rows(
            rows[:, None],
            y,
            self.file,
            self.val_fraction,
            self.test_fraction,
            stratify=self.task == "classification" and self.stratify,
            seed=self.split_seed,
        )
        return {name: part[0][:, 0] for name, part in parts.items()}

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> Split:
        """The split :meth:`load_arrays` drew (the encoding was fitted on its training rows);
        data scored whole with another run's encoding are split as the base splits."""
        if self.row_split is None:
            return split_file_rows(
                x, y, self.file, self.val_fraction, self.test_fraction,
                stratify=self.task == "classification" and self.stratify, seed=self.split_seed,
            )  # fmt: skip
        return {name: (x[rows], y[rows]) for name, rows in self.row_split.items()}
