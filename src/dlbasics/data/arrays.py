"""Arrays in, model-ready arrays out: labels, splits and scaling, with NumPy only.

Kept free of torch and Lightning, so the command line can run the same checks on a
user's data before the heavy imports (see :mod:`dlbasics.data.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dlbasics.errors import ConfigError, DataError

Task = Literal["regression", "classification"]
Split = dict[str, tuple[np.ndarray, np.ndarray]]


def check_finite(values: np.ndarray, what: str) -> None:
    """A DataError if ``values`` hold NaN or infinity (they would turn the loss into NaN)."""
    finite = np.isfinite(values)
    if finite.all():
        return
    position = np.argwhere(~finite)[0]
    row = int(position[0])
    raise DataError(
        f"{what}: row {row + 1} holds {values[tuple(position)]}, which is not a finite "
        "number; remove or fill in such values before training"
    )


def check_target_scaling(standardize_target: bool | str, task: str) -> None:
    """``standardize_target`` scales regression targets (``auto``: those, never class
    labels); class labels are left as they are, so ``true`` on a classification task would
    be silently ignored."""
    if isinstance(standardize_target, str) and standardize_target != "auto":
        raise ConfigError(
            f"data.standardize_target={standardize_target}: one of true, false or auto"
        )
    if standardize_target and standardize_target != "auto" and task == "classification":
        raise ConfigError(
            "data.standardize_target=true: the target holds class labels (classification), "
            "which are not scaled; leave it out (it is for regression targets)"
        )


def encode_labels(labels: np.ndarray, key: str = "data") -> tuple[np.ndarray, list[str]]:
    """Class labels -> indices ``0..K-1`` in sorted label order, and the labels as text.

    One class cannot be learned (and a model with one output would always be "right"),
    so fewer than two classes is a DataError naming ``key``.
    """
    classes, indices = np.unique(np.asarray(labels), return_inverse=True)
    if len(classes) < 2:
        only = f" ('{classes[0]}')" if len(classes) else ""
        raise DataError(
            f"{key}: the target holds one class only{only}; classification needs at least two"
        )
    return indices.astype(np.int64), [str(label) for label in classes]


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """The rows of the validation and test splits of ``n`` rows, or a DataError naming the
    keys when a split would get no row or no training row would be left."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    for key, fraction, rows in (("val", val_fraction, n_val), ("test", test_fraction, n_test)):
        if fraction > 0 and rows == 0:
            raise DataError(
                f"{n} rows are too few for data.{key}_fraction={fraction:g} (it gives 0 rows): "
                f"use more rows or data.{key}_fraction=0"
            )
    if n - n_val - n_test < 1:
        raise DataError(
            f"{n} rows leave no training rows with data.val_fraction={val_fraction:g} "
            f"and data.test_fraction={test_fraction:g}"
        )
    return n_val, n_test


def split_rows(
    x: np.ndarray,
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    stratify: bool,
    seed: int,
) -> Split:
    """Split rows into train/val/test with ``seed`` (stratified by class if asked).

    Raises a DataError naming the keys when the fractions give a split no row, or leave no
    training rows, or a class is too rare to stratify.
    """
    from sklearn.model_selection import train_test_split

    n = len(x)
    n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    empty = (x[:0], y[:0])

    def cut(xs: np.ndarray, ys: np.ndarray, size: int, cut_seed: int):
        if size == 0:
            return (xs, ys), empty
        # Stratify only when every class can appear on both sides of the cut.
        strat = ys if stratify and size >= len(np.unique(ys)) else None
        try:
            a_x, b_x, a_y, b_y = train_test_split(
                xs, ys, test_size=size, random_state=cut_seed, stratify=strat
            )
        except ValueError as error:  # a class too rare to appear on both sides
            reason = str(error).strip().splitlines()[0]
            raise DataError(
                f"{n} rows cannot be split by class ({reason}): use more rows, other "
                "fractions, or data.stratify=false"
            ) from None
        return (a_x, a_y), (b_x, b_y)

    rest, test = cut(x, y, n_test, seed)
    train, val = cut(*rest, n_val, seed + 1)
    return {"train": train, "val": val, "test": test}


@dataclass
class Scaling:
    """Standardisation by the training split's mean and standard deviation, per column."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray) -> Scaling:
        mean = train.mean(axis=0)
        std = train.std(axis=0)
        std = np.where(std > 0, std, 1.0)  # constant columns stay as they are
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def undo(self, values: np.ndarray) -> np.ndarray:
        """Back to the data's own units (what figures and predictions show)."""
        return (values * self.std + self.mean).astype(np.float32)

    @classmethod
    def of_pixels(cls, images: np.ndarray, rows_at_once: int = 4096) -> Scaling:
        """Each channel's mean and standard deviation of uint8 images ``N x C x H x W``, in
        pixel units of ``[0, 1]``, shaped ``C x 1 x 1`` so that they apply to images as they
        are. Summed a few thousand images at a time: no float copy of the whole set."""
        channels = images.shape[1]
        total, squares = np.zeros(channels), np.zeros(channels)
        for start in range(0, len(images), rows_at_once):
            part = images[start : start + rows_at_once].astype(np.float64) / 255.0
            total += part.sum(axis=(0, 2, 3))
            squares += np.square(part).sum(axis=(0, 2, 3))
        count = len(images) * images.shape[2] * images.shape[3]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std = np.where(std > 0, std, 1.0)  # a blank channel stays as it is
        shape = (channels, 1, 1)
        return cls(mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32))

    def to_dict(self) -> dict[str, list]:
        """Plain lists: one number per column, or per channel with the ``shape`` they
        apply in (images: ``[C, 1, 1]``)."""
        saved = {"mean": self.mean.ravel().tolist(), "std": self.std.ravel().tolist()}
        return saved if self.mean.ndim <= 1 else {**saved, "shape": list(self.mean.shape)}

    @classmethod
    def from_dict(cls, saved: dict[str, list]) -> Scaling:
        """The statistics :meth:`to_dict` wrote (a run's data.json or checkpoint)."""
        mean, std = np.float32(saved["mean"]), np.float32(saved["std"])
        if saved.get("shape"):
            mean, std = mean.reshape(saved["shape"]), std.reshape(saved["shape"])
        return cls(mean, std)


def scale_splits(parts: Split, column: int) -> tuple[Split, Scaling]:
    """Standardise ``column`` (0 = features, 1 = targets) of every split by the train split."""
    scaling = Scaling.fit(parts["train"][column])
    scaled = {}
    for name, pair in parts.items():
        pair = list(pair)
        pair[column] = scaling.apply(pair[column])
        scaled[name] = tuple(pair)
    return scaled, scaling
