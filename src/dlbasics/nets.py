"""The course's three classic networks as plain ``torch.nn.Module``s.

They know nothing about Lightning, Hydra or the data: each is built from the
shape of one input sample (``input_shape``) and the number of outputs, so the
same net works with any dataset whose samples it can read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dlbasics.config.schema import ACTIVATIONS as ACTIVATION_MODULES

#: Activation names accepted by :class:`MLP` and :class:`CNN`, and their modules. The names
#: are listed once, without torch, in the config schema (which the checks read).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    name: getattr(nn, module) for name, module in ACTIVATION_MODULES.items()
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None


class LinearRegression(nn.Module):
    """One linear layer: ``y = x W^T + b``.

    Takes ``(batch, *input_shape)`` (flattened to ``(batch, n_features)``) and
    returns ``(batch, num_outputs)``. With a cross-entropy loss on top it is
    softmax (multinomial logistic) regression. ``bias=False`` fits ``y = x W^T`` through
    the origin.
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(math.prod(input_shape), num_outputs, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(x))


class MLP(nn.Module):
    """Multilayer perceptron: ``Linear -> activation [-> Dropout]`` per hidden size, then a linear head.

    Takes ``(batch, *input_shape)`` (images are flattened) and returns
    ``(batch, num_outputs)``. ``hidden_sizes=[]`` reduces it to :class:`LinearRegression`.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CNN(nn.Module):
    """Small convolutional network for ``C x H x W`` images.

    One block per entry of ``channels``: ``Conv2d(kernel_size, same padding) ->
    activation``, followed by ``MaxPool2d(pool_size)`` after every block listed
    in ``pool_after`` (default: the last block) while the image is still large
    enough to pool. Then ``Flatten -> Linear(hidden) -> activation -> Linear(num_outputs)``.

    Takes ``(batch, C, H, W)`` and returns ``(batch, num_outputs)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        pool_size: int = 2,
        pool_after: Sequence[int] | None = None,
        hidden: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(
                f"CNN needs images shaped (channels, height, width); got input_shape {tuple(input_shape)}"
            )
        in_channels, height, width = input_shape
        pool_after = {len(channels) - 1} if pool_after is None else set(pool_after)
        blocks: list[nn.Module] = []
        for index, out_channels in enumerate(channels):
            # padding="same" keeps H x W, so only pooling shrinks the image.
            blocks += [
                nn.Conv2d(in_channels, out_channels, kernel_size, padding="same"),
                make_activation(activation),
            ]
            if index in pool_after and min(height, width) >= pool_size:
                blocks.append(nn.MaxPool2d(pool_size))
                height, width = height // pool_size, width // pool_size
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(in_channels * height * width, hidden),
            make_activation(activation),
        ]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden, num_outputs))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class RawFeatureModel(nn.Module):
    """A trained net with its data's scaling folded in: raw rows in, predictions out.

    Takes ``(batch, n_features)`` in the data's own units (columns in training order, a
    table's categories one-hot encoded; image pixels flattened row by row), fills missing
    cells (NaN) where the run imputed them, standardises with the training split's statistics,
    reshapes them to ``input_shape`` and returns class probabilities (classification) or
    values in the target's own units (regression). ``predict`` and ``export`` both use it,
    so a shipped model and the checkpoint it came from give the same numbers.
    """

    def __init__(
        self,
        net: nn.Module,
        input_shape: Sequence[int],
        classification: bool,
        feature_scaling: dict | None = None,
        target_scaling: dict | None = None,
        fill: list[float | None] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.input_shape = [int(size) for size in input_shape]
        self.classification = classification
        # Identity statistics (0 and 1) where nothing was scaled keep one graph for every run.
        mean, std = _statistics(feature_scaling)
        self.register_buffer("feature_mean", mean)
        self.register_buffer("feature_std", std)
        mean, std = _statistics(target_scaling)
        self.register_buffer("target_mean", mean)
        self.register_buffer("target_std", std)
        # data.impute: a missing (NaN) cell of a filled-in column takes the training value.
        self.fills = fill is not None
        if fill is not None:
            self.register_buffer("fill", torch.tensor([v or 0.0 for v in fill]))
            self.register_buffer("filled", torch.tensor([v is not None for v in fill]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.fills:
            features = torch.where(torch.isnan(features) & self.filled, self.fill, features)
        # Shaped first: a table's statistics are per column, images' per channel (C x 1 x 1).
        x = (features.reshape(-1, *self.input_shape) - self.feature_mean) / self.feature_std
        output = self.net(x)
        if self.classification:
            return torch.softmax(output, dim=1)
        return output * self.target_std + self.target_mean


def _statistics(scaling: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    if scaling:
        from dlbasics.data.arrays import Scaling

        saved = Scaling.from_dict(scaling)  # per column, or per channel (C x 1 x 1)
        return torch.from_numpy(saved.mean), torch.from_numpy(saved.std)
    return torch.zeros(()), torch.ones(())
