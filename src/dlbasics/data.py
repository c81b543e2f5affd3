"""Datamodules: generated or scikit-learn data, held in memory as tensors.

Every datamodule derives from :class:`InMemoryDataModule`, which needs only
:meth:`~InMemoryDataModule.load_arrays` (features and targets as NumPy arrays). The base
splits them once with a fixed seed, standardises features with the training split's
statistics where that is the data's default, moves the tensors to the training device
once, and serves whole batches (see :mod:`dlbasics.batches`).

After :meth:`~InMemoryDataModule.setup` a datamodule reports what a model needs to be
built for it: :attr:`task`, :attr:`input_shape` and :attr:`num_outputs`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.model_selection import train_test_split

from dlbasics.batches import OrderedBatches, ShuffledChunks
from dlbasics.errors import DataError

Task = Literal["regression", "classification"]


class InMemoryDataModule(pl.LightningDataModule):
    """Base for datasets small enough to live in (device) memory.

    Args:
        task: ``"regression"`` (float targets, shape ``(N, outputs)``) or
            ``"classification"`` (integer class labels, shape ``(N,)``).
        batch_size: rows per optimizer step; ``None`` trains on the full training split.
        val_fraction, test_fraction: shares of all rows held out; ``0`` means no such split.
        standardize: scale tabular features to zero mean and unit variance using the
            training split's statistics only.
        standardize_target: also standardise regression targets (training statistics).
        stratify: keep class proportions in every split (classification only).
        shuffle: reshuffle the training rows every epoch.
        split_seed: seed of the train/val/test split (fixed, independent of the run's seed).
        shuffle_seed: seed of the per-epoch order of training rows.
        eval_batch_size: rows per validation/test batch (evaluation has no optimizer step).
        steps_per_chunk: minibatches served per Lightning step (see :mod:`dlbasics.batches`).
    """

    def __init__(
        self,
        task: Task,
        batch_size: int | None = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        standardize: bool = True,
        standardize_target: bool = False,
        stratify: bool = True,
        shuffle: bool = True,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        eval_batch_size: int = 4096,
        steps_per_chunk: int = 32,
    ) -> None:
        super().__init__()
        self.task = task
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.stratify = stratify
        self.shuffle = shuffle
        self.split_seed = split_seed
        self.shuffle_seed = shuffle_seed
        self.eval_batch_size = eval_batch_size
        self.steps_per_chunk = steps_per_chunk
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.num_classes: int | None = None
        self.class_names: list[str] = []  # class index -> original label (classification)

    # -- what subclasses provide ------------------------------------------------------

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return all features ``X`` (``(N, ...)``) and targets ``y`` (``(N,)`` or ``(N, k)``)."""
        raise NotImplementedError

    # -- what a model needs -------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, e.g. ``(2,)`` for moons or ``(1, 8, 8)`` for digits."""
        return tuple(self._split("train")[0].shape[1:])

    @property
    def num_outputs(self) -> int:
        """Number of classes (classification) or of target columns (regression)."""
        if self.task == "classification":
            return int(self.num_classes)
        return self._split("train")[1].shape[1]

    # -- Lightning hooks ----------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Load, split and standardise once; later calls (fit, then test) reuse the result."""
        if self.splits:
            return
        x, y = self.load_arrays()
        x = np.asarray(x, dtype=np.float32)
        if self.task == "classification":
            classes, y = np.unique(np.asarray(y), return_inverse=True)
            self.class_names = [str(label) for label in classes]
            self.num_classes = max(len(classes), 2)
            y = y.astype(np.int64)
        else:
            y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
        parts = self._split_rows(x, y)
        if self.standardize and x.ndim == 2:
            parts = _standardize(parts, column=0)
        if self.standardize_target and self.task == "regression":
            parts = _standardize(parts, column=1)
        self.splits = {
            name: (torch.from_numpy(a), torch.from_numpy(b)) for name, (a, b) in parts.items()
        }

    def train_dataloader(self) -> ShuffledChunks:
        x, y = self._on_device("train")
        batch_size = self.batch_size or len(x)  # None: full batch
        return ShuffledChunks(
            x, y, batch_size, self.steps_per_chunk, self.shuffle, self.shuffle_seed
        )

    def val_dataloader(self) -> OrderedBatches | list:
        return self._eval_batches("val")

    def test_dataloader(self) -> OrderedBatches | list:
        return self._eval_batches("test")

    def predict_dataloader(self) -> OrderedBatches | list:
        return self._eval_batches("test")

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # The tensors were moved to the training device once, in ``_on_device``.
        return batch

    # -- helpers ------------------------------------------------------------------------

    def has_split(self, name: str) -> bool:
        """Whether the ``val`` or ``test`` split holds any rows."""
        return name in self.splits and len(self.splits[name][0]) > 0

    def _split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.splits:
            self.setup()
        return self.splits[name]

    def _eval_batches(self, name: str) -> OrderedBatches | list:
        if not self.has_split(name):
            return []  # Lightning skips a loop whose loader is empty
        x, y = self._on_device(name)
        return OrderedBatches(x, y, self.eval_batch_size)

    def _on_device(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Move a split to the trainer's device once (a no-op on CPU) and keep it there."""
        x, y = self._split(name)
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        if x.device != device:
            x, y = x.to(device), y.to(device)
            self.splits[name] = (x, y)
        return x, y

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Split rows into train/val/test with ``split_seed`` (stratified for classes)."""
        n = len(x)
        n_val, n_test = round(n * self.val_fraction), round(n * self.test_fraction)
        for key, fraction, rows in (
            ("val", self.val_fraction, n_val),
            ("test", self.test_fraction, n_test),
        ):
            if fraction > 0 and rows == 0:
                raise DataError(
                    f"{n} rows are too few for data.{key}_fraction={fraction:g} (it gives 0 rows): "
                    f"use more rows or data.{key}_fraction=0"
                )
        if n - n_val - n_test < 1:
            raise DataError(
                f"{n} rows leave no training rows with data.val_fraction={self.val_fraction:g} "
                f"and data.test_fraction={self.test_fraction:g}"
            )
        stratify = self.task == "classification" and self.stratify
        empty = (x[:0], y[:0])

        def cut(xs: np.ndarray, ys: np.ndarray, size: int, seed: int):
            if size == 0:
                return (xs, ys), empty
            # Stratify only when every class can appear on both sides of the cut.
            strat = ys if stratify and size >= len(np.unique(ys)) else None
            try:
                a_x, b_x, a_y, b_y = train_test_split(
                    xs, ys, test_size=size, random_state=seed, stratify=strat
                )
            except ValueError as error:  # a class too rare to appear on both sides
                reason = str(error).strip().splitlines()[0]
                raise DataError(
                    f"{n} rows cannot be split by class ({reason}): use more rows, other "
                    "fractions, or data.stratify=false"
                ) from None
            return (a_x, a_y), (b_x, b_y)

        rest, test = cut(x, y, n_test, self.split_seed)
        train, val = cut(*rest, n_val, self.split_seed + 1)
        return {"train": train, "val": val, "test": test}


def _standardize(parts: dict, column: int) -> dict:
    """Scale ``column`` (0 = features, 1 = targets) by the training split's mean and std."""
    train = parts["train"][column]
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0).astype(np.float32)  # constant columns stay as they are
    scaled = {}
    for name, pair in parts.items():
        pair = list(pair)
        pair[column] = ((pair[column] - mean) / std).astype(np.float32)
        scaled[name] = tuple(pair)
    return scaled


class LinearData(InMemoryDataModule):
    """Synthetic linear data: ``y = x . weights + bias + noise``, ``x ~ N(0, 1)``.

    Not standardised by default, so a linear model's learned weights and bias can be
    read back in the data's own units and compared with ``weights`` and ``bias``.
    """

    def __init__(
        self,
        weights: list[float] = (2.0, -3.5),
        bias: float = 5.0,
        noise: float = 1.0,
        n_samples: int = 100,
        random_state: int = 0,
        standardize: bool = False,
        **split_options: Any,
    ) -> None:
        super().__init__(task="regression", standardize=standardize, **split_options)
        self.weights = list(weights)
        self.bias = bias
        self.noise = noise
        self.n_samples = n_samples
        self.random_state = random_state

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.random_state)
        x = rng.standard_normal((self.n_samples, len(self.weights)))
        y = (
            x @ np.asarray(self.weights)
            + self.bias
            + self.noise * rng.standard_normal(self.n_samples)
        )
        return x, y


class PointsData(InMemoryDataModule):
    """A handful of points written in the config, e.g. ``x: [[1], [2], [3]]``, ``y: [2, 4, 6]``."""

    def __init__(
        self,
        x: list,
        y: list,
        task: Task = "regression",
        standardize: bool = False,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        **split_options: Any,
    ) -> None:
        super().__init__(
            task=task,
            standardize=standardize,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            **split_options,
        )
        self.x, self.y = x, y

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.x, dtype=np.float64).reshape(len(self.x), -1), np.asarray(self.y)


class SklearnData(InMemoryDataModule):
    """Data from a scikit-learn function: a generator (``make_moons``) or a bundled set (``load_iris``).

    ``function`` names the function in :mod:`sklearn.datasets`; every keyword that is not a
    split option (``n_samples``, ``noise``, ``random_state``, ...) is passed on to it.
    Bundled sets are called with ``return_X_y=True``.
    """

    def __init__(self, function: str, task: Task, **kwargs: Any) -> None:
        base_options = inspect.signature(InMemoryDataModule.__init__).parameters
        options = {key: kwargs.pop(key) for key in list(kwargs) if key in base_options}
        super().__init__(task=task, **options)
        self.function = function
        self.function_kwargs = kwargs  # what is left belongs to the sklearn function

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        datasets = importlib.import_module("sklearn.datasets")
        make = getattr(datasets, self.function)
        if self.function.startswith(("load_", "fetch_")):
            x, y = make(return_X_y=True, **self.function_kwargs)
        else:
            x, y = make(**self.function_kwargs)[:2]
        return x, y


class DigitsData(InMemoryDataModule):
    """scikit-learn's 8x8 handwritten digits as ``1 x 8 x 8`` images scaled to ``[0, 1]``.

    ``model=mlp`` flattens them; ``model=cnn`` convolves them.
    """

    def __init__(self, **split_options: Any) -> None:
        super().__init__(task="classification", **split_options)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = digits.images[:, None, :, :] / 16.0  # pixel values are 0..16
        return images, digits.target
