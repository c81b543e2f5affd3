"""K copies of one net, stacked into one net that trains them all at once.

The course's nets are launch-bound: a step of a small MLP is a few hundred microseconds of
overhead around a few microseconds of arithmetic. Stacking K members of the same shape
(each with its own initialisation) into batched weights costs little more per step than
one member: a linear layer becomes one ``torch.baddbmm`` over ``[K, in, out]`` weights, a
convolution one grouped convolution (``groups=K``).

:func:`stack_nets` builds the stacked net from K nets built the ordinary way (so member
``k`` starts exactly where a run with its seed starts). Every stacked parameter keeps its
member's name and adds a leading dimension of size K, so member ``k``'s weights are
``stacked.state_dict()[name][k]``. Inputs are ``[K, batch, *input_shape]``, outputs
``[K, batch, num_outputs]``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dlbasics.config.schema import ACTIVATIONS

# Layers that act on each element or each channel on its own: a stacked input goes
# through them unchanged (images are laid out as [batch, K * channels, H, W]).
_ELEMENTWISE = (
    *(getattr(nn, name) for name in ACTIVATIONS.values()),
    nn.Dropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.Identity,
)
_CONTAINERS = (nn.Sequential,)


class StackedLinear(nn.Module):
    """K ``nn.Linear`` layers: ``[K, batch, in]`` -> ``[K, batch, out]``."""

    def __init__(self, members: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]))
        self.bias = (
            nn.Parameter(torch.stack([m.bias.detach() for m in members]))
            if members[0].bias is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class StackedConv2d(nn.Module):
    """K ``nn.Conv2d`` layers as one grouped convolution.

    Takes ``[K, batch, C, H, W]`` (the net's input) or ``[batch, K * C, H, W]`` (a stacked
    layer's output) and returns ``[batch, K * out, H', W']``: member ``k``'s channels are
    the ``k``-th block, so pooling and activations act on each member's own channels.
    """

    def __init__(self, members: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = members[0]
        if first.groups != 1 or first.padding_mode != "zeros":
            raise ValueError("only plain convolutions (groups=1, zero padding) can be stacked")
        self.members = len(members)
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]))
        self.bias = (
            nn.Parameter(torch.stack([m.bias.detach() for m in members]))
            if first.bias is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # [K, batch, C, H, W] -> [batch, K * C, H, W]
            k, batch, channels, height, width = x.shape
            x = x.transpose(0, 1).reshape(batch, k * channels, height, width)
        weight = self.weight.flatten(0, 1)  # [K * out, C, kh, kw]
        bias = None if self.bias is None else self.bias.flatten()
        return F.conv2d(
            x, weight, bias, self.stride, self.padding, self.dilation, groups=self.members
        )


class StackedFlatten(nn.Module):
    """``nn.Flatten`` of K members: to ``[K, batch, features]``, from the net's input
    ``[K, batch, ...]`` or from stacked images ``[batch, K * C, H, W]``."""

    def __init__(self, members: int, after_convolution: bool) -> None:
        super().__init__()
        self.members = members
        self.after_convolution = after_convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.after_convolution:
            return x.reshape(x.shape[0], self.members, -1).transpose(0, 1)
        return x.flatten(2)


def stackable(net: nn.Module) -> str | None:
    """Why ``net`` cannot be stacked (its first layer that :func:`stack_nets` does not
    know), or None if it can."""
    for name, module in net.named_modules():
        if name and not isinstance(
            module, (nn.Linear, nn.Conv2d, nn.Flatten, *_ELEMENTWISE, *_CONTAINERS)
        ):
            return f"its layer {name} ({type(module).__name__})"
        if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) != (1, -1):
            return f"its layer {name} (a Flatten of other dimensions)"
    return None


def stack_nets(nets: Sequence[nn.Module]) -> nn.Module:
    """One net holding ``nets`` (same class and shapes) as K stacked members.

    The net's own ``forward`` is kept: its layers are replaced by stacked ones, which is
    why it must be built of the layers :func:`stackable` accepts, applied in the order
    they were registered (as :mod:`dlbasics.nets` builds them).
    """
    reason = stackable(nets[0])
    if reason:
        raise ValueError(f"{type(nets[0]).__name__} cannot be stacked: {reason}")
    stacked = copy.deepcopy(nets[0])
    after_convolution = False
    for name, module in list(stacked.named_modules()):
        members = [net.get_submodule(name) for net in nets]
        if isinstance(module, nn.Linear):
            replacement = StackedLinear(members)
        elif isinstance(module, nn.Conv2d):
            replacement, after_convolution = StackedConv2d(members), True
        elif isinstance(module, nn.Flatten):
            replacement = StackedFlatten(len(nets), after_convolution)
        else:
            continue
        parent, _, attribute = name.rpartition(".")
        setattr(stacked.get_submodule(parent), attribute, replacement)
    return stacked


def member_state(stacked: nn.Module, index: int) -> dict[str, torch.Tensor]:
    """Member ``index``'s weights, keyed as in its own net's ``state_dict`` (copies)."""
    return {name: tensor[index].clone() for name, tensor in stacked.state_dict().items()}


def view_member(stacked: nn.Module, member: nn.Module, index: int) -> nn.Module:
    """Make ``member``'s parameters views of member ``index`` of ``stacked``: it then
    always holds that member's current weights, at no cost (for figures and checkpoints
    taken during training). Returns ``member``."""
    for name, tensor in stacked.named_parameters():
        owner, _, attribute = name.rpartition(".")
        view = nn.Parameter(tensor.detach()[index], requires_grad=False)
        setattr(member.get_submodule(owner), attribute, view)
    return member
