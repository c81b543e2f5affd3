"""What a run prints and records: the config tree, the closing table of metrics, and the
lines of ``train.log`` and ``metrics.json`` that say what was run and what came of it."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rich
from omegaconf import DictConfig, OmegaConf
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

# Rich's console, shared with the progress bar and Lightning's model summary.
console = rich.get_console()
log = logging.getLogger("dlbasics")

# Width off a terminal when $COLUMNS does not say (Rich would draw 80 columns).
WIDTH_OFF_TERMINAL = 160
# ``extra=`` of a log record meant for the run's log file only: the console shows the
# same thing another way (the config tree, the closing table).
FILE_ONLY = {"file_only": True}


class NotOnConsole(logging.Filter):
    """Keeps records logged with ``extra=FILE_ONLY`` off the handler it is attached to
    (the console's, see ``conf/hydra/default.yaml``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def plain_when_captured() -> None:
    """Output that is not a terminal (a pipe, a file, a CI log, ``!python -m ...`` in a
    notebook) gets no ANSI escape codes and no cursor moves, although a Jupyter kernel sets
    ``FORCE_COLOR`` for every process it starts. ``TTY_COMPATIBLE=1`` asks for them anyway
    (Rich's own switch); set by the command line for its process and the ones it starts."""
    if "TTY_COMPATIBLE" in os.environ or sys.stdout.isatty():
        return
    os.environ["TTY_COMPATIBLE"] = "0"
    rich.reconfigure()  # Rich decides on colours when a console is made


def use_full_width() -> None:
    """Draw at ``$COLUMNS`` or :data:`WIDTH_OFF_TERMINAL` columns where output is not a
    terminal (a pipe, ``| tee``, a CI log): Rich's 80 cut the config tree, the progress
    bar ("Epochs ━ 2… … < 0…") and the model summary. In a notebook, tables are HTML
    (the styles stay there); their plain-text copy gets no ANSI escape codes."""
    if console.is_jupyter:
        if console.color_system is not None:
            rich.reconfigure(color_system=None)
        return
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        rich.reconfigure(width=WIDTH_OFF_TERMINAL)


def print_config(cfg: DictConfig) -> None:
    """Show the composed config, one branch per top-level key or group."""
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(f"[bold]{key}")
        if isinstance(value, DictConfig):
            text = OmegaConf.to_yaml(value, resolve=True).rstrip() or "{}"
        else:
            text = str(value)
        # Long values (a deep run directory, a data.path) wrap rather than being cut off.
        branch.add(Syntax(text, "yaml", background_color="default", word_wrap=True))
    console.print(tree)


def log_overrides(cfg: DictConfig) -> None:
    """Write the run's overrides (its command line, or a sweep job's own values) into the
    run's log file; ``.hydra/config.yaml`` holds the config they composed."""
    from dlbasics.config.tree import run_record

    _, overrides = run_record(cfg.paths.output_dir)
    shown = shlex.join(overrides) if overrides else "none (the default config)"
    log.info("Overrides: %s", shown, extra=FILE_ONLY)


def final_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics a run ends with, by name: those of the closing table and metrics.json.
    The learning rate is left out: a setting, not a result."""
    return {
        name: float(metrics[name])
        for name in sorted(metrics)
        if name.startswith(("train/", "val/", "test/")) and name != "train/lr"
    }


def save_metrics(metrics: Mapping[str, float], run_dir: str | Path) -> Path:
    """Write the final metrics to ``<run dir>/metrics.json`` and into the run's log."""
    final = final_metrics(metrics)
    file = Path(run_dir) / "metrics.json"
    file.write_text(json.dumps(final, indent=2) + "\n")
    log.info("Final metrics: %s", json.dumps(final), extra=FILE_ONLY)
    return file


@dataclass
class RunSummary:
    """What the closing table says beside the metrics, and the warnings it ends with.

    ``rows``: rows per split; ``baseline``: what ignoring the inputs scores on the split the
    model was judged on (:meth:`~dlbasics.data.base.InMemoryDataModule.baseline`, plus its
    ``split``); ``best``: (what was best, epoch counted from 1); ``epochs``: epochs trained.
    Kept out of ``metrics.json``: those are the model's results, these describe the data
    and the run (the same baseline for every job of a sweep over the model).
    """

    rows: dict[str, int] | None = None
    baseline: dict[str, Any] | None = None
    best: list[tuple[str, int]] = field(default_factory=list)
    epochs: int = 0
    warnings: list[str] = field(default_factory=list)

    def table_rows(self) -> list[tuple[str, str]]:
        shown = []
        if self.baseline:
            b = self.baseline
            if b["metric"] == "acc":
                label = f"majority class '{b['predicts']}'"
            else:
                means = b["predicts"]
                label = "the training mean" + (f" {means[0]:.4g}" if len(means) == 1 else "s")
            shown.append((f"baseline/{b['split']}/{b['metric']} ({label})", f"{b['value']:.6g}"))
        for what, epoch in self.best:
            shown.append((f"best epoch ({what})", f"{epoch} of {self.epochs}"))
        if self.rows:
            counts = " / ".join(str(self.rows[name]) for name in ("train", "val", "test"))
            shown.append(("rows (train / val / test)", counts))
        return shown


def summarise(
    metrics: Mapping[str, float], datamodule, epochs: int, checkpoint=None, outcome=None
) -> RunSummary:
    """The :class:`RunSummary` of a finished run: its rows, the baseline of the split its
    final metrics come from (test, else validation), its best epoch (the one ``best.ckpt``
    holds, which the test scored; the objective's too where that differs)."""
    summary = RunSummary(epochs=int(epochs))
    if hasattr(datamodule, "rows"):  # a user's own datamodule may not say
        summary.rows = datamodule.rows()
    task = getattr(datamodule, "task", None)
    headline = {"classification": "acc", "regression": "r2"}.get(task)
    split = next((s for s in ("test", "val") if f"{s}/{headline}" in metrics), None)
    if split and hasattr(datamodule, "baseline"):
        summary.baseline = {"split": split, **datamodule.baseline(split)}
        summary.warnings += _no_better(metrics, summary.baseline)
    if checkpoint is not None and checkpoint.best_epoch is not None:  # counted from 0 there
        kept_by = checkpoint.monitor
        kept_by = kept_by if kept_by in metrics else checkpoint.fallback_monitor
        summary.best.append((f"lowest {kept_by}, best.ckpt", checkpoint.best_epoch + 1))
    tested = summary.best[0][1] if summary.best else None
    if outcome is not None and outcome.epoch not in (None, tested):  # the objective's own
        word = "highest" if outcome.direction == "maximize" else "lowest"
        summary.best.append((f"{word} {outcome.metric}", outcome.epoch))
    if summary.best and summary.best[0][1] == 1 and summary.epochs > 2:
        what = summary.best[0][0].split(",")[0]
        summary.warnings.append(
            f"The best epoch is the first of {summary.epochs} ({what} at epoch 1, never "
            "improved after): the model may have stopped learning after epoch 1. The learning "
            "rate may be too high (try a 10x lower optimizer.lr), or it predicts the majority "
            "class; best.ckpt holds the weights of epoch 1."
        )
    return summary


def _no_better(metrics: Mapping[str, float], baseline: dict[str, Any]) -> list[str]:
    """A warning when the model scores no better than its baseline on the same split."""
    split, value = baseline["split"], baseline["value"]
    which = "" if split == "test" else "the last epoch's "
    if baseline["metric"] == "acc":
        accuracy = float(metrics[f"{split}/acc"])
        if accuracy > value + 1e-6:  # the accuracy is computed in float32
            return []
        return [
            f"The model does no better than predicting the majority class: {which}{split}/acc "
            f"{accuracy:.4g}, always predicting '{baseline['predicts']}' (the training split's "
            f"most frequent class) {value:.4g}. Check that the features carry information "
            "about the target; try another optimizer.lr, more epochs or another model."
        ]
    r2, mse = float(metrics[f"{split}/r2"]), metrics.get(f"{split}/mse")
    if r2 > 0 and (mse is None or float(mse) < value):
        return []
    shown = f", {split}/mse {float(mse):.4g}" if mse is not None else ""
    return [
        f"The model does no better than predicting the mean: {which}{split}/r2 {r2:.4g}"
        f"{shown}; always predicting the training split's mean scores R² 0, {split}/mse "
        f"{value:.4g}. Check that the features carry information about the target; try "
        "another optimizer.lr, more epochs or another model."
    ]


def print_metrics(
    metrics: Mapping[str, float], run_dir: str, summary: RunSummary | None = None
) -> None:
    """A table of the final metrics (and what :class:`RunSummary` adds: baseline, best
    epoch, rows), its warnings, then where the run's files are."""
    table = Table(title="Final metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in final_metrics(metrics).items():
        table.add_row(name, f"{value:.6g}")
    extra = summary.table_rows() if summary else []
    if extra:
        table.add_section()
        for name, value in extra:
            table.add_row(name, value)
    console.print(table)
    if extra:  # the run's log gets the same lines (the console has the table)
        log.info("Run summary: %s", "; ".join(f"{n} {v}" for n, v in extra), extra=FILE_ONLY)
    for warning in summary.warnings if summary else []:
        log.warning(warning)
    # soft_wrap: a long path stays on one line, so it can be copied.
    console.print(f"Run directory: [bold]{run_dir}[/bold]", soft_wrap=True)
