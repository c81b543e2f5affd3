"""Checking a run's data from the command line, before Lightning is imported.

Reading a user's CSV file takes pandas, not Lightning: :func:`check_data` reads and checks
it the way :class:`~dlbasics.data.CsvData` will, and tries the split, so a bad file or a
split it cannot give is reported within a second or two, before any run directory exists.
Generated data are checked for the split their row count allows; the rest of their checks
run when the run loads them.
"""

from __future__ import annotations

import inspect

import numpy as np
from omegaconf import DictConfig, OmegaConf

CSV_TARGETS = ("dlbasics.data.CsvData", "dlbasics.data.csv_file.CsvData")


def check_data(data: DictConfig) -> None:
    """Raise the DataError or ConfigError that loading ``data`` (``cfg.data``) would raise."""
    if data.get("_target_") not in CSV_TARGETS:
        check_generated_sizes(data)
        return
    from dlbasics.data.arrays import check_target_scaling, encode_labels
    from dlbasics.data.table import split_file_rows

    options = OmegaConf.to_container(data, resolve=True)
    table = _read(options)
    check_target_scaling(options.get("standardize_target", False), table.task)
    y = (
        encode_labels(table.y, f"data.target={table.target}")[0]
        if table.task == "classification"
        else table.y
    )
    parts = split_file_rows(
        np.arange(len(y))[:, None],
        y,
        table.path,
        options.get("val_fraction", 0.1),
        options.get("test_fraction", 0.1),
        stratify=table.task == "classification" and options.get("stratify", True),
        seed=options.get("split_seed", 0),
    )
    # The encoding learns from the training rows; a level only the others hold stops here.
    table.encode(table.encoding(parts["train"][0][:, 0]))


def check_generated_sizes(data: DictConfig) -> None:
    """Generated data name their row count (``n_samples``): a split it cannot give is
    reported from that number, before anything is generated or imported."""
    n = data.get("n_samples")
    if isinstance(n, int) and n > 0:
        from dlbasics.data.arrays import split_sizes

        split_sizes(n, data.get("val_fraction", 0.1), data.get("test_fraction", 0.1))


def check_file(data: DictConfig) -> None:
    """Raise the DataError or ConfigError that reading ``data``'s CSV file would raise.

    For data that are scored whole (``evaluate``), not trained on: a few rows of one class
    are fine there, so labels are not checked for training and no split is tried.
    """
    csv_task(data)


def csv_task(data: DictConfig) -> str | None:
    """The task CsvData will choose for ``data`` (``task=auto`` reads the file), or None
    for data that are not a CSV file."""
    if data.get("_target_") not in CSV_TARGETS:
        return None
    return _read(OmegaConf.to_container(data, resolve=True)).task


def _read(options: dict):
    from dlbasics.data.table import read_csv_data

    # The keys of conf/data/csv.yaml that say how to read the file, as CsvData passes them.
    reading = inspect.signature(read_csv_data).parameters
    return read_csv_data(**{key: value for key, value in options.items() if key in reading})
