"""Checking a run's data from the command line, before Lightning is imported.

Reading a user's CSV file takes pandas, not Lightning: :func:`check_data` reads and checks
it the way :class:`~dlbasics.data.CsvData` will, its labels and whether its rows are enough
for the split, so a bad file is reported within a second or two, before any run directory
exists. The split itself is drawn once, by the run (a class too rare to stratify, or a
category only the validation or test rows hold, is reported from there). Generated data are
checked for the split their row count allows; the rest of their checks run when the run
loads them.
"""

from __future__ import annotations

import inspect

from omegaconf import DictConfig, OmegaConf

from dlbasics.config.schema import Data as DEFAULT  # a data config's defaults

CSV_TARGETS = ("dlbasics.data.CsvData", "dlbasics.data.csv_file.CsvData")


def check_data(data: DictConfig) -> None:
    """Raise the DataError or ConfigError that loading ``data`` (``cfg.data``) would raise
    before drawing the split."""
    if data.get("_target_") == "dlbasics.data.FolderImages":
        check_image_folder(data)
        return
    if data.get("_target_") not in CSV_TARGETS:
        check_generated_sizes(data)
        return
    from dlbasics.data.arrays import check_target_scaling, encode_labels
    from dlbasics.data.table import check_split_sizes

    options = OmegaConf.to_container(data, resolve=True)
    table = _read(options)
    check_target_scaling(options.get("standardize_target", DEFAULT.standardize_target), table.task)
    if table.task == "classification":
        encode_labels(table.y, f"data.target={table.target}")
    check_split_sizes(len(table.y), table.path, *_fractions(options))


def check_image_folder(data: DictConfig) -> None:
    """``data=images`` needs ``data.path``, a folder (its images are checked as they load)."""
    from pathlib import Path

    from dlbasics.errors import ConfigError

    path = data.get("path")
    if not path:
        raise ConfigError(
            "data.path: data=images reads a folder with one subfolder per class; give it, "
            "e.g. data.path=photos (photos/cat/1.jpg, photos/dog/2.png, ...)"
        )
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        where = "" if folder.is_absolute() else f" (read from {Path.cwd()})"
        raise ConfigError(f"data.path={path}: no such folder{where}")


def check_generated_sizes(data: DictConfig) -> None:
    """Generated data name their row count (``n_samples``): a split it cannot give is
    reported from that number, before anything is generated or imported."""
    n = data.get("n_samples")
    if isinstance(n, int) and n > 0:
        from dlbasics.data.arrays import split_sizes

        split_sizes(n, *_fractions(data))


def _fractions(options) -> tuple[float, float]:
    """``val_fraction`` and ``test_fraction``, the datamodule's defaults where not given."""
    return (
        options.get("val_fraction", DEFAULT.val_fraction),
        options.get("test_fraction", DEFAULT.test_fraction),
    )


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
