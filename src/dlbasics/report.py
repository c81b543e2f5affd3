"""What a run prints: the composed config as a tree, and a closing table of metrics."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

console = Console()


def print_config(cfg: DictConfig) -> None:
    """Show the composed config, one branch per top-level key or group."""
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(f"[bold]{key}")
        if isinstance(value, DictConfig):
            text = OmegaConf.to_yaml(value, resolve=True).rstrip() or "{}"
        else:
            text = str(value)
        branch.add(Syntax(text, "yaml", background_color="default"))
    console.print(tree)


def print_metrics(metrics: Mapping[str, float], run_dir: str) -> None:
    """A table of the final metrics, then where the run's files are."""
    table = Table(title="Final metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in sorted(m for m in metrics if m.startswith(("train/", "val/", "test/"))):
        table.add_row(name, f"{metrics[name]:.6g}")
    console.print(table)
    # soft_wrap: a long path stays on one line, so it can be copied.
    console.print(f"Run directory: [bold]{run_dir}[/bold]", soft_wrap=True)
