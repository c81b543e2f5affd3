"""Augmentation of training images, drawn for each image and applied to a whole batch at once.

``data.augment=[flip, crop]``: each training minibatch is changed on its device before the
model sees it; validation and test images never are. torchvision's transforms draw one
random choice per call, so a batch passed to them whole shares one flip and one crop; here
every image draws its own, in a few tensor operations per batch (the batch stays where the
data are, on the GPU if there is one). The draws use torch's random generator, which the
checkpoints keep, so a resumed run goes on with the same draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

# How far ``crop`` moves an image: padded by this many pixels (zeros) on each side, then
# cut back to its size at a random offset (as the CIFAR-10 recipes' RandomCrop(32, padding=4)).
CROP_PADDING = 4


def flip(images: torch.Tensor) -> torch.Tensor:
    """Mirror each image left to right with probability 1/2."""
    chosen = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(chosen.view(-1, 1, 1, 1), images.flip(-1), images)


def crop(images: torch.Tensor, padding: int = CROP_PADDING) -> torch.Tensor:
    """Shift each image by up to ``padding`` pixels in each direction (zeros come in)."""
    count, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (count,), device=images.device)
    left = torch.randint(0, 2 * padding + 1, (count,), device=images.device)
    rows = (top[:, None] + torch.arange(height, device=images.device))[:, :, None]
    columns = (left[:, None] + torch.arange(width, device=images.device))[:, None, :]
    batch = torch.arange(count, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, columns].permute(0, 3, 1, 2)


# By the names the config checks accept (dlbasics.config.schema.AUGMENTATIONS).
AUGMENTATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"flip": flip, "crop": crop}


def augmentation(names: Sequence[str] | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The function applying ``names`` in order to a batch ``N x C x H x W`` (or, for the
    members of a seeds= run, ``K x N x C x H x W``); None for none."""
    if not names:
        return None
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; one of {', '.join(AUGMENTATIONS)}")
    steps = [AUGMENTATIONS[name] for name in names]

    def apply(images: torch.Tensor) -> torch.Tensor:
        stacked = images.dim() == 5
        batch = images.flatten(0, 1) if stacked else images
        for step in steps:
            batch = step(batch)
        return batch.view(images.shape) if stacked else batch

    return apply
