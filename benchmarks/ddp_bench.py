"""DDP on 2 CPU processes against one process, per epoch (``python benchmarks/ddp_bench.py``).

Each setting runs ``python -m dlbasics.train`` twice, for ``E`` and ``3E`` epochs, and the
time per epoch is the difference divided by ``2E``: process start-up, imports, spawning the
second process and the final test cancel out. On a 2-core machine two processes share the
cores that one process already uses for its matrix products, so DDP is not expected to be
faster here: the point is that it is correct (tests/test_ddp.py) and what it costs.

    python benchmarks/ddp_bench.py [--workload W3] [--epochs 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench import WORKLOADS  # noqa: E402

SETTINGS = {
    "one process": ["trainer.accelerator=cpu"],
    "trainer=ddp, 2 CPU processes": ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
}


def wall_seconds(overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dlbasics.train", *overrides, f"hydra.run.dir={run_dir}/run",
             "logger=none", "figures=none", "callbacks.progress_bar=null"],
            check=True, capture_output=True,
        )  # fmt: skip
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="W3", choices=list(WORKLOADS))
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    workload = [o for o in WORKLOADS[args.workload].split() if "max_epochs" not in o]
    print(f"| {args.workload} | ms per epoch | whole run, {args.epochs} epochs, s |")
    print("| --- | ---: | ---: |")
    for name, extra in SETTINGS.items():
        short = wall_seconds([*workload, *extra, f"trainer.max_epochs={args.epochs}"])
        long = wall_seconds([*workload, *extra, f"trainer.max_epochs={3 * args.epochs}"])
        print(f"| {name} | {1e3 * (long - short) / (2 * args.epochs):.0f} | {short:.1f} |")


if __name__ == "__main__":
    main()
