"""dlbasics against tuned plain Lightning on W2, and a tiny whole run against its floor.

``--only w2`` (in one process, alternating, median of ``--repeats``): workload W2 of
bench.py (linear regression, 80 training rows in one full batch, plain SGD, 1000 epochs,
validation every epoch) trained

- by tuned plain Lightning: a minimal ``LightningModule`` (``nn.Linear(2, 1)``, SGD lr 0.01,
  MSE), validation logged with ``self.log("val/loss", ..., on_epoch=True)``, a ``Trainer``
  with the logger, checkpointing, progress bar and model summary off, and loaders as cheap as
  Lightning's public API allows: an iterable object yielding the one batch, and a
  ``DataLoader(batch_size=None)`` over a one-item list;
- by ``dlbasics.fit`` with W2's overrides and ``figures=none``, then with the default figures
  (every other setting the default: TensorBoard, checkpoints, progress bar, model summary);
- by a plain torch loop (plain_w2.py's work), for reference.

Time per epoch is the median gap between consecutive ``on_train_epoch_end`` calls of an
``EpochTimer`` callback (validation included, as in bench.py); dlbasics gets it through the
public override ``+callbacks.epoch_timer._target_=lightning_bench.EpochTimer``. The mean gap
(first to last epoch end, over 999) also counts what happens only every few epochs (the
progress figures' snapshots). ``fit`` s is the whole call: fit, test, figures, the run loaded.

``--only whole`` (whole processes, alternating, median of ``--repeats``, peak RSS the
largest seen): ``python -m dlbasics.train experiment=linreg_tiny`` and W2, against the floor,
a process that imports ``lightning.pytorch`` and ``hydra`` and then does plain_w2.py's work;
also plain_w2.py alone (torch only) and tuned plain Lightning's W2 as a script.

Only dlbasics' public face is used (``dlbasics.fit``, ``python -m dlbasics.train``), so the
same script measures any checkout: put its ``src`` first on ``PYTHONPATH``::

    python benchmarks/lightning_bench.py [--repeats 3] [--only w2|whole]
    cd /other/checkout && PYTHONPATH=src python /path/to/benchmarks/lightning_bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import lightning
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader

# Run as a script this module is ``__main__``; the dlbasics config names it
# ``lightning_bench.EpochTimer``: one module under both names, so one EPOCH_ENDS.
sys.modules.setdefault("lightning_bench", sys.modules[__name__])

HERE = Path(__file__).resolve().parent
W2 = (
    "model=linreg data=linear data.n_samples=100 data.batch_size=null optimizer=sgd "
    "optimizer.lr=0.01 trainer.max_epochs=1000"
).split()
EPOCHS = 1000
TIMER = "+callbacks.epoch_timer._target_=lightning_bench.EpochTimer"

EPOCH_ENDS: list[float] = []  # filled by EpochTimer


class EpochTimer(Callback):
    """Records when each training epoch (its validation included) ends."""

    def on_train_epoch_end(self, trainer, pl_module):
        EPOCH_ENDS.append(time.perf_counter())


class Measured(NamedTuple):
    """One W2 run: its epoch ends, final val/loss and, for dlbasics, the whole fit call."""

    ends: list[float]
    val_loss: float
    fit_seconds: float | None = None
    config_sources: str = ""


def per_epoch(ends: list[float]) -> tuple[float, float]:
    """Median and mean seconds between consecutive epoch ends (the first epoch, a warm-up,
    is left out; the median also ignores stray pauses of a shared machine)."""
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return statistics.median(gaps), (ends[-1] - ends[0]) / len(gaps)


# -- W2 in tuned plain Lightning --------------------------------------------------------


def w2_tensors() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """plain_w2.py's data: 80 training rows and 10 validation rows of y = x.[2, -3.5] + 5."""
    torch.manual_seed(0)
    x = torch.randn(100, 2)
    y = x @ torch.tensor([[2.0], [-3.5]]) + 5 + torch.randn(100, 1)
    return (x[:80], y[:80]), (x[80:90], y[80:90])


class OneBatch:
    """The cheapest loader Lightning accepts: an iterable yielding the same batch once."""

    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        yield self.batch

    def __len__(self) -> int:
        return 1


class PlainW2(LightningModule):
    """The smallest LightningModule for W2: one full batch per epoch, validation logged."""

    def __init__(self, loader: str):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.loader = loader
        self.train_batch, self.val_batch = w2_tensors()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def _loader(self, batch):
        # "iterable": any iterable is a loader to Lightning; "dataloader": no batching, no
        # collate (only default_convert). Not a plain list: Lightning takes a list as
        # several loaders, so ``[batch]`` would hand out x and y one at a time.
        return (
            OneBatch(batch) if self.loader == "iterable" else DataLoader([batch], batch_size=None)
        )

    def train_dataloader(self):
        return self._loader(self.train_batch)

    def val_dataloader(self):
        return self._loader(self.val_batch)


def run_plain_lightning(loader: str) -> Measured:
    """Tuned plain Lightning's W2."""
    EPOCH_ENDS.clear()
    module = PlainW2(loader)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[EpochTimer()],
    )
    trainer.fit(module)
    return Measured(list(EPOCH_ENDS), float(trainer.callback_metrics["val/loss"]))


def run_plain_torch() -> Measured:
    """plain_w2.py's loop, with its epoch ends."""
    (x, y), (x_val, y_val) = w2_tensors()
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    ends, val_loss = [], float("nan")
    for _ in range(EPOCHS):
        loss = torch.nn.functional.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(net(x_val), y_val).item()
        ends.append(time.perf_counter())
    return Measured(ends, val_loss)


# -- W2 through dlbasics.fit -------------------------------------------------------------


def run_dlbasics(*extra: str) -> Measured:
    """``dlbasics.fit`` of W2 with the epoch timer added by an override."""
    import dlbasics

    EPOCH_ENDS.clear()
    with tempfile.TemporaryDirectory() as root:
        chatter = io.StringIO()  # the config tree, the progress, the closing table
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                run = dlbasics.fit(*W2, TIMER, *extra, root_dir=root)
        except Exception:
            print(chatter.getvalue()[-3000:], file=sys.stderr)
            raise
        seconds = time.perf_counter() - started
        val_loss = float(run.metrics["val/loss"])  # read before the run directory goes
        config_sources = where_config_came_from(Path(run.dir))
    return Measured(list(EPOCH_ENDS), val_loss, seconds, config_sources)


def where_config_came_from(run_dir: Path) -> str:
    """The config folders Hydra composed from, as the run recorded them (.hydra/hydra.yaml)."""
    from omegaconf import OmegaConf

    sources = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.config_sources
    return ", ".join(
        f"{s.path} ({s.provider})" for s in sources if s.path and s.provider != "hydra"
    )


W2_RUNS = {
    "tuned plain Lightning, loader a one-batch iterable": lambda: run_plain_lightning("iterable"),
    "tuned plain Lightning, DataLoader(batch_size=None)": lambda: run_plain_lightning("dataloader"),
    "dlbasics.fit W2, figures=none": lambda: run_dlbasics("figures=none"),
    "dlbasics.fit W2, default figures": lambda: run_dlbasics(),
    "plain torch loop (plain_w2.py), reference": run_plain_torch,
}


def compare_w2(repeats: int) -> None:
    timings: dict[str, list[tuple[float, float]]] = {label: [] for label in W2_RUNS}
    losses: dict[str, float] = {}
    fit_seconds: dict[str, list[float]] = {}
    sources = ""
    for _ in range(repeats):  # alternate, so drifts of the machine hit all alike
        for label, run in W2_RUNS.items():
            measured = run()
            timings[label].append(per_epoch(measured.ends))
            losses[label] = measured.val_loss
            if measured.fit_seconds is not None:
                fit_seconds.setdefault(label, []).append(measured.fit_seconds)
                sources = measured.config_sources
    median_ms = {
        label: 1e3 * statistics.median(m for m, _ in runs) for label, runs in timings.items()
    }
    mean_ms = {
        label: 1e3 * statistics.median(m for _, m in runs) for label, runs in timings.items()
    }
    tuned = min(median_ms[label] for label in median_ms if "Lightning" in label)
    print(f"\ndlbasics config composed from: {sources}")
    print(f"\nW2, {EPOCHS} epochs, median of {repeats} runs (alternating)\n")
    print("| run | ms/epoch (median gap) | vs tuned Lightning | mean ms/epoch | fit s | val loss |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label in W2_RUNS:
        fit = fit_seconds.get(label)
        print(
            f"| {label} | {median_ms[label]:.3f} | {median_ms[label] / tuned:.2f}x "
            f"| {mean_ms[label]:.3f} | {f'{statistics.median(fit):.2f}' if fit else ''} "
            f"| {losses[label]:.4g} |"
        )
    off, on = (
        median_ms["dlbasics.fit W2, figures=none"],
        median_ms["dlbasics.fit W2, default figures"],
    )
    mean_off = mean_ms["dlbasics.fit W2, figures=none"]
    mean_on = mean_ms["dlbasics.fit W2, default figures"]
    print(
        f"\nfigures' cost per epoch: {on - off:+.3f} ms (median gap), {mean_on - mean_off:+.3f} ms"
        " (mean gap, progress snapshots included)"
    )
    print(
        "(val losses differ between the sides: plain_w2.py's data are not dlbasics' data=linear"
        " split; the time per epoch does not depend on them)"
    )


# -- whole processes ---------------------------------------------------------------------

# A launcher without torch: a forked child's peak RSS starts from its parent's, so the
# child is started from this small process rather than from the benchmark itself.
_LAUNCHER = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(time.perf_counter() - start, peak, code.returncode)\n"
    "sys.stderr.write(code.stderr.decode(errors='replace')[-3000:])\n"
)

FLOOR = (
    "import lightning.pytorch, hydra, runpy; "
    f"runpy.run_path({str(HERE / 'plain_w2.py')!r}, run_name='__main__')"
)
FLOOR_LABEL = "floor: import lightning.pytorch, hydra + plain_w2.py's work"


def processes() -> dict[str, list[str]]:
    python = sys.executable
    return {
        FLOOR_LABEL: [python, "-c", FLOOR],
        "python -m dlbasics.train experiment=linreg_tiny": [
            python,
            "-m",
            "dlbasics.train",
            "experiment=linreg_tiny",
        ],
        "python -m dlbasics.train (W2)": [python, "-m", "dlbasics.train", *W2],
        "plain_w2.py alone (import torch), reference": [python, str(HERE / "plain_w2.py")],
        "tuned plain Lightning W2 as a script, reference": [
            python,
            str(Path(__file__).resolve()),
            "--plain-lightning-script",
        ],
    }


def timed_process(args: list[str], cwd: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *args], cwd=cwd, capture_output=True, text=True
    )
    seconds, peak_kib, code = out.stdout.split()
    if code != "0":
        raise RuntimeError(f"{args} exited with {code}: {out.stderr}")
    return float(seconds), int(peak_kib) / 1024


def compare_whole(repeats: int) -> None:
    commands = processes()
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    with tempfile.TemporaryDirectory() as work:  # outputs/ of the dlbasics runs go here
        for _ in range(repeats):  # alternate
            for label, command in commands.items():
                runs[label].append(timed_process(command, work))
        seen = subprocess.run(  # the children import what PYTHONPATH points at, too
            [sys.executable, "-c", "import dlbasics; print(dlbasics.__file__)"],
            cwd=work,
            capture_output=True,
            text=True,
        ).stdout.strip()
    floor = statistics.median(s for s, _ in runs[FLOOR_LABEL])
    print(f"\nthe child processes import dlbasics from {Path(seen).parent}")
    print(f"\nWhole processes, median of {repeats} (alternating); peak RSS the largest seen\n")
    print("| process | seconds | vs floor | peak RSS MiB | all runs s |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, timings in runs.items():
        seconds = statistics.median(s for s, _ in timings)
        print(
            f"| {label} | {seconds:.2f} | {seconds / floor:.2f}x "
            f"| {max(m for _, m in timings):.0f} | {', '.join(f'{s:.2f}' for s, _ in timings)} |"
        )


def quiet_lightning() -> None:
    """No "GPU available" lines or few-workers warnings from the plain Lightning runs."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # Lightning 2.6 on torch 2.13


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["w2", "whole"], default=None)
    parser.add_argument("--plain-lightning-script", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet_lightning()
    if args.plain_lightning_script:  # the "as a script" process of --only whole
        measured = run_plain_lightning("iterable")
        print(f"val loss {measured.val_loss:.3f}, {1e3 * per_epoch(measured.ends)[0]:.3f} ms/epoch")
        return

    import dlbasics

    print(
        f"dlbasics from {Path(dlbasics.__file__).parent}; torch {torch.__version__}, "
        f"lightning {lightning.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU cores, "
        f"torch threads {torch.get_num_threads()}"
    )
    if args.only in (None, "w2"):
        compare_w2(args.repeats)
    if args.only in (None, "whole"):
        compare_whole(args.repeats)


if __name__ == "__main__":
    main()
