"""Generated data: the linear-regression exercise and a handful of points written in a config."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlbasics.data.arrays import Task
from dlbasics.data.base import InMemoryDataModule


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
        self.true_weights, self.true_bias = np.asarray(self.weights, dtype=float), float(bias)
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
    """A handful of points written in the config, e.g. ``x: [[1], [2], [3]]``, ``y: [2, 4, 6]``.

    ``weights`` and ``bias``, if given, are the line the points come from (``y = 2x``:
    ``weights: [2]``, ``bias: 0``); figures draw it beside the fitted one.
    """

    def __init__(
        self,
        x: list,
        y: list,
        task: Task = "regression",
        standardize: bool = False,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        weights: list[float] | None = None,
        bias: float = 0.0,
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
        if weights is not None:
            self.true_weights, self.true_bias = np.asarray(weights, dtype=float), float(bias)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.x, dtype=np.float64).reshape(len(self.x), -1), np.asarray(self.y)
