"""A search's trials in parallel (``hydra/launcher=joblib``) against the same trials in
sequence (``python benchmarks/sweep_bench.py``).

Runs ``python -m dlbasics.train -m experiment=mlp_moons hparams_search=optuna`` twice with
the same study settings and sampler seed, so both commands train the same trials: once with
Hydra's basic launcher (one job after another, in this process) and once with joblib's
``n_jobs`` worker processes. Both ask the study for ``2 n_jobs`` trials at a time (the
default with joblib), so they train the same values. Reports the whole command's wall time and the speed-up.

    python benchmarks/sweep_bench.py [--trials 8] [--jobs 2] [--epochs 20]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_search(folder: Path, trials: int, jobs: int, epochs: int, parallel: bool) -> float:
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"] if parallel else []
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dlbasics.train", "-m", "experiment=mlp_moons",
         "hparams_search=optuna", f"hparams_search.n_trials={trials}",
         f"hparams_search.parallel_trials={2 * jobs}", f"trainer.max_epochs={epochs}",
         f"hparams_search.study_name={'parallel' if parallel else 'sequence'}",
         "callbacks.progress_bar=null", *launcher],
        check=True, capture_output=True, cwd=folder,
    )  # fmt: skip
    return time.perf_counter() - started


def trial_values(folder: Path) -> list[str]:
    """The sampled overrides of each job, to show both commands ran the same trials."""
    summary = next(folder.glob("outputs/mlp_moons/multiruns/*/summary.csv"))
    rows = sorted(csv.DictReader(open(summary)), key=lambda row: int(row["job"]))
    return [",".join(v for k, v in row.items() if "." in k) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        sequence = run_search(Path(one), args.trials, args.jobs, args.epochs, parallel=False)
        parallel = run_search(Path(two), args.trials, args.jobs, args.epochs, parallel=True)
        same = trial_values(Path(one)) == trial_values(Path(two))
    print(
        f"{args.trials} trials of experiment=mlp_moons, {args.epochs} epochs each, "
        f"{os.cpu_count()} cores; same trials in both: {same}"
    )
    print("| launcher | whole search, s | speed-up |")
    print("| --- | ---: | ---: |")
    print(f"| basic (in sequence) | {sequence:.1f} | 1.00x |")
    print(f"| joblib, n_jobs={args.jobs} | {parallel:.1f} | {sequence / parallel:.2f}x |")


if __name__ == "__main__":
    main()
