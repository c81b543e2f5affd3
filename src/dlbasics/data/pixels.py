"""Images kept as uint8, turned into the model's float inputs one batch at a time.

MNIST's 70,000 images take 55 MB as uint8 and four times that as float32 (CIFAR-10: 184 MB
and 737 MB), so the image datamodules keep their pixels as stored and every batch is
converted where it is served: to ``[0, 1]`` and, with ``data.standardize``, standardised per
channel by the training split's mean and standard deviation. The conversion is two tensor
operations on the batch's device, small beside a convolution.
"""

from __future__ import annotations

import torch

from dlbasics.data.arrays import Scaling


class PixelInputs:
    """uint8 images (``N x C x H x W``, or ``K x N x C x H x W`` for stacked members) ->
    float32 pixels in ``[0, 1]``, standardised per channel by ``scaling`` where given."""

    def __init__(self, scaling: Scaling | None = None) -> None:
        self.mean = self.std = None
        if scaling is not None:  # C x 1 x 1 each: they apply to images as they are
            self.mean, self.std = torch.from_numpy(scaling.mean), torch.from_numpy(scaling.std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.to(torch.float32) / 255.0  # a new tensor: the stored one stays
        if self.mean is None:
            return pixels
        mean, std = self.mean.to(pixels.device), self.std.to(pixels.device)
        return pixels.sub_(mean).div_(std)
