"""The summary every multirun and search ends with: which job did best, and by how much.

:class:`SweepSummary` is a Hydra callback (conf/hydra/default.yaml): when a multirun ends,
whatever its sweeper and launcher, it reads what each job left in its run directory
(``.hydra/overrides.yaml``, ``objective.json``, ``metrics.json``, ``failed.txt``), prints a
table sorted by the objective, best first, and writes the same to ``summary.csv`` in the
sweep directory. Jobs that differ only in their ``seed`` are also grouped into one row per
setting with each metric's mean and standard deviation (``summary_by_setting.csv``).

Summarise a sweep again, e.g. one that was interrupted:
``python -m dlbasics.sweeps outputs/train/multiruns/<sweep>``. Free of torch imports.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dlbasics.config import rundir
from dlbasics.training.objective import Outcome

SUMMARY_FILE = "summary.csv"
BY_SETTING_FILE = "summary_by_setting.csv"
SEED_KEY = "seed"


@dataclass
class Job:
    number: int
    run_dir: Path
    overrides: dict[str, str]
    outcome: Outcome | None
    metrics: dict[str, float] = field(default_factory=dict)
    failure: str | None = None

    @property
    def value(self) -> float | None:
        return self.outcome.value if self.outcome else None

    @property
    def done(self) -> bool:
        """Finished with a value of its objective (else it failed, or measured nothing)."""
        return self.value is not None

    def sort_key(self) -> tuple:
        """Finished jobs first, grouped by objective (a sweep over data=moons,linear has
        two), best first within each; then failed jobs, by number."""
        if not self.done:
            return (1, "", math.inf, self.number)
        objective = self.outcome.objective
        return (0, objective.metric, objective.sort_key(self.value), self.number)

    def setting(self) -> tuple[tuple[str, str], ...]:
        """The job's overrides without its seed: what seeds are repeated over."""
        return tuple(sorted((k, v) for k, v in self.overrides.items() if k != SEED_KEY))


def job_folders(sweep_dir: Path) -> list[Path]:
    """The sweep directory, and its namesakes under other task names: jobs of a sweep over
    presets (``-m experiment=a,b``) go under each preset's own ``outputs/<task_name>/``."""
    if sweep_dir.parent.name != "multiruns":
        return [sweep_dir]
    log_dir = sweep_dir.parent.parent.parent
    return [
        sweep_dir,
        *(d for d in log_dir.glob(f"*/multiruns/{sweep_dir.name}") if d != sweep_dir),
    ]


def read_jobs(sweep_dir: Path) -> list[Job]:
    """Every job of a sweep (numbered folders with a ``.hydra`` folder), best first."""
    jobs = []
    for run_dir in (d for folder in job_folders(sweep_dir) for d in folder.iterdir()):
        saved = run_dir / ".hydra" / "overrides.yaml"
        if not (run_dir.name.isdigit() and saved.is_file()):
            continue
        overrides = {}
        for line in OmegaConf.load(saved):
            key, _, value = str(line).partition("=")
            overrides[key.lstrip("+~")] = value
        metrics_file = run_dir / "metrics.json"
        jobs.append(
            Job(
                number=int(run_dir.name),
                run_dir=run_dir,
                overrides=overrides,
                outcome=Outcome.read(run_dir),
                metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
                failure=rundir.failure(run_dir),
            )
        )
    return sorted(jobs, key=Job.sort_key)


def varying_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job: the columns worth showing."""
    keys = sorted({key for job in jobs for key in job.overrides})
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def _metrics_compared(jobs: list[Job]) -> set[str]:
    return {job.outcome.metric for job in jobs if job.done}


def _objective_column(jobs: list[Job]) -> str:
    names = _metrics_compared(jobs)
    return f"best {names.pop()}" if len(names) == 1 else "best (objective)"


def summarize(sweep_dir: str | Path, console=None) -> list[Job]:
    """Print the sweep's table(s) and write ``summary.csv`` (and the per-setting file).

    A ``seeds=`` run is summarised as the sweep over its seeds that it is; its tables say
    *member* where a sweep's say *job*."""
    from rich.table import Table

    from dlbasics.training import report

    report.use_full_width()
    sweep_dir = Path(sweep_dir).resolve()  # paths in the table and CSV work from anywhere
    console = console or report.console
    jobs = read_jobs(sweep_dir)
    if not jobs:
        return jobs
    keys = varying_keys(jobs)
    metric_names = sorted({name for job in jobs for name in job.metrics})
    shown = [n for n in metric_names if n.startswith("test/")] or metric_names[:4]
    objective = _objective_column(jobs)
    from dlbasics.using.saved_run import is_seeds_run

    noun = "member" if is_seeds_run(sweep_dir) else "job"
    title = f"{'Seeds' if noun == 'member' else 'Sweep'} summary ({len(jobs)} {noun}s, best first)"
    table = Table(title=title, title_justify="left")
    for column in (noun, *keys, objective, "epoch", *shown):
        table.add_column(column, justify="left" if column in keys else "right")
    rows = []
    for job in jobs:
        epoch = job.outcome.epoch if job.outcome else None
        values = [job.metrics.get(name) for name in shown]
        table.add_row(
            str(job.number),
            *(job.overrides.get(k, "") for k in keys),
            _fmt(job.value) if job.done else "failed",
            "" if epoch is None else str(epoch),
            *(_fmt(v) for v in values),
        )
        rows.append(
            {
                "job": job.number,
                **{k: job.overrides.get(k, "") for k in keys},
                "objective": job.outcome.metric if job.outcome else "",
                "direction": job.outcome.direction if job.outcome else "",
                "best": "" if job.value is None else job.value,
                "best_epoch": "" if epoch is None else epoch,
                **{name: job.metrics.get(name, "") for name in metric_names},
                "status": "done" if job.done else "failed",
                "run_dir": str(job.run_dir),
            }
        )
    console.print(table)
    _write_csv(sweep_dir / SUMMARY_FILE, rows)
    if len(_metrics_compared(jobs)) == 1:  # jobs compared by different metrics have no "best"
        best = "Best member" if noun == "member" else "Best job of this sweep"
        console.print(f"{best}: [bold]{jobs[0].run_dir}[/bold]", soft_wrap=True)
    failed = [job for job in jobs if not job.done]
    if failed:
        console.print(
            f"{len(failed)} {noun}(s) failed: "
            + ", ".join(
                f"{job.number} ({(job.failure or 'no result').splitlines()[0]})" for job in failed
            ),
            soft_wrap=True,
        )
    _by_setting(jobs, keys, shown, metric_names, objective, sweep_dir, console)
    console.print(f"Summary: {sweep_dir / SUMMARY_FILE}", soft_wrap=True)
    return jobs


def _by_setting(jobs, keys, shown, metric_names, objective, sweep_dir, console) -> None:
    """Mean ± standard deviation over seeds, one row per setting, where a setting ran
    with more than one seed."""
    from rich.table import Table

    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        if job.done:
            groups.setdefault(job.setting(), []).append(job)
    if SEED_KEY not in keys or not any(len(group) > 1 for group in groups.values()):
        return
    setting_keys = [k for k in keys if k != SEED_KEY]

    def stats(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    ordered = sorted(
        groups.values(),
        key=lambda group: (
            group[0].outcome.metric,
            group[0].outcome.objective.sort_key(stats([j.value for j in group])[0]),
        ),
    )
    table = Table(
        title="By setting, over seeds: mean ± standard deviation (best first)",
        title_justify="left",
    )
    for column in (*setting_keys, "seeds", objective, *shown):
        table.add_column(column, justify="left" if column in setting_keys else "right")
    rows = []
    for group in ordered:
        setting = dict(group[0].setting())
        cells, row = [], {k: setting.get(k, "") for k in setting_keys}
        row["seeds"] = len(group)
        for name, values in (
            ("best", [j.value for j in group]),
            *((n, [j.metrics[n] for j in group if n in j.metrics]) for n in metric_names),
        ):
            mean, std = stats(values) if values else (None, None)
            row[f"{name}_mean"], row[f"{name}_std"] = mean, std
            if name == "best" or name in shown:
                cells.append(f"{_fmt(mean)} ± {_fmt(std)}" if values else "")
        table.add_row(*(str(setting.get(k, "")) for k in setting_keys), str(len(group)), *cells)
        rows.append(row)
    console.print(table)
    _write_csv(sweep_dir / BY_SETTING_FILE, rows)


def _write_csv(file: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with file.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


class SweepSummary(Callback):
    """Hydra callback: :func:`summarize` the sweep directory when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        drop_empty_pattern_folder(config.hydra.launcher.get("submitit_folder"))
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            summarize(sweep_dir)


def drop_empty_pattern_folder(folder: str | None) -> None:
    """Remove the empty folder that Hydra's submitit launcher leaves behind.

    submitit makes its folder as configured (the plugin's default: ``.submitit/%j``) before
    it puts each job's id in place of ``%j``, so one folder named ``%j`` stays empty beside
    the jobs' own folders.
    """
    if folder and "%" in folder:
        path = Path(folder)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def main(arguments: list[str] | None = None) -> None:
    """``python -m dlbasics.sweeps <sweep dir>``: the summary of a sweep, again."""
    arguments = sys.argv[1:] if arguments is None else arguments
    if len(arguments) != 1 or arguments[0].startswith("-"):
        print(
            "Usage: python -m dlbasics.sweeps <sweep dir>  (e.g. outputs/train/multiruns/<sweep>)"
        )
        sys.exit(0 if arguments and arguments[0] in ("-h", "--help") else 2)
    sweep_dir = Path(arguments[0])
    if not sweep_dir.is_dir():
        print(f"Error: {sweep_dir}: no such directory", file=sys.stderr)
        sys.exit(2)
    if not summarize(sweep_dir):
        print(f"Error: {sweep_dir}: no jobs in it (numbered run directories)", file=sys.stderr)
        sys.exit(2)
