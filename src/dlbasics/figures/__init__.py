"""Figures of what a run learned, for TensorBoard's Images tab and ``<run dir>/figures/``.

One room per job:

* :mod:`~dlbasics.figures.draw`: matplotlib figures from plain arrays, and the numbers
  behind them (least squares, confusion counts, ...); knows nothing of Lightning or torch;
* :mod:`~dlbasics.figures.contents`: which figures suit a model and its data, and their
  arrays in the data's own units;
* :mod:`~dlbasics.figures.callback`: :class:`RunFigures`, the callback that decides when to
  draw and hands the figures to TensorBoard and to the PNG folder.

``dlbasics.figures.RunFigures`` (the ``figures`` config group's ``_target_``) is imported on
first use, so ``dlbasics.figures.draw`` does not load Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunFigures"]


def __getattr__(name: str) -> Any:
    if name != "RunFigures":
        raise AttributeError(f"module 'dlbasics.figures' has no attribute {name!r}")
    from dlbasics.figures.callback import RunFigures

    return RunFigures
