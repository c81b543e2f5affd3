"""torchvision's image datasets, MNIST, Fashion-MNIST and CIFAR-10, held in memory.

torchvision's own dataset classes read them: downloaded once into ``data.root`` (checked
where torchvision checks, CIFAR-10 by MD5) and read from there offline afterwards. The
images become ``C x H x W`` arrays of pixels scaled to ``[0, 1]`` (as ``data=digits``), in
memory as the other datamodules' rows are, so the fast batch path serves them.
The official split is kept: its test images are the test split, and the validation split
is drawn from its training images (stratified by class, ``data.val_fraction``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlbasics.data.arrays import Split, split_rows
from dlbasics.data.base import InMemoryDataModule
from dlbasics.errors import DataError

# data.dataset -> torchvision's class
DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


class TorchvisionImages(InMemoryDataModule):
    """One of torchvision's image classification sets (:data:`DATASETS`).

    Args:
        dataset: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        root: the folder torchvision keeps it in (``<root>/MNIST/raw/...``,
            ``<root>/cifar-10-batches-py/...``).
        download: fetch it into ``root`` when it is not there yet.
        **split_options: the base's (``batch_size``, ``val_fraction``, ...);
            ``test_fraction`` has no effect: the official test images are the test split.
    """

    def __init__(self, dataset: str, root: str, download: bool = True, **split_options: Any):
        if dataset not in DATASETS:
            raise ValueError(f"dataset={dataset!r}: one of {', '.join(DATASETS)}")
        split_options.setdefault("standardize", False)  # pixels in [0, 1], as data=digits
        super().__init__(task="classification", **split_options)
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.download = download
        self._test_rows = 0

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        train, test = self._read(train=True), self._read(train=False)
        self.label_names = {str(index): str(name) for index, name in enumerate(train.classes)}
        self._test_rows = len(test)
        x = np.concatenate([_pixels(train), _pixels(test)])
        y = np.concatenate([np.asarray(train.targets), np.asarray(test.targets)])
        return x, y

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> Split:
        """The official test images as the test split; validation from the training ones."""
        rows = len(x) - self._test_rows
        parts = split_rows(
            x[:rows], y[:rows], self.val_fraction, 0.0, stratify=self.stratify,
            seed=self.split_seed,
        )  # fmt: skip
        parts["test"] = (x[rows:], y[rows:])
        return parts

    def _read(self, train: bool):
        """torchvision's dataset from ``root``; downloaded first if it is not there."""
        from torchvision import datasets

        kind = getattr(datasets, DATASETS[self.dataset])
        try:
            return kind(str(self.root), train=train, download=False)
        except RuntimeError as missing:  # "Dataset not found" (or, CIFAR-10, corrupted)
            if not self.download:
                raise DataError(self._not_there(kind, str(missing))) from None
        try:
            return kind(str(self.root), train=train, download=True)
        except Exception as error:  # no network, a proxy, a refused or truncated file
            reason = " ".join(str(error).split()) or type(error).__name__
            raise DataError(self._not_there(kind, f"downloading failed: {reason}")) from None

    def _not_there(self, kind, why: str) -> str:
        """One line: where the files go, their names and where they come from."""
        root = self.root.resolve()  # the folder a learner can open, whatever the cwd
        if hasattr(kind, "resources"):  # MNIST, Fashion-MNIST: four IDX files
            folder = root / kind.__name__ / "raw"
            names = ", ".join(name for name, _ in kind.resources)
            source = kind.mirrors[0]
        else:  # CIFAR-10: one archive, unpacked into root
            folder = root
            names = kind.filename
            source = kind.url.rsplit("/", 1)[0] + "/"
        return (
            f"data={self.dataset}: {kind.__name__} is not in {folder} ({why}); put {names} "
            f"there (from {source}), or point data.root at a folder that has them"
        )


def _pixels(dataset) -> np.ndarray:
    """A torchvision dataset's images as float32 ``N x C x H x W`` in ``[0, 1]``."""
    images = np.asarray(dataset.data)
    if images.ndim == 3:  # MNIST, Fashion-MNIST: N x H x W, one channel
        images = images[:, None]
    else:  # CIFAR-10: N x H x W x C
        images = images.transpose(0, 3, 1, 2)
    return images.astype(np.float32) / 255.0
