"""Figures: the numbers behind each one, and that each run leaves them in TensorBoard and figures/.

The pixels are not tested; what a figure shows is: the fitted line is the model's own line
in the data's own units, the least-squares reference is ``numpy.linalg.lstsq`` on the
training split, the confusion matrix adds up to the test split and agrees with the logged
accuracy, the decision regions are the model's classes in original units.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons, make_regression

from dlbasics.figures import draw
from dlbasics.figures.contents import evaluation_inputs, progress_inputs
from dlbasics.training.module import SupervisedModule

ALL_KINDS = {
    "fitted_line",
    "fitted_plane",
    "weights",
    "decision_regions",
    "predicted_vs_actual",
    "residuals",
    "confusion_matrix",
    "misclassified",
}


def image_steps(run_dir: Path) -> dict[str, list[int]]:
    """Image tags in the run's TensorBoard event files, with their steps (TensorBoard's reader)."""
    from tensorboard.backend.event_processing.event_accumulator import (
        IMAGES,
        EventAccumulator,
    )

    steps: dict[str, list[int]] = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={IMAGES: 0})
        accumulator.Reload()
        for tag in accumulator.Tags()[IMAGES]:
            steps.setdefault(tag, []).extend(image.step for image in accumulator.Images(tag))
    return steps


def trained(cfg, checkpoint: str = "best.ckpt"):
    """The run's datamodule (same split) and its module as tested, from the checkpoint."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    path = Path(cfg.paths.output_dir) / "checkpoints" / checkpoint
    return datamodule, SupervisedModule.load_from_checkpoint(path, map_location="cpu").eval()


def is_among(values: np.ndarray, raw: np.ndarray) -> bool:
    """Every value is one of ``raw`` (to float32 precision): shown in the data's own units."""
    gaps = np.abs(np.asarray(values, float)[:, None] - np.asarray(raw, float)[None, :])
    return bool((gaps.min(axis=1) < 1e-5 * (1 + np.abs(values))).all())


# -- the numbers, without training ---------------------------------------------------------


def test_least_squares_is_numpy_lstsq_and_recovers_a_noiseless_line():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 4.0
    weights, bias = draw.least_squares(x, y)
    assert np.allclose(weights, [1.5, -2.0, 0.5]) and bias == pytest.approx(4.0)
    through_origin, zero = draw.least_squares(x, y, bias=False)
    assert zero == 0.0
    assert np.allclose(through_origin, np.linalg.lstsq(x, y, rcond=None)[0])


def test_linear_model_in_original_units_predicts_what_the_scaled_model_predicts():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, size=(20, 4))
    mean, std = x.mean(axis=0), x.std(axis=0)
    weight, bias = rng.normal(size=4), 0.7
    target_mean, target_std = 10.0, 2.5
    scaled_prediction = ((x - mean) / std) @ weight + bias
    original_w, original_b = draw.linear_in_original_units(
        weight, bias, mean, std, target_mean, target_std
    )
    assert np.allclose(x @ original_w + original_b, scaled_prediction * target_std + target_mean)


def test_confusion_counts_count_each_pair():
    counts = draw.confusion_counts(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_every_figure_draws_from_its_arrays():
    """Each drawing function returns a figure that renders (no display needed)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 1)), rng.normal(size=(30, 1))
    grid = draw.plane_grid(rng.normal(size=(30, 2)), steps=20)
    line = draw.line_grid(x)
    figures = [
        draw.fitted_line_figure((x, y), (x[:5], y[:5]), line, 2 * line, 2 * line + 0.1),
        draw.weights_figure(["a", "b", "bias"], np.ones(3), np.ones(3), np.zeros(3)),
        draw.fitted_plane_figure(grid[:9], grid[:9, 0], grid, grid @ [2.0, -1.0], grid @ [2.0, -1.1]),
        draw.predicted_vs_actual_figure(y, y + 0.1),
        draw.residuals_figure(y, y + 0.1),
        draw.decision_regions_figure(
            grid, (grid[:, 0] > 0).astype(int), grid[:9], np.arange(9) % 2, ["no", "yes"]
        ),
        draw.confusion_matrix_figure(np.array([[3, 1], [0, 4]]), ["no", "yes"]),
        draw.misclassified_figure(rng.random((3, 1, 8, 8)), [0, 1, 2], [1, 2, 0], list("abc")),
        draw.misclassified_figure(np.zeros((0, 1, 8, 8)), [], [], list("abc")),
    ]
    for figure in figures:
        image = draw.rgb_array(figure)
        assert image.ndim == 3 and image.shape[2] == 3 and image.std() > 0  # not blank


# -- the numbers of real runs ----------------------------------------------------------------


def test_fitted_plane_is_the_models_own_plane_beside_the_true_one(run_training):
    """y = x·[2, -3.5] + 5 with standardised features: the surface drawn is the model's
    prediction over the raw grid, a plane whose slopes are the learned weights in the
    data's own units; the wire frame is the true plane."""
    cfg, _ = run_training("experiment=linreg_2d", "data.standardize=true", "trainer.max_epochs=300")
    datamodule, module = trained(cfg)
    assert "fitted_plane" not in progress_inputs(module, datamodule, ALL_KINDS, "t")
    inputs = progress_inputs(module, datamodule, ALL_KINDS, "t", final=True)
    plane = inputs["fitted_plane"]
    grid = plane["grid"]
    assert np.allclose(plane["true_z"], grid @ [2.0, -3.5] + 5.0)
    solved = np.linalg.lstsq(np.column_stack([grid, np.ones(len(grid))]), plane["fitted_z"].ravel(), rcond=None)[0]
    assert np.allclose(solved, inputs["weights"]["learned"], rtol=1e-3, atol=1e-3)
    assert np.allclose(solved, [2.0, -3.5, 5.0], atol=0.35)


def test_fitted_line_is_the_models_own_line_in_original_units(run_training, tmp_path):
    """Standardised features and target: the drawn line is still slope * x + intercept of
    the model, in the data's own units, and the true line is make_regression's."""
    cfg, _ = run_training(
        "model=linreg",
        "data=make_regression",
        "data.n_samples=120",
        "data.n_features=1",
        "data.n_informative=1",
        "data.bias=3.0",
        "data.standardize=true",
        "data.standardize_target=true",  # make_regression's default
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "trainer.max_epochs=15",
    )
    datamodule, module = trained(cfg)
    inputs = progress_inputs(module, datamodule, ALL_KINDS, "t")
    assert set(inputs) == {"fitted_line"}  # the weights of a 1-feature model: at the end
    inputs = progress_inputs(module, datamodule, ALL_KINDS, "t", final=True)
    assert set(inputs) == {"fitted_line", "weights"}
    line = inputs["fitted_line"]
    x = line["line_x"].ravel()
    slope, intercept = np.polyfit(x, line["fitted_y"].ravel(), 1)
    weights = inputs["weights"]
    assert weights["names"] == ["x1", "bias"]
    assert slope == pytest.approx(weights["learned"][0], rel=1e-4)
    assert intercept == pytest.approx(weights["learned"][1], rel=1e-4, abs=1e-3)
    # In original units, not standardised ones: the line spans the raw inputs.
    raw_x, raw_y, coefficients = make_regression(
        n_samples=120,
        n_features=1,
        n_informative=1,
        noise=10.0,
        bias=3.0,
        random_state=0,
        coef=True,
    )
    coefficients = np.ravel(coefficients)
    assert np.allclose(line["true_y"].ravel(), x * coefficients[0] + 3.0)
    assert np.allclose(weights["true"], [coefficients[0], 3.0])
    # Training rows as drawn are rows of the generated data, in its units, and the line
    # spans them.
    train_x = line["train"][0].ravel()
    assert is_among(train_x, raw_x.ravel())
    assert x.min() < train_x.min() and x.max() > train_x.max()
    # Trained long enough to reach the least-squares fit of its training split.
    assert slope == pytest.approx(weights["least_squares_fit"][0], rel=0.03)


def test_least_squares_reference_is_lstsq_on_the_training_split(run_training):
    cfg, _ = run_training(
        "model=linreg", "data=diabetes", "optimizer.lr=0.05", "trainer.max_epochs=3"
    )
    datamodule, module = trained(cfg)
    weights = progress_inputs(module, datamodule, {"weights"}, "t")["weights"]
    x, y = datamodule.original_split("train")
    design = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    expected = np.linalg.lstsq(design, y.astype(np.float64).ravel(), rcond=None)[0]
    assert np.allclose(weights["least_squares_fit"], expected, rtol=1e-6, atol=1e-6)
    assert weights["names"][:3] == ["age", "sex", "bmi"] and weights["names"][-1] == "bias"
    assert weights["true"] is None  # a real dataset: no true weights to show
    # The learned weights in original units reproduce the model's own predictions.
    prediction = x @ weights["learned"][:-1] + weights["learned"][-1]
    assert np.allclose(prediction, module.predict_raw(x).numpy().ravel(), rtol=1e-4, atol=1e-2)


def test_confusion_matrix_adds_up_to_the_test_split_and_the_logged_accuracy(run_training):
    cfg, metrics = run_training(
        "model=mlp", "data=moons", "data.n_samples=600", "trainer.max_epochs=5"
    )
    datamodule, module = trained(cfg)
    counts = evaluation_inputs(module, datamodule, "test", ALL_KINDS, "t")["confusion_matrix"][
        "counts"
    ]
    test_rows = len(datamodule.original_split("test")[0])
    assert counts.sum() == test_rows == 60
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_decision_regions_are_the_models_classes_in_original_units(run_training):
    cfg, _ = run_training("model=mlp", "data=moons", "data.n_samples=600", "trainer.max_epochs=5")
    datamodule, module = trained(cfg)
    regions = progress_inputs(module, datamodule, ALL_KINDS, "t")
    assert set(regions) == {"decision_regions"}
    regions = regions["decision_regions"]
    raw, _ = make_moons(n_samples=600, noise=0.2, random_state=0)
    grid, points = regions["grid"], regions["points"]
    # The plane covers the raw points (moons span about [-1, 2] x [-0.5, 1]), and the
    # points drawn are raw rows, not standardised ones.
    assert (grid.min(axis=0) <= raw.min(axis=0)).all() and (
        grid.max(axis=0) >= raw.max(axis=0)
    ).all()
    assert is_among(points[:, 0], raw[:, 0]) and is_among(points[:, 1], raw[:, 1])
    scaled = datamodule.feature_scaling.apply(grid)
    expected = module(torch.as_tensor(scaled)).argmax(dim=1).numpy()
    assert (regions["grid_classes"] == expected).all()
    assert len(set(regions["grid_classes"].tolist())) == 2  # the boundary crosses the plane


def test_misclassified_digits_are_the_wrong_test_images(run_training):
    cfg, metrics = run_training(
        "model=mlp",
        "data=digits",
        "model.hidden_sizes=[16]",
        "trainer.max_epochs=2",
        "figures.max_images=5",
    )
    datamodule, module = trained(cfg)
    inputs = evaluation_inputs(module, datamodule, "test", ALL_KINDS, "t", max_images=5)
    wrong = inputs["misclassified"]
    counts = inputs["confusion_matrix"]["counts"]
    assert len(wrong["images"]) == min(5, counts.sum() - np.trace(counts))
    assert (wrong["true"] != wrong["predicted"]).all()
    assert wrong["images"].shape[1:] == (1, 8, 8) and wrong["images"].max() <= 1.0
    assert wrong["class_names"] == [str(d) for d in range(10)]


def test_string_labels_of_a_two_column_csv_name_the_classes(run_training, tmp_path):
    x, y = make_moons(n_samples=300, noise=0.15, random_state=3)
    path = tmp_path / "moons.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["length_cm", "width_cm", "kind"])
        for (a, b), label in zip(x * 10 + 50, y, strict=True):
            writer.writerow([f"{a:.3f}", f"{b:.3f}", "upper" if label == 0 else "lower"])
    cfg, _ = run_training(
        "data=csv", f"data.path={path}", "data.target=kind", "trainer.max_epochs=3"
    )
    datamodule, module = trained(cfg)
    inputs = progress_inputs(module, datamodule, ALL_KINDS, "t")
    inputs.update(evaluation_inputs(module, datamodule, "test", ALL_KINDS, "t"))
    assert set(inputs) == {"decision_regions", "confusion_matrix"}
    assert inputs["confusion_matrix"]["class_names"] == ["lower", "upper"]
    assert inputs["decision_regions"]["feature_names"] == ["length_cm", "width_cm"]
    assert inputs["decision_regions"]["grid"].min() > 20  # the file's units (about 40..75)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "confusion_matrix.png",
        "decision_regions.png",
        "top_losses.png",
    ]
    assert set(image_steps(tmp_path)) == {
        "figures/confusion_matrix", "figures/decision_regions", "figures/top_losses"
    }


# -- what a run leaves behind ----------------------------------------------------------------

PRESET_FIGURES = {
    "experiment=linreg_tiny": {"fitted_line", "weights", "predicted_vs_actual", "residuals"},
    "experiment=linreg_1d": {"fitted_line", "weights", "predicted_vs_actual", "residuals"},
    "experiment=linreg_2d": {"fitted_plane", "weights", "predicted_vs_actual", "residuals"},
    "experiment=mlp_moons": {"decision_regions", "confusion_matrix"},
    "experiment=cnn_digits": {"confusion_matrix", "misclassified"},
    "model=mlp data=iris": {"confusion_matrix"},
    "model=linreg data=diabetes": {"weights", "predicted_vs_actual", "residuals"},
}
for _kinds in PRESET_FIGURES.values():
    _kinds.add("top_losses")  # every classification and regression run (dlbasics.interpret)


@pytest.mark.slow
@pytest.mark.parametrize("command", PRESET_FIGURES)
def test_each_preset_leaves_its_figures_in_tensorboard_and_figures_folder(
    run_training, tmp_path, command
):
    small = ["data.n_samples=300"] if "moons" in command else []
    run_training(*command.split(), "trainer.max_epochs=4", *small)
    expected = PRESET_FIGURES[command]
    steps = image_steps(tmp_path)
    assert set(steps) == {f"figures/{kind}" for kind in expected}
    assert {p.stem for p in (tmp_path / "figures").glob("*.png")} == expected
    # Progress frames after epochs 1, 2, 3, then the final model after epoch 4; a linear
    # model's weights on one feature only at the end (the fitted line shows them).
    progress = {"fitted_line", "decision_regions"} | (
        {"weights"} if "fitted_line" not in expected else set()
    )
    for kind in expected:
        assert steps[f"figures/{kind}"] == ([1, 2, 3, 4] if kind in progress else [4]), kind


def test_figures_none_and_switched_off_kinds(run_training, tmp_path):
    run_training(
        "experiment=linreg_tiny",
        "trainer.max_epochs=3",
        "figures.residuals=false",
        "figures.every_n_epochs=2",
    )
    steps = image_steps(tmp_path)
    assert "figures/residuals" not in steps and steps["figures/fitted_line"] == [2, 3]
    assert not (tmp_path / "figures" / "residuals.png").exists()


def test_no_figures_with_figures_none(run_training, tmp_path):
    run_training("experiment=linreg_tiny", "trainer.max_epochs=3", "figures=none")
    assert image_steps(tmp_path) == {} and not (tmp_path / "figures").exists()


def test_png_files_without_tensorboard(run_training, tmp_path):
    run_training(
        "model=mlp", "data=moons", "data.n_samples=300", "trainer.max_epochs=2", "logger=csv"
    )
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {
        "decision_regions.png",
        "confusion_matrix.png",
        "top_losses.png",
    }
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_figures_follow_test_false_onto_the_validation_split(run_training, tmp_path):
    """No test: the final figures are drawn after training, on the validation split."""
    run_training("model=mlp", "data=iris", "trainer.max_epochs=2", "test=false")
    assert image_steps(tmp_path) == {"figures/confusion_matrix": [2], "figures/top_losses": [2]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("figures.every_n_epochs=0", "figures.every_n_epochs=0: must be a whole number >= 1"),
        ("figures.frames=-2", "figures.frames=-2: must be a whole number >= 1"),
        ("+figures.histogram=true", "unknown figure kind histogram"),
    ],
)
def test_a_bad_figures_value_is_one_line_naming_the_key(make_config, override, message):
    from dlbasics.config.checks import check_config
    from dlbasics.errors import ConfigError
    from dlbasics.training.train import train

    cfg = make_config("experiment=linreg_tiny", "trainer.max_epochs=1", override)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)
        train(cfg)


@pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated")
def test_other_modules_and_data_train_with_the_callback_and_get_no_figures(tmp_path):
    """A user's own LightningModule and datamodule: the callback stays out of the way."""
    import lightning.pytorch as pl
    from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

    from dlbasics.figures import RunFigures

    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        limit_test_batches=1,
        log_every_n_steps=1,
        callbacks=[RunFigures(tmp_path / "figures", every_n_epochs=1)],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(BoringModel(), datamodule=BoringDataModule())
    trainer.test(BoringModel(), datamodule=BoringDataModule(), verbose=False)
    assert trainer.current_epoch == 2 and not (tmp_path / "figures").exists()


def test_final_figures_name_the_epoch_the_test_restored(tmp_path):
    from types import SimpleNamespace

    from dlbasics.figures.callback import _tested_epoch

    best = tmp_path / "checkpoints" / "best.ckpt"
    saver = SimpleNamespace(best_path=best, best_epoch=2)  # counted from 0, as Lightning does
    assert _tested_epoch(SimpleNamespace(ckpt_path=str(best), callbacks=[saver])) == 3
    assert _tested_epoch(SimpleNamespace(ckpt_path=None, callbacks=[saver])) is None
    other = SimpleNamespace(ckpt_path=str(tmp_path / "x.ckpt"), callbacks=[saver])
    assert _tested_epoch(other) is None
