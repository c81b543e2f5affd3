"""What a range test costs against one epoch of the run it is for.

    python benchmarks/lr_find_bench.py [--repeats 3] [--only mlp_moons cnn_digits]

For each preset, in one warm process (imports paid once, before timing) and alternating:
``dlbasics.lr_find(preset)`` (the whole call, and its range test alone) against one epoch
of ``dlbasics.fit(preset)`` with the default config (logging, checkpoints, figures),
measured as the difference between a 12-epoch and a 2-epoch fit divided by 10, so the
start-up and the test of a run are not counted as an epoch. Then one whole
``python -m dlbasics.lr_find`` process against one of ``python -m dlbasics.train ...
trainer.max_epochs=1``. Prints medians.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

QUIET = ("callbacks.progress_bar=null", "callbacks.model_summary=null")


def seconds(function, *args) -> tuple[float, object]:
    """Seconds ``function(*args)`` takes, its printing swallowed, and what it returned."""
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = function(*args)
    return time.perf_counter() - started, result


def process_seconds(folder: str, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["mlp_moons", "cnn_digits"])
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        import dlbasics

        seconds(dlbasics.lr_find, "experiment=linreg_tiny")  # the imports
        for preset in arguments.only:
            preset_arg = f"experiment={preset}"
            calls, tests, epochs, recommended = [], [], [], None
            for _ in range(arguments.repeats):
                call, found = seconds(dlbasics.lr_find, preset_arg)
                calls.append(call)
                tests.append(found.seconds)
                recommended = found.recommended
                short, _ = seconds(dlbasics.fit, preset_arg, "trainer.max_epochs=2", *QUIET)
                long, _ = seconds(dlbasics.fit, preset_arg, "trainer.max_epochs=12", *QUIET)
                epochs.append((long - short) / 10)
            call, test, epoch = (statistics.median(v) for v in (calls, tests, epochs))
            print(
                f"{preset}: lr_find {call:.2f} s (range test {test:.2f} s), one epoch "
                f"{epoch:.2f} s: lr_find = {call / epoch:.1f} epochs, its range test "
                f"{test / epoch:.2f}; recommended lr {recommended:g}"
            )
            finder = process_seconds(folder, "dlbasics.lr_find", preset_arg)
            train = process_seconds(
                folder, "dlbasics.train", preset_arg, "trainer.max_epochs=1", *QUIET
            )
            print(
                f"  processes: python -m dlbasics.lr_find {finder:.1f} s, "
                f"python -m dlbasics.train ... trainer.max_epochs=1 {train:.1f} s"
            )


if __name__ == "__main__":
    main()
