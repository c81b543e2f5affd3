"""Score a trained run on its own test split, or on other data.

usage: python -m dlbasics.evaluate run=<run dir> [ckpt=best|last|<file>] [data.KEY=VALUE ...]

  run=DIR        the run directory (outputs/<task>/runs/<date>_<time>)
  ckpt=CHOICE    best (default: what the run's own test used), last, or a .ckpt file
  data.KEY=VALUE evaluate on other data instead, e.g. data.path=new.csv (CSV runs) or
                 data.noise=20 (generated data): all its rows, scaled with the run's
                 *training* statistics

Without data overrides the run's data and split are rebuilt from its saved config and the
model is scored on its test split (the validation split if it has none), giving the
numbers the run logged. The metrics are printed and written to
<run dir>/eval/<date>_<time>/metrics.json, with what was scored in evaluated.json.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlbasics.cli import commands
from dlbasics.errors import ConfigError
from dlbasics.using.saved_run import SavedRun, TrainedModel, open_run


def main(argv: list[str]) -> None:
    options, overrides = commands.parse(argv, ("run", "ckpt"), "evaluate", passthrough="data.")
    metrics, model, scored, folder = evaluate_run(options.get("run"), options.get("ckpt"), overrides)
    print_metrics(metrics, model, scored["data"], folder)


def evaluate_run(
    run: str | Path | None, ckpt: str | None = None, overrides: list[str] = ()
) -> tuple[dict[str, float], TrainedModel, dict, Path]:
    """Score run ``run``'s checkpoint ``ckpt`` on its test split, or on its data with
    ``overrides`` (``data.path=new.csv``); write ``<run dir>/eval/<date>_<time>/``.
    Returns the metrics, the model, what was scored and the folder written."""
    overrides = list(overrides)
    saved = open_run(run)
    data = data_config(saved, overrides)
    if overrides:  # the user's file is read and checked before Lightning is imported
        from dlbasics.data.checks import check_file

        check_file(data)
    saved.checkpoint(ckpt)  # a missing checkpoint is reported before loading

    model = saved.load(ckpt)
    metrics, scored = evaluate(model, saved, data, overrides)
    folder = new_folder(saved.directory / "eval")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    about = {"run": str(saved.directory), "checkpoint": str(model.checkpoint), **scored}
    (folder / "evaluated.json").write_text(json.dumps(about, indent=2) + "\n")
    return metrics, model, scored, folder


def new_folder(parent: Path) -> Path:
    """``parent/<date>_<time>`` (``-2``, ``-3``... within one second), made empty."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for attempt in range(1, 1000):
        folder = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise ConfigError(f"{parent}: cannot make a new folder for this evaluation")


# How every datamodule splits and serves its rows (InMemoryDataModule's arguments): other
# data are scored whole, with the run's own scaling, so these would change nothing there.
SPLIT_KEYS = (
    "batch_size", "val_fraction", "test_fraction", "standardize", "standardize_target",
    "stratify", "shuffle", "split_seed", "shuffle_seed", "eval_batch_size", "steps_per_chunk",
    "augment",
)  # fmt: skip


def data_config(saved: SavedRun, overrides: list[str]) -> DictConfig:
    """The run's data config with ``overrides`` applied (each key must exist)."""
    from dlbasics.config.checks import check_key_exists

    for override in overrides:
        key = override.split("=", 1)[0]
        if key.startswith(("+", "~")) or key == "data._target_":
            raise ConfigError(f"{key}: evaluate changes values of the run's data, not its kind")
        if key.removeprefix("data.") in SPLIT_KEYS:
            raise ConfigError(
                f"{key}: evaluate scores the run's own test split, or all rows of other data "
                "(data.path=..., data.noise=...) with the run's scaling; the split and "
                "scaling keys stay as the run had them"
            )
        try:
            check_key_exists(saved.config, key)
        except ConfigError as error:  # without train's hint to add a key with +
            raise ConfigError(str(error).split(" (Add a new key")[0]) from None
    config = OmegaConf.merge(saved.config, OmegaConf.from_dotlist(overrides))
    described = saved.data_description() if overrides else {}
    names = described.get("columns") or described.get("feature_names")
    if names and "features" in config.data:
        # A CSV file: the run's columns, by name, in training order, and its task (their
        # encoding is the run's own: see evaluate()).
        config.data.merge_with({"features": names, "task": described["task"], "drop": []})
    return config.data


def evaluate(
    model: TrainedModel, saved: SavedRun, data: DictConfig, overrides: list[str]
) -> tuple[dict[str, float], dict]:
    """Score ``model``; returns the metrics and a description of what was scored."""
    from dlbasics.training.builders import build, quiet_lightning

    quiet_lightning()
    if not overrides:
        datamodule, split = saved.held_out_split(model)  # the split the run tested on
        x, y = datamodule.splits[split]
        inputs = datamodule.model_inputs  # images: stored uint8, standardised per batch
        described = f"the run's {split} split ({len(x)} rows)"
        prefix = split
    else:
        datamodule = build(data, "data")
        if hasattr(datamodule, "table_encoding"):  # a table: levels and fills of the run
            datamodule.table_encoding = model.encoding
        x, y = datamodule.load_arrays()
        if model.task == "classification":
            names = getattr(datamodule, "label_names", {})
            y = [names.get(str(label), str(label)) for label in y]
        source = f"data with {' '.join(overrides)}"
        x, y = model.model_ready(x, y, source)
        inputs = None  # made model-ready above, as the run's training scaled them
        described = (
            f"all {len(x)} rows of the data with {' '.join(overrides)}, scaled with the "
            "run's training statistics"
        )
        prefix = "eval"
    metrics = score(model, x, y, inputs, datamodule.eval_batch_size)
    named = {f"{prefix}/{name}": value for name, value in metrics.items()}
    return named, {"data": described, "overrides": overrides, "rows": len(x)}


def score(model: TrainedModel, x, y, inputs=None, batch: int = 4096) -> dict[str, float]:
    """The module's own evaluation metrics (loss and the task's) over all of ``x``, in
    batches of ``batch`` rows (each through ``inputs`` first, where given).

    The same computation as the run's test, without a Trainer: nothing is logged, and
    Ctrl-C reaches the command (Lightning would turn it into exit 1).
    """
    import torch

    module = model.module
    with torch.inference_mode():
        batches = torch.split(x, batch)
        prediction = torch.cat([module(inputs(b) if inputs else b) for b in batches])
        metrics = module.evaluation_metrics(prediction, y)
    return {name: float(value) for name, value in metrics.items()}


def print_metrics(metrics: dict[str, float], model: TrainedModel, data: str, folder: Path) -> None:
    from rich.table import Table

    from dlbasics.training.report import console

    epoch = f" (the weights of epoch {model.best_epoch})" if model.best_epoch else ""
    print(f"Scored {model.checkpoint}{epoch} on {data}.")
    table = Table(title="Evaluation", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    console.print(f"Written to [bold]{folder / 'metrics.json'}[/bold]", soft_wrap=True)


def cli() -> None:
    """Entry point of ``python -m dlbasics.evaluate`` and ``dlbasics-evaluate``."""
    commands.run(main, __doc__)
