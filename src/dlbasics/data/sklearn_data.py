"""scikit-learn's generators (``make_moons``) and bundled datasets (``load_iris``, digits)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import numpy as np

from dlbasics.data.arrays import Task
from dlbasics.data.base import InMemoryDataModule


class SklearnData(InMemoryDataModule):
    """Data from a scikit-learn function: a generator (``make_moons``) or a bundled set (``load_iris``).

    ``function`` names the function in :mod:`sklearn.datasets`; every keyword that is not a
    split option (``n_samples``, ``noise``, ``random_state``, ...) is passed on to it.
    Bundled sets also name their features and classes (``bmi``, ``setosa``).
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
            bundle = make(**self.function_kwargs)
            # Names that figures and predictions show: "bmi" rather than x3, "setosa" rather than 0.
            self.feature_names = [str(name) for name in bundle.get("feature_names", [])]
            names = bundle.get("target_names")
            if self.task == "classification" and names is not None:
                self.label_names = {str(i): str(name) for i, name in enumerate(names)}
            return np.asarray(bundle.data), np.asarray(bundle.target)
        if self.function == "make_regression":  # it can tell the coefficients it used
            x, y, coefficients = make(coef=True, **self.function_kwargs)
            self.true_weights = np.asarray(coefficients, dtype=float)
            self.true_bias = float(self.function_kwargs.get("bias", 0.0))
            return x, y
        return make(**self.function_kwargs)[:2]


class DigitsData(InMemoryDataModule):
    """scikit-learn's 8x8 handwritten digits as ``1 x 8 x 8`` images scaled to ``[0, 1]``.

    ``model=mlp`` flattens them; ``model=cnn`` convolves them.
    """

    def __init__(self, **split_options: Any) -> None:
        super().__init__(task="classification", **split_options)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # pixel_0_0 .. pixel_7_7, row by row: the columns predict reads an image from.
        self.feature_names = [str(name) for name in digits.feature_names]
        images = digits.images[:, None, :, :] / 16.0  # pixel values are 0..16
        return images, digits.target
