"""K seeds as one vectorised run (``seeds=[...]``) against one run and against a seed sweep
(``python benchmarks/seeds_bench.py``).

For each preset, in alternation and ``--repeats`` times: the whole command
``python -m dlbasics.train experiment=<preset> seed=0`` (one run), then
``seeds=[0,...,K-1]`` (K members in one process); once, the seed sweep that a
``seeds=`` run replaces, ``-m seed=0,...,K-1`` (K runs one after another). Reports the
median wall time of each and the ratios to one run, and the mean ``test/acc`` of the
members and of the sweep's jobs: the same K runs, stacked or apart, agree (exactly without
dropout; cnn_digits has dropout, whose masks the members draw from one stream).

    python benchmarks/seeds_bench.py [--presets mlp_moons cnn_digits] [--seeds 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(folder: Path, *words: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dlbasics.train", *words, "callbacks.progress_bar=null"],
        check=True, capture_output=True, cwd=folder,
    )  # fmt: skip
    return time.perf_counter() - started


def mean_test_accuracy(folder: Path) -> float:
    """The mean of ``test/acc`` over the jobs (or members) whose ``summary.csv`` is there."""
    (summary,) = folder.glob("outputs/*/*/*/summary.csv")
    values = [float(row["test/acc"]) for row in csv.DictReader(open(summary))]
    return statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["mlp_moons", "cnn_digits"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-sweep", action="store_true", help="skip the -m seed=... sweep")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    listed = "[" + ",".join(map(str, seeds)) + "]"
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} at the start; K = {args.seeds}")
    print(
        "| preset | one run, s | seeds= run, s | ratio | seed sweep (-m), s | ratio "
        "| mean test/acc: members, sweep |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for preset in args.presets:
        one, stacked = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                one.append(timed(Path(folder), f"experiment={preset}", "seed=0"))
            with tempfile.TemporaryDirectory() as folder:
                stacked.append(timed(Path(folder), f"experiment={preset}", f"seeds={listed}"))
                stacked_accuracy = mean_test_accuracy(Path(folder))
        single, together = statistics.median(one), statistics.median(stacked)
        sweep_cells = f"| | | {stacked_accuracy:.4f} |"
        if not args.no_sweep:
            with tempfile.TemporaryDirectory() as folder:
                sweep = timed(
                    Path(folder), "-m", f"experiment={preset}", f"seed={','.join(map(str, seeds))}"
                )
                apart = mean_test_accuracy(Path(folder))
            sweep_cells = (
                f"| {sweep:.1f} | {sweep / single:.2f}x | {stacked_accuracy:.4f}, {apart:.4f} |"
            )
        print(
            f"| {preset} | {single:.1f} | {together:.1f} | {together / single:.2f}x "
            f"{sweep_cells}"
        )


if __name__ == "__main__":
    main()
