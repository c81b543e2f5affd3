"""What a run prints and records: the config tree, the closing table of metrics, and the
lines of ``train.log`` and ``metrics.json`` that say what was run and what came of it."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

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
    from dlbasics.config import run_record

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


def print_metrics(metrics: Mapping[str, float], run_dir: str) -> None:
    """A table of the final metrics, then where the run's files are."""
    table = Table(title="Final metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in final_metrics(metrics).items():
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    # soft_wrap: a long path stays on one line, so it can be copied.
    console.print(f"Run directory: [bold]{run_dir}[/bold]", soft_wrap=True)
