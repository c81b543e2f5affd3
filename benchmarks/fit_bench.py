"""A second fit in one Python process pays no import: five successive
``dlbasics.fit("experiment=linreg_tiny")`` calls in this process, timed one by one, against
one whole ``python -m dlbasics.train experiment=linreg_tiny`` process, alternating.

    python benchmarks/fit_bench.py [--repeats 3]

Prints each fit's seconds, the command line's, and each later fit's ratio to the command
line (the goal: at most 0.25x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

QUIET = ("callbacks.progress_bar=null", "callbacks.model_summary=null")


def command_line_seconds(folder: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dlbasics.train", "experiment=linreg_tiny", *QUIET],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3, help="command-line runs to time")
    parser.add_argument("--fits", type=int, default=5, help="successive fits in this process")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        command = [command_line_seconds(folder)]  # before this process imports anything
        import contextlib
        import io

        fits = []
        for _ in range(arguments.fits):
            started = time.perf_counter()
            import dlbasics

            with contextlib.redirect_stdout(io.StringIO()):
                dlbasics.fit("experiment=linreg_tiny", *QUIET)
            fits.append(time.perf_counter() - started)
            if len(command) < arguments.repeats:
                command.append(command_line_seconds(folder))
    line = statistics.median(command)
    print(f"python -m dlbasics.train experiment=linreg_tiny: median {line:.2f} s of "
          f"{', '.join(f'{s:.2f}' for s in command)}")
    for number, seconds in enumerate(fits, 1):
        print(f"fit {number}: {seconds:.2f} s ({seconds / line:.2f}x the command line)")
    later = statistics.median(fits[1:])
    print(f"later fits: median {later:.2f} s = {later / line:.2f}x (goal <= 0.25x)")


if __name__ == "__main__":
    main()
