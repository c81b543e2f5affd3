"""What each figure shows for a model and its data: the arrays, in the data's own units.

:func:`progress_inputs` and :func:`evaluation_inputs` look at the task, the data's shape and
the net, and return, per figure, the keyword arguments of its drawing function in
:mod:`dlbasics.figures.draw` — plain NumPy arrays and names. Nothing is drawn here, so the
numbers behind every figure can be checked without looking at pixels.

The model is asked through :meth:`~dlbasics.training.module.SupervisedModule.predict_raw`, which
applies the training split's scaling itself: every array here is in the data's own units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dlbasics.figures import draw
from dlbasics.nets import LinearRegression

DRAW = {
    "fitted_line": draw.fitted_line_figure,
    "fitted_plane": draw.fitted_plane_figure,
    "weights": draw.weights_figure,
    "decision_regions": draw.decision_regions_figure,
    "predicted_vs_actual": draw.predicted_vs_actual_figure,
    "residuals": draw.residuals_figure,
    "confusion_matrix": draw.confusion_matrix_figure,
    "misclassified": draw.misclassified_figure,
    "top_losses": draw.top_losses_figure,
}


@torch.no_grad()
def predict(module, features: np.ndarray, batch: int = 4096) -> np.ndarray:
    """The module's predictions for raw rows, in evaluation mode (no dropout), as NumPy;
    ``batch`` rows at a time (a test split of images at once would take gigabytes)."""
    was_training = module.training
    module.eval()
    try:
        parts = np.split(features, range(batch, len(features), batch))
        return np.concatenate([module.predict_raw(part).cpu().numpy() for part in parts])
    finally:
        module.train(was_training)


def shown_split(datamodule) -> str:
    """The split figures show: test where there is one, else validation, else training."""
    return next(name for name in ("test", "val", "train") if datamodule.has_split(name))


def feature_names(datamodule, count: int) -> list[str]:
    return list(datamodule.feature_names) or [f"x{i + 1}" for i in range(count)]


def progress_inputs(
    module, datamodule, kinds: set[str], title: str, final: bool = False
) -> dict[str, dict]:
    """Keyword arguments of each figure that shows what the model has learned so far.

    On one feature the fitted line already shows a linear model's slope and intercept as
    it learns, so its weights figure is drawn for the ``final`` model only.
    """
    if len(datamodule.input_shape) != 1:  # each of these figures is of a table's columns
        return {}
    x_train, y_train = datamodule.original_split("train")
    split = shown_split(datamodule)
    x_shown, y_shown = datamodule.original_split(split)
    tabular = x_train.ndim == 2
    features = x_train.shape[1] if tabular else 0
    inputs: dict[str, dict] = {}
    regression_one_output = datamodule.task == "regression" and y_train.shape[1] == 1

    if "fitted_line" in kinds and regression_one_output and features == 1:
        line_x = draw.line_grid(np.concatenate([x_train, x_shown]))
        true_y = None
        if datamodule.true_weights is not None and np.size(datamodule.true_weights) == 1:
            true_y = line_x * float(np.ravel(datamodule.true_weights)[0]) + datamodule.true_bias
        inputs["fitted_line"] = {
            "train": (x_train, y_train),
            "test": (x_shown, y_shown) if split != "train" else None,
            "test_name": split,
            "line_x": line_x,
            "fitted_y": predict(module, line_x),
            "true_y": true_y,
            "x_name": feature_names(datamodule, 1)[0],
            "y_name": datamodule.target_name or "y",
            "title": title,
        }

    if "fitted_plane" in kinds and regression_one_output and features == 2 and final:
        # The course's y = x·[2, -3.5] + 5: the points and the fitted plane, in 3-D (for the
        # final model only: a 3-D figure takes ten times a flat one's drawing time).
        grid = draw.plane_grid(np.concatenate([x_train, x_shown]), steps=25)
        true_z = None
        if datamodule.true_weights is not None and np.size(datamodule.true_weights) == 2:
            weights = np.ravel(datamodule.true_weights).astype(float)
            true_z = grid @ weights + float(datamodule.true_bias or 0.0)
        inputs["fitted_plane"] = {
            "points": x_shown,
            "targets": y_shown,
            "grid": grid,
            "fitted_z": predict(module, grid),
            "true_z": true_z,
            "feature_names": feature_names(datamodule, 2),
            "y_name": datamodule.target_name or "y",
            "title": f"{title}, {split} points",
        }

    linear = isinstance(module.net, LinearRegression)
    if (
        "weights" in kinds
        and regression_one_output
        and tabular
        and linear
        and (final or "fitted_line" not in inputs)
    ):
        inputs["weights"] = weights_inputs(module, datamodule, x_train, y_train, title)

    if "decision_regions" in kinds and datamodule.task == "classification" and features == 2:
        grid = draw.plane_grid(np.concatenate([x_train, x_shown]))
        inputs["decision_regions"] = {
            "grid": grid,
            "grid_classes": predict(module, grid),
            "points": x_shown,
            "point_classes": y_shown,
            "class_names": list(datamodule.class_names),
            "feature_names": feature_names(datamodule, 2),
            "title": f"{title}, {split} points",
        }
    return inputs


def weights_inputs(module, datamodule, x_train, y_train, title: str) -> dict[str, Any]:
    """A linear model's weights and bias in the data's own units, beside least squares
    on the same training split and, where the data know them, the true ones."""
    layer = module.net.linear
    has_bias = layer.bias is not None
    weight = layer.weight.detach().cpu().double().numpy().ravel()
    bias = float(layer.bias.detach().cpu()) if has_bias else 0.0
    feature, target = datamodule.feature_scaling, datamodule.target_scaling
    learned, intercept = draw.linear_in_original_units(
        weight,
        bias,
        feature.mean if feature else None,
        feature.std if feature else None,
        float(target.mean[0]) if target else 0.0,
        float(target.std[0]) if target else 1.0,
    )
    fitted, fitted_intercept = draw.least_squares(x_train, y_train, bias=has_bias)
    names = feature_names(datamodule, len(learned))
    known = datamodule.true_weights
    true = np.ravel(known) if known is not None and np.size(known) == len(learned) else None
    if has_bias:  # the intercept as one more bar
        names = [*names, "bias"]
        learned = np.append(learned, intercept)
        fitted = np.append(fitted, fitted_intercept)
        true = None if true is None else np.append(true, datamodule.true_bias or 0.0)
    return {
        "names": names,
        "learned": learned,
        "least_squares_fit": fitted,
        "true": true,
        "title": title,
    }


def evaluation_inputs(
    module, datamodule, split: str, kinds: set[str], title: str, max_images: int = 32
) -> dict[str, dict]:
    """Keyword arguments of each figure that judges the model on one split."""
    x, y = datamodule.original_split(split)
    predicted = predict(module, x, datamodule.eval_batch_size)
    title = f"{title}, {split} split"
    inputs: dict[str, dict] = {}
    if datamodule.task == "regression":
        name = datamodule.target_name or "y"
        for kind in ("predicted_vs_actual", "residuals"):
            if kind in kinds:
                inputs[kind] = {"actual": y, "predicted": predicted, "name": name, "title": title}
        return {**inputs, **top_losses_inputs(module, datamodule, split, kinds, title)}

    class_names = list(datamodule.class_names)
    if "confusion_matrix" in kinds:
        inputs["confusion_matrix"] = {
            "counts": draw.confusion_counts(y, predicted, len(class_names)),
            "class_names": class_names,
            "title": title,
        }
    if "misclassified" in kinds and x.ndim > 2:  # image data
        wrong = np.flatnonzero(predicted != y)[:max_images]
        inputs["misclassified"] = {
            "images": x[wrong],
            "true": y[wrong],
            "predicted": predicted[wrong],
            "class_names": class_names,
            "title": f"{title}\n{int((predicted != y).sum())} misclassified (true → predicted)",
        }
    return {**inputs, **top_losses_inputs(module, datamodule, split, kinds, title)}


def top_losses_inputs(module, datamodule, split: str, kinds: set[str], title: str) -> dict:
    """The rows of ``split`` the model is most wrong about (:mod:`dlbasics.interpret`)."""
    if "top_losses" not in kinds:
        return {}
    from dlbasics.using.interpret import DEFAULT_TOP, examine, figure_inputs

    found = examine(module, datamodule, split, DEFAULT_TOP)
    return {"top_losses": figure_inputs(found, title.replace(f", {split} split", ""))}
