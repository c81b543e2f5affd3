"""The figures of a run, drawn from plain arrays: no Lightning, no torch, no pyplot.

Each ``*_figure`` function takes NumPy arrays in the data's own units and returns a
:class:`matplotlib.figure.Figure`. Figures are built with matplotlib's object API on its
non-interactive Agg canvas, so drawing never opens a window and needs no display. The
numbers behind the figures (least squares, a linear model in original units, confusion
counts, a grid over the plane) are separate functions, so they can be tested without pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SIZE = (5.0, 4.0)  # inches; at DPI pixels this is small enough to draw in a few tens of ms
DPI = 90
TRAIN_STYLE = {"marker": "o", "s": 14, "alpha": 0.45, "label": "train"}
TEST_STYLE = {"marker": "^", "s": 22, "alpha": 0.9, "label": "test"}


# -- the numbers behind the figures ---------------------------------------------------------


def least_squares(x: np.ndarray, y: np.ndarray, bias: bool = True) -> tuple[np.ndarray, float]:
    """The closed-form least-squares fit ``y ~ x . w + b`` (``numpy.linalg.lstsq``).

    ``x`` is ``(N, features)``, ``y`` is ``(N,)``. Returns ``(w, b)``; ``b`` is 0 when
    ``bias`` is false (a line through the origin).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    design = np.hstack([x, np.ones((len(x), 1))]) if bias else x
    solution = np.linalg.lstsq(design, np.asarray(y, dtype=np.float64).ravel(), rcond=None)[0]
    return (solution[:-1], float(solution[-1])) if bias else (solution, 0.0)


def linear_in_original_units(
    weight: np.ndarray,
    bias: float,
    feature_mean: np.ndarray | None = None,
    feature_std: np.ndarray | None = None,
    target_mean: float = 0.0,
    target_std: float = 1.0,
) -> tuple[np.ndarray, float]:
    """A linear model trained on standardised data, rewritten for the data's own units.

    With ``x_s = (x - m) / s`` and ``y = y_s * t_s + t_m``, the model ``y_s = x_s . w + b``
    is ``y = x . (t_s * w / s) + t_s * (b - (m / s) . w) + t_m``.
    """
    weight = np.asarray(weight, dtype=np.float64).ravel()
    mean = np.zeros_like(weight) if feature_mean is None else np.asarray(feature_mean, float)
    std = np.ones_like(weight) if feature_std is None else np.asarray(feature_std, float)
    original = target_std * weight / std
    intercept = target_std * (bias - float(np.dot(mean / std, weight))) + target_mean
    return original, float(intercept)


def confusion_counts(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``counts[i, j]``: rows of class ``i`` predicted as class ``j``."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(true, int), np.asarray(predicted, int)), 1)
    return counts


def plane_grid(points: np.ndarray, steps: int = 120, margin: float = 0.08) -> np.ndarray:
    """``steps x steps`` points covering ``points`` (``(N, 2)``) with a margin, as ``(steps², 2)``."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = (high - low) * margin + 1e-9
    axes = [np.linspace(low[i] - pad[i], high[i] + pad[i], steps) for i in range(2)]
    first, second = np.meshgrid(*axes)
    return np.column_stack([first.ravel(), second.ravel()])


def line_grid(x: np.ndarray, steps: int = 100, margin: float = 0.05) -> np.ndarray:
    """Evenly spaced values covering the 1-D inputs ``x``, as a ``(steps, 1)`` column."""
    low, high = float(np.min(x)), float(np.max(x))
    pad = (high - low) * margin + 1e-9
    return np.linspace(low - pad, high + pad, steps).reshape(-1, 1)


# -- the figures ----------------------------------------------------------------------------


def new_figure(size: tuple[float, float] = SIZE, fixed_margins: bool = False) -> Figure:
    """A figure on the non-interactive Agg canvas (no window, no global pyplot state).

    Figures redrawn during training (plain numeric axes) take fixed margins: matplotlib's
    constrained layout, which fits margins to the labels, costs about half of a small
    figure's drawing time.
    """
    figure = Figure(figsize=size, dpi=DPI, layout=None if fixed_margins else "constrained")
    if fixed_margins:
        figure.subplots_adjust(left=0.15, right=0.96, bottom=0.13, top=0.92)
    FigureCanvasAgg(figure)
    return figure


def fitted_line_figure(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    line_x: np.ndarray,
    fitted_y: np.ndarray,
    true_y: np.ndarray | None = None,
    x_name: str = "x",
    y_name: str = "y",
    title: str = "",
    test_name: str = "test",
) -> Figure:
    """One-feature regression: the data, the true line where known, and the model's fit.

    ``test`` holds held-out points shown beside the training ones; ``test_name`` says
    which split they are.
    """
    figure = new_figure(fixed_margins=True)
    axes = figure.add_subplot()
    # Lines first, points on top; the true line dashed over the fit, so both stay visible.
    axes.plot(line_x.ravel(), fitted_y.ravel(), color="tab:red", lw=2.5, label="fitted", zorder=2)
    if true_y is not None:
        axes.plot(line_x.ravel(), true_y.ravel(), "k--", lw=1.3, label="true line", zorder=3)
    size = 40 if len(train[0]) < 50 else 14
    axes.scatter(
        train[0].ravel(), train[1].ravel(), color="tab:blue", zorder=4, **{**TRAIN_STYLE, "s": size}
    )
    if test is not None and len(test[0]):
        axes.scatter(
            test[0].ravel(),
            test[1].ravel(),
            color="tab:orange",
            zorder=5,
            **{**TEST_STYLE, "label": test_name},
        )
    axes.set(xlabel=x_name, ylabel=y_name, title=title)
    axes.legend(loc="best", fontsize="small")
    return figure


def fitted_plane_figure(
    points: np.ndarray,
    targets: np.ndarray,
    grid: np.ndarray,
    fitted_z: np.ndarray,
    true_z: np.ndarray | None = None,
    feature_names: Sequence[str] = ("x1", "x2"),
    y_name: str = "y",
    title: str = "",
) -> Figure:
    """Two-feature regression in 3-D: the points, the model's fitted surface over a square
    grid (``grid``, ``(steps², 2)``, from :func:`plane_grid`) and, where known, the true
    plane as a wire frame."""
    steps = int(round(np.sqrt(len(grid))))
    first, second = grid[:, 0].reshape(steps, steps), grid[:, 1].reshape(steps, steps)
    figure = new_figure((6.0, 5.0))
    axes = figure.add_subplot(projection="3d")
    axes.plot_surface(
        first, second, fitted_z.reshape(steps, steps), color="tab:red", alpha=0.35,
        linewidth=0, label="fitted",
    )  # fmt: skip
    if true_z is not None:
        axes.plot_wireframe(
            first, second, true_z.reshape(steps, steps), color="black", linewidth=0.5,
            rstride=4, cstride=4, label="true plane",
        )  # fmt: skip
    axes.scatter(points[:, 0], points[:, 1], np.ravel(targets), color="tab:blue", s=8)
    # Seen from the side the plane rises towards, so that it shows as a face, not an edge.
    slope = np.linalg.lstsq(np.column_stack([grid, np.ones(len(grid))]), fitted_z.ravel(), rcond=None)[0]
    axes.view_init(elev=20, azim=float(np.degrees(np.arctan2(-slope[1], -slope[0]))) + 45)
    axes.set(xlabel=feature_names[0], ylabel=feature_names[1], zlabel=y_name, title=title)
    axes.legend(loc="upper left", fontsize="small")
    return figure


def weights_figure(
    names: Sequence[str],
    learned: np.ndarray,
    least_squares_fit: np.ndarray,
    true: np.ndarray | None = None,
    title: str = "",
) -> Figure:
    """A linear model's weights (bias last) beside least squares and, where known, the truth."""
    many = len(names) > 6  # rotated tick labels need margins fitted to them
    figure = new_figure((max(5.0, 0.55 * len(names) + 2), 4.0), fixed_margins=not many)
    axes = figure.add_subplot()
    series = [("learned", learned, "tab:red"), ("least squares", least_squares_fit, "tab:gray")]
    if true is not None:
        series.append(("true", true, "black"))
    width = 0.8 / len(series)
    positions = np.arange(len(names))
    for i, (label, values, color) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        bars = axes.bar(positions + offset, values, width, label=label, color=color)
        if len(names) <= 8:  # the values themselves, while they fit
            axes.bar_label(bars, fmt="%.3g", fontsize="x-small", padding=1)
    axes.axhline(0, color="black", lw=0.6)
    axes.set_xticks(
        positions, list(names), rotation=45 if many else 0, ha="right" if many else "center"
    )
    axes.set(ylabel="value (data's own units)", title=title)
    axes.legend(loc="best", fontsize="small")
    return figure


def predicted_vs_actual_figure(
    actual: np.ndarray, predicted: np.ndarray, name: str = "y", title: str = ""
) -> Figure:
    """Predictions against the truth, with the ``y = x`` diagonal a perfect model lies on."""
    figure = new_figure()
    axes = figure.add_subplot()
    actual, predicted = actual.ravel(), predicted.ravel()
    axes.scatter(actual, predicted, s=14, alpha=0.6, color="tab:blue")
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    axes.plot([low, high], [low, high], "k--", lw=1, label="y = x")
    axes.set(xlabel=f"actual {name}", ylabel=f"predicted {name}", title=title)
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(loc="best", fontsize="small")
    return figure


def residuals_figure(
    actual: np.ndarray, predicted: np.ndarray, name: str = "y", title: str = ""
) -> Figure:
    """Residuals (actual − predicted) against the prediction, and their histogram."""
    figure = new_figure((7.0, 3.6))
    scatter, histogram = figure.subplots(1, 2, width_ratios=[2, 1])
    predicted = predicted.ravel()
    residuals = actual.ravel() - predicted
    scatter.scatter(predicted, residuals, s=14, alpha=0.6, color="tab:blue")
    scatter.axhline(0, color="black", lw=1, ls="--")
    scatter.set(xlabel=f"predicted {name}", ylabel="residual (actual − predicted)", title=title)
    histogram.hist(
        residuals,
        bins=min(30, max(5, len(residuals) // 5)),
        orientation="horizontal",
        color="tab:blue",
        alpha=0.7,
    )
    histogram.set(xlabel="rows")
    histogram.sharey(scatter)
    return figure


def decision_regions_figure(
    grid: np.ndarray,
    grid_classes: np.ndarray,
    points: np.ndarray,
    point_classes: np.ndarray,
    class_names: Sequence[str],
    feature_names: Sequence[str] = ("x1", "x2"),
    title: str = "",
) -> Figure:
    """Two-feature classification: the class the model picks over the plane, points on top.

    ``grid`` is a square grid from :func:`plane_grid`, ``grid_classes`` the predicted class
    at each of its points, ``points`` and ``point_classes`` the rows to show with their
    true classes — all in the data's own units.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    figure = new_figure(fixed_margins=True)
    axes = figure.add_subplot()
    steps = int(round(np.sqrt(len(grid))))
    colors = [f"C{i % 10}" for i in range(len(class_names))]
    cmap = ListedColormap(colors)
    norm = BoundaryNorm(np.arange(len(class_names) + 1) - 0.5, len(class_names))
    axes.contourf(
        grid[:, 0].reshape(steps, steps),
        grid[:, 1].reshape(steps, steps),
        grid_classes.reshape(steps, steps),
        levels=np.arange(len(class_names) + 1) - 0.5,
        cmap=cmap,
        norm=norm,
        alpha=0.3,
    )
    for index, name in enumerate(class_names):
        mine = point_classes == index
        axes.scatter(
            points[mine, 0],
            points[mine, 1],
            s=12,
            color=colors[index],
            edgecolor="black",
            linewidth=0.3,
            label=str(name),
        )
    axes.set(xlabel=feature_names[0], ylabel=feature_names[1], title=title)
    axes.legend(loc="best", fontsize="small", title="true class")
    return figure


def confusion_matrix_figure(
    counts: np.ndarray, class_names: Sequence[str], title: str = ""
) -> Figure:
    """Counts per (true, predicted) class, each cell also as a share of its true class
    (its row); the colour is that share, so rare classes read as clearly as common ones."""
    labels = [str(name) for name in class_names]
    size = 3.0 + 0.45 * len(labels)
    figure = new_figure((size + 0.8, size))
    axes = figure.add_subplot()
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    ticks = np.arange(len(labels))
    rotate = len(labels) * max(map(len, labels)) > 24  # long names would overlap
    axes.set_xticks(ticks, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    axes.set_yticks(ticks, labels)
    axes.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if len(labels) <= 12:  # the numbers themselves, while they stay legible
        for (i, j), count in np.ndenumerate(counts):
            if count == 0:
                continue  # empty cells stay blank, so the mistakes stand out
            share = shares[i, j]
            axes.text(
                j,
                i,
                f"{count}\n{share:.0%}",
                ha="center",
                va="center",
                fontsize="x-small",
                color="white" if share > 0.5 else "black",
            ).set_in_layout(False)  # inside the cells: the margins need not fit them
    return figure


def misclassified_figure(
    images: np.ndarray,
    true: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
    title: str = "",
    columns: int = 8,
) -> Figure:
    """Misclassified images (``(N, H, W)``, ``(N, 1, H, W)`` grey or ``(N, 3, H, W)``
    colour, pixels in ``[0, 1]``) in a grid, each labelled true → predicted.

    The images are tiled into one picture (one ``imshow``): a separate axes per image
    costs ten times as much to draw.
    """
    images = np.asarray(images, dtype=float)
    height, width = images.shape[-2:]
    colour = images.ndim == 4 and images.shape[1] == 3
    if colour:  # channels last, as imshow takes RGB
        images = np.clip(np.moveaxis(images, 1, -1), 0.0, 1.0)
    else:
        images = images.reshape(len(images), height, width)
    columns = max(1, min(columns, len(images)))
    rows = max(1, int(np.ceil(len(images) / columns)))
    pairs = [(str(class_names[t]), str(class_names[p])) for t, p in zip(true, predicted, strict=True)]
    # Names longer than "3 → 8" ("airplane → automobile") take two lines, in a smaller font.
    lines = 2 if any(len(t) + len(p) > 8 for t, p in pairs) else 1
    labels = [f"{t} →\n{p}" if lines == 2 else f"{t} → {p}" for t, p in pairs]
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    # Each image is drawn 0.75 in wide, in a column as wide as its label needs (about
    # 0.055 in a character at x-small, 0.065 at small): the gap between tiles makes up the rest.
    per_pixel = 0.75 / width  # inches
    column = max(0.9, (0.055 if lines == 2 else 0.065) * longest + 0.15)
    gap_x, gap_y = max(2, round((column - 0.75) / per_pixel)), 2
    # Above each image, its label's lines (about 0.17 in each), in the mosaic's pixels.
    label = max(2, math.ceil(lines * 0.17 / per_pixel))
    tile_h, tile_w = label + height + gap_y, width + gap_x
    # Around the tiles: white (colour), or NaN drawn as the background (grey).
    shape = (rows * tile_h, columns * tile_w, *((3,) if colour else ()))
    mosaic = np.full(shape, 1.0 if colour else np.nan)
    size = (max(4.0, columns * tile_w * per_pixel + 0.4), rows * tile_h * per_pixel + 0.9)
    figure = new_figure(size)
    axes = figure.add_subplot()
    axes.axis("off")
    for index, (image, text) in enumerate(zip(images, labels, strict=True)):
        top = (index // columns) * tile_h + label
        left = (index % columns) * tile_w + gap_x // 2  # centred in its column
        mosaic[top : top + height, left : left + width] = image
        axes.text(
            left + width / 2,
            top - 1,
            text,
            ha="center",
            va="bottom",
            fontsize="small" if lines == 1 else "x-small",
            color="tab:red",
        )
    from matplotlib import colormaps

    if colour:
        axes.imshow(mosaic, interpolation="nearest")
    else:
        background = colormaps["gray_r"].with_extremes(bad="white")  # the NaN around the tiles
        axes.imshow(mosaic, cmap=background, interpolation="nearest")
    if not len(images):
        axes.text(
            0.5, 0.5, "no misclassified images", ha="center", va="center", transform=axes.transAxes
        )
    figure.suptitle(title or "misclassified (true → predicted)")
    return figure


def top_losses_figure(style: str, title: str = "", **arrays) -> Figure:
    """The rows a model is most wrong about, worst first (see :mod:`dlbasics.interpret`):
    ``style="images"`` a grid of images titled true/predicted/probability/loss,
    ``"losses"`` a table's rows as bars of their loss, ``"residuals"`` a regression's rows
    as bars of their residual beside the error by range of the true target."""
    drawing = {
        "images": _top_loss_images,
        "losses": _top_loss_bars,
        "residuals": _largest_residuals,
    }[style]
    return drawing(title=title, **arrays)


def _top_loss_images(
    images: np.ndarray, titles: Sequence[str], wrong: Sequence[bool], title: str = ""
) -> Figure:
    images = np.asarray(images, dtype=float)
    if images.ndim == 4 and images.shape[1] in (3, 4):  # colour: channels last
        images = np.moveaxis(images, 1, -1)
    elif images.ndim == 4:
        images = images[:, 0]
    count = max(1, len(images))
    columns = min(6, int(np.ceil(np.sqrt(count))))
    rows = int(np.ceil(count / columns))
    figure = new_figure((1.45 * columns + 0.3, 1.6 * rows + 0.7))
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.ravel()):
        axes.axis("off")
        if index >= len(images):
            continue
        image = images[index]
        if image.ndim == 3:  # colour: pixels in [0, 1], as they were read
            image = np.clip(image, 0.0, 1.0)
        axes.imshow(image, cmap="gray_r", interpolation="nearest")
        colour = "tab:red" if wrong[index] else "tab:green"
        axes.set_title(titles[index], fontsize="small", color=colour)
    if not len(images):
        grid[0, 0].text(0.5, 0.5, "no rows", ha="center", va="center")
    figure.suptitle(title or "top losses: true/predicted/probability/loss")
    return figure


def _bars_height(rows: int) -> float:
    return max(3.2, 1.3 + 0.36 * rows)


def _top_loss_bars(
    labels: Sequence[str],
    losses: np.ndarray,
    notes: Sequence[str],
    wrong: Sequence[bool],
    title: str = "",
) -> Figure:
    figure = new_figure((8.5, _bars_height(len(labels))))
    axes = figure.add_subplot()
    positions = np.arange(len(labels))[::-1]  # the worst on top
    colours = ["tab:red" if w else "tab:gray" for w in wrong]  # grey: right, but unsure
    bars = axes.barh(positions, losses, color=colours, alpha=0.75)
    axes.bar_label(bars, labels=list(notes), padding=3, fontsize="small")
    axes.set_yticks(positions, list(labels), fontsize="small")
    high = float(np.max(losses)) if len(losses) else 1.0
    axes.set_xlim(0, high * 1.7 + 1e-9)  # room for the notes
    axes.set(xlabel="loss (cross-entropy)", title=title or "top losses")
    return figure


def _largest_residuals(
    labels: Sequence[str],
    residuals: np.ndarray,
    notes: Sequence[str],
    ranges: Sequence[str],
    mae: np.ndarray,
    mean_residual: np.ndarray,
    title: str = "",
) -> Figure:
    figure = new_figure((11.0, _bars_height(len(labels))))
    rows, by_range = figure.subplots(1, 2, width_ratios=[3, 2])
    positions = np.arange(len(labels))[::-1]
    colours = ["tab:blue" if r >= 0 else "tab:orange" for r in residuals]
    bars = rows.barh(positions, residuals, color=colours, alpha=0.8)
    rows.bar_label(bars, labels=list(notes), padding=3, fontsize="x-small")
    rows.axvline(0, color="black", lw=0.8)
    rows.set_yticks(positions, list(labels), fontsize="small")
    reach = float(np.max(np.abs(residuals))) if len(residuals) else 1.0
    rows.set_xlim(-2.2 * reach - 1e-9, 2.2 * reach + 1e-9)  # room for the notes
    rows.set(xlabel="residual (true − predicted)", title=title or "largest residuals")
    places = np.arange(len(ranges))
    by_range.bar(places - 0.2, mae, 0.4, label="MAE", color="tab:red", alpha=0.8)
    by_range.bar(places + 0.2, mean_residual, 0.4, label="mean residual", color="tab:gray")
    by_range.axhline(0, color="black", lw=0.6)
    by_range.set_xticks(places, list(ranges), rotation=30, ha="right", fontsize="small")
    by_range.set(xlabel="true target (quantile bins)", title="error by range")
    by_range.legend(loc="best", fontsize="small")
    return figure


def rgb_array(figure: Figure) -> np.ndarray:
    """The figure rendered as an ``(H, W, 3)`` uint8 array (what TensorBoard's images take)."""
    canvas = figure.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
