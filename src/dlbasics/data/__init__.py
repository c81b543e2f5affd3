"""Datamodules: generated, scikit-learn and CSV data, held in memory as tensors.

One room per job:

* :mod:`~dlbasics.data.base`: :class:`InMemoryDataModule`, the Lightning datamodule every
  dataset here derives from (split, scale, serve whole batches);
* :mod:`~dlbasics.data.generated`: :class:`LinearData` and :class:`PointsData`;
* :mod:`~dlbasics.data.sklearn_data`: :class:`SklearnData` and :class:`DigitsData`;
* :mod:`~dlbasics.data.csv_file`: :class:`CsvData`, the user's own CSV file;
* :mod:`~dlbasics.data.images`: :class:`TorchvisionImages` (MNIST, Fashion-MNIST, CIFAR-10)
  and :class:`FolderImages` (the user's own folder of images);
* :mod:`~dlbasics.data.table` and :mod:`~dlbasics.data.arrays`: reading and checking a CSV
  file, labels, splits and scaling, with NumPy and pandas only, so the command line can
  check a user's data before Lightning is imported (:mod:`~dlbasics.data.checks`).

The classes are imported on first use (``dlbasics.data.CsvData`` works as a Hydra
``_target_``), so importing the light modules does not load Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "InMemoryDataModule": "base",
    "Task": "arrays",
    "LinearData": "generated",
    "PointsData": "generated",
    "SklearnData": "sklearn_data",
    "DigitsData": "sklearn_data",
    "CsvData": "csv_file",
    "TorchvisionImages": "images",
    "FolderImages": "images",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dlbasics.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dlbasics.data.{_WHERE[name]}"), name)
