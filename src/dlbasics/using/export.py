"""Ship a trained model as ONNX or pt2 (torch.export): raw features in, predictions out.

usage: python -m dlbasics.export run=<run dir> [format=onnx|pt2] [ckpt=best|last|<file>]

  run=DIR        the run directory
  format=FORMAT  onnx (default; needs the export extra: pip install 'dlbasics[export]')
                 or pt2 (torch.export: loads with torch.export.load, no extra needed)
  ckpt=CHOICE    best (default), last, or a .ckpt file

Writes <run dir>/export/<checkpoint>.<format>: raw features in (the run's standardisation
is part of the graph), class probabilities or values in the target's units out, any batch
size. A run on images takes images: float32 (batch, C, H, W) pixels in [0, 1], the run's
per-channel standardisation inside the graph. A run on a table with text columns exports
to ONNX with its categories encoded inside the graph: two inputs, numbers (float32) and
categories (strings), raw rows in (pt2 takes numbers only). Beside it,
<checkpoint>.<format>.json lists the feature columns in order, their encoding, the class
names, the opset and the versions used. The export is checked at once on the run's test
split against the checkpoint (onnx.checker and onnxruntime for ONNX); a difference above
1e-5 x max(1, |output|) fails the command and keeps nothing.

TorchScript is not offered: torch.jit.script/trace are deprecated in favour of
torch.export, whose file format is pt2.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics.cli import commands
from dlbasics.errors import ConfigError, DlbasicsError
from dlbasics.using.saved_run import (
    SavedRun,
    TrainedModel,
    feature_columns,
    open_run,
    takes_images,
)

FORMATS = ("onnx", "pt2")
# Largest difference accepted between the export and the checkpoint, relative to the size
# of the output where it is above 1: float32 keeps about 7 digits of a price in the hundreds.
TOLERANCE = 1e-5
EXTRA = "pip install 'dlbasics[export]'"


class ExportMismatch(DlbasicsError):
    """The exported model does not compute what the checkpoint computes."""

    exit_code = 1


def main(argv: list[str]) -> None:
    options, _ = commands.parse(argv, ("run", "format", "ckpt"), "export")
    target, checkpoint, kind, rows, difference = export_run(
        options.get("run"), options.get("format", "onnx"), options.get("ckpt")
    )
    sidecar = target.with_name(target.name + ".json")
    print(
        f"Exported {checkpoint} as {kind}: {target} ({target.stat().st_size / 1024:.0f} KiB)\n"
        f"Checked on the run's {rows}: {difference} (limit {TOLERANCE:g} x max(1, |output|))."
        f" Columns and classes: {sidecar}"
    )


def export_run(
    run: str | Path | None, kind: str = "onnx", ckpt: str | None = None
) -> tuple[Path, Path, str, str, Difference]:
    """Export run ``run``'s checkpoint ``ckpt`` as ``kind`` and check it; returns the file
    written, the checkpoint, the format, the rows it was checked on and the largest
    difference found."""
    if kind not in FORMATS:
        raise ConfigError(f"format={kind}: choose one of {', '.join(FORMATS)}")
    saved = open_run(run)
    checkpoint = saved.checkpoint(ckpt)
    if kind == "onnx":
        require_onnx()

    model = saved.load(ckpt)
    if kind == "pt2" and takes_text(model):
        raise ConfigError(
            f"format=pt2: the run reads text columns ({', '.join(takes_text(model))}), which "
            "torch.export cannot take; use format=onnx (its graph encodes them)"
        )
    # A checkpoint of another run (ckpt=<file>) is named by that run, not over this one's.
    own = checkpoint.parent == saved.directory / "checkpoints"
    name = checkpoint.stem if own else f"{checkpoint.parent.parent.name}-{checkpoint.stem}"
    target = saved.directory / "export" / f"{name}.{kind}"
    made_folder = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.{kind}")  # same suffix: loadable
    about = target.with_name(f".{target.name}.json.partial")
    try:
        versions = write(model, partial, kind)
        features, rows = check_inputs(saved, model)
        difference = largest_difference(model, partial, features)
        if not difference.relative <= TOLERANCE:
            raise ExportMismatch(
                f"the {kind} export differs from the checkpoint on the run's {rows}: "
                f"{difference} (above {TOLERANCE:g}); nothing was kept"
            )
        sidecar = target.with_name(target.name + ".json")
        about.write_text(json.dumps(describe(model, saved, kind, versions), indent=2) + "\n")
        partial.replace(target)  # the file and its description, moved in together
        about.replace(sidecar)
    finally:
        partial.unlink(missing_ok=True)
        about.unlink(missing_ok=True)
        if made_folder and not any(target.parent.iterdir()):
            target.parent.rmdir()  # a failed first export leaves no empty folder
    return target, checkpoint, kind, rows, difference


def takes_text(model: TrainedModel) -> list[str]:
    """The run's text columns (one-hot encoded categories), if any."""
    encoding = model.encoding
    return [column.name for column in encoding.categories] if encoding else []


def require_onnx() -> None:
    """A ConfigError naming the extra when onnx, onnxscript or onnxruntime is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not importlib.util.find_spec(m)]
    if missing:
        raise ConfigError(
            f"format=onnx needs {', '.join(missing)}, which come with the export extra: {EXTRA}"
        )


def write(model: TrainedModel, path: Path, kind: str) -> dict[str, Any]:
    """Export the raw-feature model to ``path``; returns the versions that made and check it."""
    import torch

    net = model.raw_feature_model()
    # Batch 4, not 1: torch.export specialises a dimension of size 1 to a constant.
    images = takes_images(model.description)
    example = torch.zeros(4, *(model.input_shape if images else [math.prod(model.input_shape)]))
    batch = {"features": {0: torch.export.Dim("batch", min=1)}}
    versions: dict[str, Any] = {"torch": torch.__version__}
    with warnings.catch_warnings():
        # Raised inside torch's own export passes; nothing to change on our side.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        if kind == "pt2":
            torch.export.save(torch.export.export(net, (example,), dynamic_shapes=batch), path)
            return versions
        import onnx

        # "torchvision is not installed. Skipping torchvision::nms": not used here.
        logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            dynamic_shapes=batch,
            input_names=["images" if images else "features"],
            output_names=["probabilities" if model.task == "classification" else "prediction"],
            verbose=False,
        )
        program.save(str(path), external_data=False)  # one self-contained file
    if takes_text(model):
        from dlbasics.using.table_graph import with_encoding

        onnx.save(with_encoding(onnx.load(str(path)), model.encoding, "features"), str(path))
    onnx.checker.check_model(str(path), full_check=True)
    opset = next(
        o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")
    )
    import onnxruntime  # checks the file in largest_difference
    import onnxscript  # what torch.onnx.export(dynamo=True) translates the graph with

    versions.update(
        onnx=onnx.__version__,
        onnxscript=onnxscript.__version__,
        onnxruntime=onnxruntime.__version__,
        opset=int(opset),
    )
    return versions


def load_exported(path: Path, description: dict[str, Any] | None = None):
    """A function ``float32 (rows, features) -> outputs`` running an exported model; for
    an ONNX graph that encodes a table's text columns (``description`` names them), a
    function of a DataFrame of the run's columns."""
    if path.suffix == ".onnx":
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError(
                f"model={path}: running an ONNX file needs onnxruntime: pip install "
                "onnxruntime (or the export extra: pip install 'dlbasics[export]')"
            )
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        if "categories" in names:
            from dlbasics.data.encoding import TableEncoding
            from dlbasics.using.table_graph import table_inputs

            encoding = TableEncoding.of(description)
            return lambda frame: session.run(None, table_inputs(frame, encoding))[0]
        shape = session.get_inputs()[0].shape  # [batch, C, H, W] for a run on images
        return lambda x: session.run(None, {names[0]: as_input(x, shape)})[0]
    if path.suffix == ".pt2":
        import torch

        exported = torch.export.load(str(path))
        shape = exported.example_inputs[0][0].shape
        program = exported.module()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return program(torch.from_numpy(as_input(x, shape))).numpy()

        return run
    raise ConfigError(f"model={path}: expected a .onnx or .pt2 file written by export")


def as_input(x: np.ndarray, shape) -> np.ndarray:
    """Rows shaped as an exported graph takes them: a table's (batch, n_features), or
    images (batch, C, H, W) from images or from their pixels flattened row by row (a CSV)."""
    if len(shape) == 4:
        return np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), *shape[1:])
    return x


def check_inputs(saved: SavedRun, model: TrainedModel):
    """The run's test split (else validation, else training) as raw rows, flattened
    (images as images); a table with text columns as its rows (a DataFrame)."""
    datamodule, split = saved.held_out_split(model)
    if takes_text(model):
        frame = datamodule.raw_split(split)
        return frame, f"{split} split ({len(frame)} rows)"
    x, _ = datamodule.original_split(split)
    if not takes_images(model.description):
        x = x.reshape(len(x), -1)
    return x.astype(np.float32), f"{split} split ({len(x)} rows)"


class Difference:
    """How far the export's outputs are from the checkpoint's: the largest absolute
    difference, and the largest relative to max(1, |output|) (what the limit applies to)."""

    def __init__(self, exported: np.ndarray, expected: np.ndarray) -> None:
        gap = np.abs(exported.astype(np.float64) - expected.astype(np.float64))
        self.absolute = float(gap.max()) if gap.size else 0.0
        scale = np.maximum(1.0, np.abs(expected.astype(np.float64)))
        self.relative = float((gap / scale).max()) if gap.size else 0.0

    def __str__(self) -> str:
        return f"largest difference {self.absolute:.2g} absolute, {self.relative:.2g} relative"


def largest_difference(model: TrainedModel, path: Path, features) -> Difference:
    """The largest differences between the exported file and the checkpoint."""
    import torch

    raw = features
    if takes_text(model):
        features = model.encoding.transform(features).astype(np.float32)
    with torch.no_grad():
        expected = model.raw_feature_model()(torch.from_numpy(features)).numpy()
    exported = load_exported(path, model.description)
    return Difference(exported(raw), expected)


def describe(model: TrainedModel, saved: SavedRun, kind: str, versions: dict) -> dict[str, Any]:
    """What a program using the exported file needs to know, as plain JSON."""
    import dlbasics

    return {
        "format": kind,
        "input": (
            "numbers: float32 (batch, n_numbers), the number columns (NaN where missing); "
            "categories: string (batch, n_categories), the text columns ('' where missing)"
            if takes_text(model)
            else "images: float32 (batch, C, H, W), pixels in [0, 1] (RGB or grey as input_shape "
            "says); the run's standardisation is inside the graph"
            if takes_images(model.description)
            else "features: float32 (batch, n_features), raw values in the columns' own units"
        ),
        "output": (
            "class probabilities (batch, n_classes), in class_names order"
            if model.task == "classification"
            else "predictions (batch, n_targets) in the target's own units"
        ),
        "task": model.task,
        # images: only where the data name their pixels (data=digits), not x1 .. x150528
        "feature_names": (
            model.description.get("feature_names") or None
            if takes_images(model.description)
            else feature_columns(model.description)
        ),
        "columns": model.description.get("columns"),
        "encoding": model.description.get("encoding"),
        "class_names": model.class_names,
        "target_name": model.target_column,
        "input_shape": model.input_shape,
        "num_outputs": model.description.get("num_outputs"),
        "run": str(saved.directory),
        "checkpoint": str(model.checkpoint),
        "versions": {"dlbasics": dlbasics.__version__, **versions},
    }


def cli() -> None:
    """Entry point of ``python -m dlbasics.export`` and ``dlbasics-export``."""
    commands.run(main, __doc__)
