"""Ship a trained model as ONNX or pt2 (torch.export): raw features in, predictions out.

usage: python -m dlbasics.export run=<run dir> [format=onnx|pt2] [ckpt=best|last|<file>]

  run=DIR        the run directory
  format=FORMAT  onnx (default; needs the export extra: pip install 'dlbasics[export]')
                 or pt2 (torch.export: loads with torch.export.load, no extra needed)
  ckpt=CHOICE    best (default), last, or a .ckpt file

Writes <run dir>/export/<checkpoint>.<format>: raw features in (the run's standardisation
is part of the graph), class probabilities or values in the target's units out, any batch
size. Beside it, <checkpoint>.<format>.json lists the feature columns in order, the class
names, the opset and the versions used. The export is checked at once on the run's test
split against the checkpoint (onnx.checker and onnxruntime for ONNX); a largest absolute
difference above 1e-5 fails the command and keeps nothing.

TorchScript is not offered: torch.jit.script/trace are deprecated in favour of
torch.export, whose file format is pt2.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics import commands
from dlbasics.errors import ConfigError, DlbasicsError
from dlbasics.saved_run import SavedRun, TrainedModel, feature_columns, open_run

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-5  # largest absolute difference accepted between the export and the checkpoint
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
        f"Checked on the run's {rows}: largest absolute difference {difference:.2g} "
        f"(limit {TOLERANCE:g}). Columns and classes: {sidecar}"
    )


def export_run(
    run: str | Path | None, kind: str = "onnx", ckpt: str | None = None
) -> tuple[Path, Path, str, str, float]:
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
    # A checkpoint of another run (ckpt=<file>) is named by that run, not over this one's.
    own = checkpoint.parent == saved.directory / "checkpoints"
    name = checkpoint.stem if own else f"{checkpoint.parent.parent.name}-{checkpoint.stem}"
    target = saved.directory / "export" / f"{name}.{kind}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.{kind}")  # same suffix: loadable
    about = target.with_name(f".{target.name}.json.partial")
    try:
        versions = write(model, partial, kind)
        features, rows = check_inputs(saved, model)
        difference = largest_difference(model, partial, features)
        if not difference <= TOLERANCE:
            raise ExportMismatch(
                f"the {kind} export differs from the checkpoint by up to {difference:.3g} on "
                f"the run's {rows} (above {TOLERANCE:g}); nothing was kept"
            )
        sidecar = target.with_name(target.name + ".json")
        about.write_text(json.dumps(describe(model, saved, kind, versions), indent=2) + "\n")
        partial.replace(target)  # the file and its description, moved in together
        about.replace(sidecar)
    finally:
        partial.unlink(missing_ok=True)
        about.unlink(missing_ok=True)
    return target, checkpoint, kind, rows, difference


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
    example = torch.zeros(4, len(model.feature_columns))
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
            input_names=["features"],
            output_names=["probabilities" if model.task == "classification" else "prediction"],
            verbose=False,
        )
        program.save(str(path), external_data=False)  # one self-contained file
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


def load_exported(path: Path):
    """A function ``float32 (rows, features) -> outputs`` running an exported model."""
    if path.suffix == ".onnx":
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError(
                f"model={path}: running an ONNX file needs onnxruntime: pip install "
                "onnxruntime (or the export extra: pip install 'dlbasics[export]')"
            )
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if path.suffix == ".pt2":
        import torch

        program = torch.export.load(str(path)).module()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return program(torch.from_numpy(x)).numpy()

        return run
    raise ConfigError(f"model={path}: expected a .onnx or .pt2 file written by export")


def check_inputs(saved: SavedRun, model: TrainedModel) -> tuple[np.ndarray, str]:
    """The run's test split (else validation, else training) as raw rows, flattened."""
    datamodule, split = saved.held_out_split(model)
    x, _ = datamodule.original_split(split)
    return x.reshape(len(x), -1).astype(np.float32), f"{split} split ({len(x)} rows)"


def largest_difference(model: TrainedModel, path: Path, features: np.ndarray) -> float:
    """Largest absolute difference between the exported file and the checkpoint."""
    import torch

    with torch.no_grad():
        expected = model.raw_feature_model()(torch.from_numpy(features)).numpy()
    exported = load_exported(path)
    return float(np.abs(exported(features) - expected).max())


def describe(model: TrainedModel, saved: SavedRun, kind: str, versions: dict) -> dict[str, Any]:
    """What a program using the exported file needs to know, as plain JSON."""
    import dlbasics

    return {
        "format": kind,
        "input": "features: float32 (batch, n_features), raw values in the columns' own units",
        "output": (
            "class probabilities (batch, n_classes), in class_names order"
            if model.task == "classification"
            else "predictions (batch, n_targets) in the target's own units"
        ),
        "task": model.task,
        "feature_names": feature_columns(model.description),
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


if __name__ == "__main__":
    cli()
