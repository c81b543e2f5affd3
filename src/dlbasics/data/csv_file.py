"""Your own data: a CSV file with a header line, one row per sample (``data=csv``).

``python -m dlbasics.train data=csv data.path=houses.csv data.target=price`` trains on
every numeric column except ``price``. Reading and checking the file is
:func:`dlbasics.data.table.read_csv_data`'s job; this datamodule adds the split, scaling
and batches of :class:`~dlbasics.data.base.InMemoryDataModule`, and writes what the run
used (columns in order, task, classes, scaling) to ``data.json`` beside the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics.data.arrays import Split
from dlbasics.data.base import InMemoryDataModule
from dlbasics.data.table import read_csv_data, split_file_rows

log = logging.getLogger("dlbasics.data")


class CsvData(InMemoryDataModule):
    """Features and a target read from a CSV file (see :func:`~dlbasics.data.table.read_csv_data`).

    Args:
        path: the CSV file; a relative path is read from the current working directory.
        target: the column to predict.
        task: ``"auto"`` (text labels or a few whole numbers -> classification, otherwise
            regression; the run log says which and why), ``"regression"`` or
            ``"classification"``.
        features: the input columns; ``None`` uses every numeric column except the target
            and ``drop`` (non-numeric ones are skipped with a warning).
        drop: columns never to use as features (e.g. an id or a saved index).
        dropna: drop rows with a missing value in a used column instead of stopping.
        sep: the separator; ``None`` detects it (``,`` ``;`` tab or ``|``).
        encoding: the file's text encoding.
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
        self.file: Path | None = None  # data.path resolved, once loaded

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Read the file, check the columns and return ``(features, targets)``."""
        table = read_csv_data(
            self.path,
            self.target,
            task=self.task,
            features=self.features,
            drop=self.drop,
            dropna=self.dropna,
            sep=self.sep,
            encoding=self.encoding,
        )
        for level, message in table.notes:
            log.log(level, message)
        self.file = table.path
        self.task = table.task
        self.feature_names = table.feature_names
        self.target_name = table.target
        if table.task_reason != "data.task":
            log.info("data.task=auto: %s, so the task is %s", table.task_reason, table.task)
        log.info(
            "data: %d rows of '%s'; target '%s'; %d feature(s) in order: %s",
            len(table.x),
            table.path,
            table.target,
            len(table.feature_names),
            ", ".join(table.feature_names),
        )
        return table.x, table.y

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> Split:
        """The base split; when the rows cannot be split, the message names the file."""
        return split_file_rows(
            x,
            y,
            self.file,
            self.val_fraction,
            self.test_fraction,
            stratify=self.task == "classification" and self.stratify,
            seed=self.split_seed,
        )
