"""dlbasics against a hand-written PyTorch loop on the same work (`make bench`).

For each workload W1-W5 the same process alternates a plain loop (tensors in memory, one
``randperm`` per epoch, batches sliced from it, validation loss and accuracy per epoch) and a
full ``dlbasics.train`` run composed from the documented config keys (TensorBoard logging,
checkpoints, default callbacks). It reports the steady-state time per epoch (from the end of
the first epoch to the end of the last), the ratio, and checks that both reach the same loss;
and the same dlbasics run with a callback listening to ``on_before_optimizer_step``, which
turns the fast path off (Lightning's hook path: one Lightning step per minibatch).
Then it times whole runs with the default figures against ``figures=none`` (the figures'
own cost), and whole processes: ``python -m dlbasics.train`` of W2 against a plain script
that imports torch and runs the same 1000 steps, with their peak memory.

    python benchmarks/bench.py [--repeats 3] [--only W3 W4] [--no-startup] [--no-figures]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dlbasics.config.tree import CONFIG_DIR

HERE = Path(__file__).resolve().parent

WORKLOADS = {
    "W1": "model=linreg data=make_regression data.n_samples=100 data.n_features=1 "
    "data.n_informative=1 data.noise=10 data.batch_size=16 optimizer=sgd optimizer.lr=0.01 "
    "trainer.max_epochs=100",
    "W2": "model=linreg data=linear data.n_samples=100 data.batch_size=null optimizer=sgd "
    "optimizer.lr=0.01 trainer.max_epochs=1000",
    "W3": "model=mlp model.hidden_sizes=[64,64] model.activation=relu data=moons "
    "data.n_samples=10000 data.noise=0.2 data.val_fraction=0.2 data.test_fraction=0 "
    "data.batch_size=64 optimizer=adam optimizer.lr=0.001 trainer.max_epochs=20",
    "W4": "model=cnn model.channels=[16,32] model.kernel_size=3 model.hidden=64 data=digits "
    "data.batch_size=64 optimizer=adam optimizer.lr=0.001 trainer.max_epochs=30",
    # MNIST-shaped: 60,000 + 10,000 images of 1 x 28 x 28 in MNIST's own files, read by
    # torchvision's class (generated into a temporary data.root: nothing is downloaded).
    "W5": "model=cnn model.channels=[16,32] model.kernel_size=3 model.hidden=64 data=mnist "
    "data.download=false data.batch_size=128 optimizer=adam optimizer.lr=0.001 "
    "trainer.max_epochs=3",
}

EPOCH_ENDS: list[float] = []  # filled by EpochTimer during a dlbasics run


class EpochTimer:
    """Callback recording when each training epoch (validation included) ends."""

    def __new__(cls):
        from lightning.pytorch import Callback

        class _Timer(Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                EPOCH_ENDS.append(time.perf_counter())

        return _Timer()


class StepListener:
    """Callback with a per-step hook: dlbasics then takes Lightning's hook path (one
    Lightning step per minibatch, every hook) instead of its fast path."""

    def __new__(cls):
        from lightning.pytorch import Callback

        class _Listener(Callback):
            steps = 0

            def on_before_optimizer_step(self, trainer, pl_module, optimizer):
                self.steps += 1

        return _Listener()


def mnist_shaped_root() -> str:
    """A folder holding MNIST-shaped IDX files (generated once per process): W5's data.root."""
    global _MNIST_ROOT
    if _MNIST_ROOT is None:
        import numpy as np

        _MNIST_ROOT = tempfile.mkdtemp(prefix="w5-")
        raw = Path(_MNIST_ROOT) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        generator = np.random.default_rng(0)
        for stem, count in (("train", 60_000), ("t10k", 10_000)):
            labels = generator.integers(0, 10, count).astype(np.uint8)
            images = generator.integers(0, 60, (count, 28, 28), dtype=np.uint8)
            for digit in range(10):  # a bright band per class: a task the CNN can learn
                images[labels == digit, 2 * digit : 2 * digit + 4, 4:24] = 250
            header = np.array([2051, count, 28, 28], dtype=">u4").tobytes()
            (raw / f"{stem}-images-idx3-ubyte").write_bytes(header + images.tobytes())
            header = np.array([2049, count], dtype=">u4").tobytes()
            (raw / f"{stem}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
    return _MNIST_ROOT


_MNIST_ROOT: str | None = None


def compose_workload(name: str, run_dir: str, *extra: str):
    data_root = [f"data.root={mnist_shaped_root()}"] if "data=mnist" in WORKLOADS[name] else []
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                *WORKLOADS[name].split(),
                *data_root,
                f"paths.output_dir={run_dir}",
                "+callbacks.epoch_timer._target_=__main__.EpochTimer",
                *extra,
            ],
        )


def steady_per_epoch(ends: list[float]) -> float:
    """Median time between consecutive epoch ends: the first epoch (warm-up) and stray
    pauses of a shared machine do not count."""
    return statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False))


# torch's own default (one thread per core): what a learner's hand-written loop runs with.
# dlbasics' train() sets the run's thread count (trainer.threads) and the process keeps it,
# so each plain loop sets this back first.
DEFAULT_THREADS = torch.get_num_threads()


def run_dlbasics(name: str, hook_path: bool = False) -> tuple[float, float]:
    """Seconds per epoch and the final validation (or train) loss of a dlbasics run; with
    ``hook_path`` a callback listens to ``on_before_optimizer_step``."""
    from dlbasics.training.train import train

    EPOCH_ENDS.clear()
    listener = ["+callbacks.step_listener._target_=__main__.StepListener"] if hook_path else []
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = train(compose_workload(name, run_dir, *listener))
    return steady_per_epoch(EPOCH_ENDS), metrics.get("val/loss", metrics["train/loss"])


def whole_run_seconds(name: str, *extra: str) -> float:
    """Wall seconds of ``train()`` from start to end (fit, test, figures), imports done."""
    from dlbasics.training.train import train

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_workload(name, run_dir, *extra)
        started = time.perf_counter()
        train(cfg)
        return time.perf_counter() - started


def figures_cost(names: list[str], repeats: int) -> list[dict]:
    """Whole runs with the default figures against ``figures=none``, alternated.

    Progress figures are only *taken* between epochs (a forward pass over a grid) and drawn
    after training, so the per-epoch times above hardly see them; this is their full cost.
    """
    rows = []
    for name in names:
        with_figures, without = [], []
        for _ in range(repeats):
            with_figures.append(whole_run_seconds(name))
            without.append(whole_run_seconds(name, "figures=none"))
        on, off = statistics.median(with_figures), statistics.median(without)
        rows.append({"workload": name, "off": off, "on": on, "extra": on - off})
    return rows


def run_plain(name: str, epochs: int | None = None) -> tuple[float, float]:
    """The same work as a hand-written loop over the same data splits and net, with torch's
    default threads (for ``epochs``, where given, instead of the workload's)."""
    torch.set_num_threads(DEFAULT_THREADS)
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_workload(name, run_dir)
    torch.manual_seed(cfg.seed)
    data = instantiate(cfg.data)
    data.setup()
    (x, y), (x_val, y_val) = data.splits["train"], data.splits["val"]
    # A hand-written loop holds float tensors (images: standardised pixels) in memory.
    x, x_val = data.model_inputs(x), data.model_inputs(x_val)
    net = instantiate(cfg.model, input_shape=list(x.shape[1:]), num_outputs=data.num_outputs)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    loss_fn = (
        torch.nn.functional.cross_entropy
        if data.task == "classification"
        else torch.nn.functional.mse_loss
    )
    batch_size = cfg.data.batch_size or len(x)
    ends, val_loss = [], float("nan")
    for _ in range(epochs or cfg.trainer.max_epochs):
        net.train()
        order = torch.randperm(len(x))
        xs, ys = x[order], y[order]
        total = torch.zeros(())
        for start in range(0, len(x), batch_size):
            xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
            loss = loss_fn(net(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(xb)
        net.eval()
        with torch.no_grad():
            prediction = net(x_val)
            val_loss = loss_fn(prediction, y_val).item()
            if data.task == "classification":
                accuracy = (prediction.argmax(1) == y_val).float().mean().item()  # noqa: F841
        # Read once per epoch, as dlbasics does, for the same work (the value is not used).
        train_loss = (total / len(x)).item()  # noqa: F841
        ends.append(time.perf_counter())
    return steady_per_epoch(ends), val_loss


def compare(names: list[str], repeats: int) -> list[dict]:
    rows = []
    for name in names:
        plain, ours, hooked, plain_loss, our_loss = [], [], [], None, None
        for _ in range(repeats):  # alternate, so drifts of the machine hit all alike
            seconds, plain_loss = run_plain(name)
            plain.append(seconds)
            seconds, our_loss = run_dlbasics(name)
            ours.append(seconds)
            hooked.append(run_dlbasics(name, hook_path=True)[0])
        p, o, h = statistics.median(plain), statistics.median(ours), statistics.median(hooked)
        rows.append(
            {
                "workload": name,
                "plain_ms": 1e3 * p,
                "dlbasics_ms": 1e3 * o,
                "ratio": o / p,
                "hooks_ms": 1e3 * h,
                "hooks_ratio": h / p,
                "plain_loss": plain_loss,
                "dlbasics_loss": our_loss,
            }
        )
    return rows


# A launcher without torch: a forked child's peak RSS starts from its parent's, so the
# child is started from this small process rather than from the benchmark itself.
_LAUNCHER = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(time.perf_counter() - start, peak, code)\n"
)


def timed_process(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak_kib, code = out.stdout.split()
    if code != "0":
        raise RuntimeError(f"{args} failed: {out.stderr[-2000:]}")
    return float(seconds), int(peak_kib) / 1024


def startup(repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as work:
        commands = {
            "plain script (import torch + 1000 steps)": [sys.executable, str(HERE / "plain_w2.py")],
            "python -m dlbasics.train (W2)": [
                sys.executable,
                "-m",
                "dlbasics.train",
                *WORKLOADS["W2"].split(),
            ],
            "python -m dlbasics.train --help": [sys.executable, "-m", "dlbasics.train", "--help"],
        }
        timings = {label: [] for label in commands}
        for _ in range(repeats):
            for label, command in commands.items():
                timings[label].append(timed_process(command, Path(work)))
        for label, runs in timings.items():
            rows.append(
                {
                    "process": label,
                    "seconds": statistics.median(r[0] for r in runs),
                    "peak_mib": max(r[1] for r in runs),
                }
            )
    return rows


def image_memory(repeats: int) -> dict[str, float]:
    """Peak memory (MiB) of W5 processes training two epochs: a process that only imports
    what they import, the hand-written loop (float32 tensors in memory) and dlbasics
    (``figures=none``); and MNIST's uint8 pixels, for scale."""
    root = mnist_shaped_root()
    overrides = [*WORKLOADS["W5"].split(), f"data.root={root}", "trainer.max_epochs=2",
                 "figures=none"]  # fmt: skip
    plain = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench; "
        f"bench._MNIST_ROOT = {root!r}; bench.run_plain('W5', epochs=2)"
    )
    commands = {
        "imports only": [sys.executable, "-c", "import dlbasics.training.train, torchvision"],
        "plain loop": [sys.executable, "-c", plain],
        "dlbasics": [sys.executable, "-m", "dlbasics.train", *overrides],
    }
    peaks: dict[str, float] = {label: 0.0 for label in commands}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(repeats):
            for label, command in commands.items():
                peaks[label] = max(peaks[label], timed_process(command, Path(work))[1])
    return {**peaks, "uint8 pixels": 70_000 * 28 * 28 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--no-memory", action="store_true", help="skip W5's peak memory")
    args = parser.parse_args()

    rows = compare(args.only, args.repeats)
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPU cores, median of {args.repeats}\n")
    print(
        "| workload | plain loop ms/epoch | dlbasics ms/epoch | ratio | hook path ms/epoch "
        "| ratio | plain val loss | dlbasics val loss |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['workload']} | {r['plain_ms']:.2f} | {r['dlbasics_ms']:.2f} | {r['ratio']:.2f}x "
            f"| {r['hooks_ms']:.2f} | {r['hooks_ratio']:.2f}x "
            f"| {r['plain_loss']:.4g} | {r['dlbasics_loss']:.4g} |"
        )
    if not args.no_figures:
        print("\n| workload | whole run, figures=none s | default figures s | figures cost s |")
        print("| --- | ---: | ---: | ---: |")
        for r in figures_cost(args.only, args.repeats):
            print(f"| {r['workload']} | {r['off']:.2f} | {r['on']:.2f} | {r['extra']:+.2f} |")
    if "W5" in args.only and not args.no_memory:
        peaks = image_memory(args.repeats)
        imports = peaks["imports only"]
        print("\n| W5, two epochs | peak RSS MiB | above imports only MiB |\n| --- | ---: | ---: |")
        for label, peak in peaks.items():
            above = peak - imports if label in ("plain loop", "dlbasics") else float("nan")
            print(f"| {label} | {peak:.0f} | {above:.0f} |")
    if not args.no_startup:
        print("\n| whole process | seconds | peak RSS MiB |\n| --- | ---: | ---: |")
        for r in startup(args.repeats):
            print(f"| {r['process']} | {r['seconds']:.2f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
