"""Refusing a model too big for the machine before any of its memory is allocated.

``model.hidden_sizes=[100000000]`` would otherwise allocate until the operating system
kills the process. The net is built on PyTorch's ``meta`` device (shapes only) and one
sample is run through it there, which counts parameters and activations exactly for any
``nn.Module``, the user's own included.
"""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig

from dlbasics.errors import ConfigError

BYTES_PER_NUMBER = 4  # float32
# Weights, their gradients and up to two optimizer states each (Adam's moments).
COPIES_PER_PARAMETER = 4
SHARE_OF_MEMORY = 0.9  # leave room for Python, the data and the rest of the machine


def estimate_bytes(net: torch.nn.Module, input_shape, train_rows: int, eval_rows: int) -> int:
    """Memory a training run of ``net`` needs, roughly: parameters with gradients and
    optimizer state, activations of a training batch (kept for backward, plus their
    gradients) and of an evaluation batch."""
    parameters = sum(p.numel() for p in net.parameters())
    per_row = _activations_per_row(net, input_shape)
    numbers = COPIES_PER_PARAMETER * parameters + per_row * (2 * train_rows + eval_rows)
    return BYTES_PER_NUMBER * numbers


def check_fits_in_memory(net: torch.nn.Module, cfg: DictConfig, datamodule, key: str) -> None:
    """A ConfigError naming the model's size keys if ``net`` cannot fit in memory."""
    splits = getattr(datamodule, "splits", None) or {}
    train_rows = len(splits["train"][0]) if "train" in splits else 1
    batch = getattr(datamodule, "batch_size", None) or train_rows
    eval_rows = min(getattr(datamodule, "eval_batch_size", batch), train_rows)
    needed = estimate_bytes(net, datamodule.input_shape, batch, eval_rows)
    available, where = _memory(cfg)
    if needed <= SHARE_OF_MEMORY * available:
        return
    parameters = sum(p.numel() for p in net.parameters())
    sizes = ", ".join(
        f"model.{name}={list(cfg.model[name])}"
        for name in ("hidden_sizes", "channels")
        if name in cfg.model
    )
    raise ConfigError(
        f"{key}{f' ({sizes})' if sizes else ''}: {parameters:,} parameters and their "
        f"activations would need about {_gigabytes(needed)} of memory, but {where} has "
        f"{_gigabytes(available)}; use smaller sizes (or a smaller data.batch_size)"
    )


def _activations_per_row(net: torch.nn.Module, input_shape) -> int:
    """Numbers the net's layers output for one sample (counted on the meta device)."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            net(torch.empty(1, *input_shape, device="meta"))
    except Exception:  # a net the meta device cannot run: count parameters only
        return 0
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _memory(cfg: DictConfig) -> tuple[int, str]:
    """Bytes of memory where training will run, and that place in words."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory, "the GPU"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:,.1f} GB"
