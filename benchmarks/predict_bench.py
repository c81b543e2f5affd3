"""``dlbasics.predict`` on a large CSV file against the floor of the same work.

The floor is what a throwaway script would do with memory to spare: ``pandas.read_csv`` of
the whole file, then one forward pass of the whole feature array through the same net
(``open_run(run).load().raw_feature_model()`` under ``torch.inference_mode``). It writes
nothing, so predict (which also writes every input column back with the class and the
probabilities, in bounded memory) cannot quite reach it: the ratio says how far it is.

Each measurement runs in its own fresh process, which reports its own peak RSS (VmHWM in
/proc/self/status, unaffected by the parent's size) and the seconds of the timed part, imports
and model loading excluded: read + forward for the floor, ``predict_file`` for predict (the
time its "Predicted N rows ... in X s" line prints, unrounded). The whole process's wall time
is given too. Measured: the floor, predict from the run (torch), from the exported
``best.onnx`` (onnxruntime) and ``best.pt2`` (torch.export), and predict from the run on a
file with a tenth of the rows (its peak memory should be the same: the file is streamed).

    python benchmarks/predict_bench.py [--rows 1000000]

The data (an ``id`` text column, 8 numeric features, a 3-class text label that is a noisy
linear function of them), a 3-epoch MLP trained on 2000 rows and its exports are made once
under ``benchmarks/.cache/`` (ignored by git) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
FEATURES = [f"x{i}" for i in range(8)]
CLASSES = np.array(["alpha", "beta", "gamma"])

# Peak resident memory of the process that runs it, in MiB.
_PEAK = (
    "def peak_mib():\n"
    "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "    return int(line.split()[1]) / 1024\n"
)

FLOOR = (
    _PEAK
    + """
import json, sys, time
import numpy as np, pandas as pd, torch
from dlbasics.using.saved_run import open_run
model = open_run(sys.argv[1]).load()
net, columns = model.raw_feature_model(), model.feature_columns
started = time.perf_counter()
frame = pd.read_csv(sys.argv[2])
with torch.inference_mode():
    out = net(torch.from_numpy(frame[columns].to_numpy(np.float32))).numpy()
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rows": len(out), "peak_mib": peak_mib()}))
"""
)

# predict's own CLI, with predict_file timed from outside (the line it prints is rounded).
PREDICT = (
    _PEAK
    + """
import json, sys, time
from dlbasics.using import predict
timed, inner = {}, predict.predict_file
def predict_file(*args):
    started = time.perf_counter()
    timed["rows"] = inner(*args)
    timed["seconds"] = time.perf_counter() - started
    return timed["rows"]
predict.predict_file = predict_file
predict.main(sys.argv[1:])
print(json.dumps({**timed, "peak_mib": peak_mib()}))
"""
)


def write_csv(path: Path, rows: int, seed: int) -> None:
    """Rows of (id, x0..x7, label): the label is the argmax of a fixed linear map plus noise."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(0).normal(size=(len(FEATURES), len(CLASSES)))
    partial = path.with_suffix(".partial")
    for start in range(0, rows, 200_000):  # in blocks: the benchmark itself stays small
        n = min(200_000, rows - start)
        x = rng.normal(size=(n, len(FEATURES))) * 10 + 50
        scores = (x - 50) @ weights / 10 + rng.normal(scale=0.3, size=(n, len(CLASSES)))
        frame = pd.DataFrame(x, columns=FEATURES)
        frame.insert(0, "id", [f"row{i:08d}" for i in range(start, start + n)])
        frame["label"] = CLASSES[scores.argmax(axis=1)]
        frame.to_csv(partial, mode="a" if start else "w", header=not start, index=False,
                     float_format="%.6g")  # fmt: skip
    partial.replace(path)


def prepare(rows: int) -> tuple[Path, Path, Path]:
    """The run directory and the two CSV files to predict on (made once, then reused)."""
    CACHE.mkdir(exist_ok=True)
    files = {n: CACHE / f"predict_{n}.csv" for n in (2000, rows, rows // 10)}
    for n, file in files.items():
        if not file.exists():
            print(f"writing {file.name} ({n:,} rows)", flush=True)
            write_csv(file, n, seed=n)
    run = CACHE / "run"
    python = [sys.executable, "-m"]
    if not (run / "export" / "best.pt2").exists():
        print("training the model and exporting it (once)", flush=True)
        subprocess.run([*python, "dlbasics.train", "data=csv", f"data.path={files[2000]}",
                        "data.target=label", "data.drop=[id]", "trainer.max_epochs=3",
                        "logger=none", "figures=none", f"hydra.run.dir={run}"],
                       check=True, capture_output=True)  # fmt: skip
        for kind in ("onnx", "pt2"):
            subprocess.run([*python, "dlbasics.export", f"run={run}", f"format={kind}"],
                           check=True, capture_output=True)  # fmt: skip
    return run, files[rows], files[rows // 10]


def measure(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python; its JSON report plus the whole process's seconds."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                         capture_output=True, text=True, cwd=CACHE)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{args} failed:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {**report, "process": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    run, big, small = prepare(args.rows)
    out = CACHE / "out.csv"
    best = run / "export" / "best"
    cases = {
        "floor: read_csv + one forward (torch)": (FLOOR, run, big),
        "predict run= (torch)": (PREDICT, f"run={run}", f"input={big}", f"output={out}"),
        "predict model=best.onnx": (PREDICT, f"model={best}.onnx", f"input={big}", f"output={out}"),
        "predict model=best.pt2": (PREDICT, f"model={best}.pt2", f"input={big}", f"output={out}"),
        "predict run= (torch), 1/10 of the rows": (
            PREDICT, f"run={run}", f"input={small}", f"output={out}"),
    }  # fmt: skip
    results = {}
    for label, (code, *argv) in cases.items():
        print(f"measuring: {label}", flush=True)
        results[label] = measure(code, *argv)
    out.unlink(missing_ok=True)

    floor = next(iter(results.values()))
    per_row = floor["seconds"] / floor["rows"]
    print(f"\n{big.name}: {big.stat().st_size / 2**20:.0f} MiB, {os.cpu_count()} CPU cores\n")
    print(
        "| measurement | rows | timed s | process s | rows/s | peak RSS MiB | time/row vs floor |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r in results.items():
        print(
            f"| {label} | {r['rows']:,} | {r['seconds']:.2f} | {r['process']:.2f} "
            f"| {r['rows'] / r['seconds']:,.0f} | {r['peak_mib']:.0f} "
            f"| {r['seconds'] / r['rows'] / per_row:.2f}x |"
        )


if __name__ == "__main__":
    main()
