"""How many torch threads pay, by the work of one training step (`make bench-threads`).

For nets of growing size (the course's MLPs and CNNs, batch sizes it uses), one process
times training steps (forward, cross-entropy, backward, Adam) with 1 thread and with every
usable core, alternating, median of ``--repeats``; and the floating-point operations of one
step (``torch.utils.flop_counter`` on one forward, times 3 for the backward). The ratio
tells where more threads start to pay: dlbasics' ``trainer.threads=auto`` takes more than
one thread only above :data:`dlbasics.training.threads.FLOPS_FOR_MORE_THREADS` per step, and
only the cores that no other process keeps busy (the ``auto`` column).

Then the same W3 step (MLP [64, 64], batch 64, Adam) with ``fused=True`` against torch's
default (``foreach``), one thread.

    python benchmarks/threads_bench.py [--repeats 5] [--busy]

``--busy`` runs a busy Python process on one core beside it (a test suite, another run).
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from dlbasics.nets import CNN, MLP
from dlbasics.training.threads import (
    FLOPS_FOR_MORE_THREADS,
    busy_elsewhere,
    flops_per_step,
    usable_cores,
)

# name: (net, one sample's shape, batch size)
WORKLOADS = {
    "MLP [64,64] on moons, batch 64 (W3)": (lambda: MLP((2,), 2, [64, 64]), (2,), 64),
    "MLP [64] on 13 features, batch 32": (lambda: MLP((13,), 2, [64]), (13,), 32),
    "MLP [256,256] on digits, batch 64": (lambda: MLP((64,), 10, [256, 256]), (64,), 64),
    "MLP [512,512] on 784, batch 128": (lambda: MLP((784,), 10, [512, 512]), (784,), 128),
    "MLP [1024,1024] on 784, batch 256": (lambda: MLP((784,), 10, [1024, 1024]), (784,), 256),
    "CNN [16,32] on digits 8x8, batch 64 (W4)": (
        lambda: CNN((1, 8, 8), 10, channels=[16, 32], kernel_size=3, hidden=64),
        (1, 8, 8),
        64,
    ),
    "CNN [16,32] on 28x28, batch 64": (
        lambda: CNN((1, 28, 28), 10, channels=[16, 32], kernel_size=3, hidden=64),
        (1, 28, 28),
        64,
    ),
    "CNN [32,64] on 32x32x3, batch 128": (
        lambda: CNN((3, 32, 32), 10, channels=[32, 64], kernel_size=3, hidden=128),
        (3, 32, 32),
        128,
    ),
}


def step_ms(net: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer, steps: int) -> float:
    """Milliseconds per training step, over ``steps`` steps."""
    started = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return 1e3 * (time.perf_counter() - started) / steps


def measure(name: str, repeats: int, cores: int) -> dict:
    build, shape, batch = WORKLOADS[name]
    torch.manual_seed(0)
    net = build()
    x, y = torch.randn(batch, *shape), torch.randint(0, 2, (batch,))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    flops = flops_per_step(net, shape, batch)
    # Enough steps for about 0.3 s with one thread.
    torch.set_num_threads(1)
    probe = step_ms(net, x, y, optimizer, 5)
    steps = max(10, int(300 / max(probe, 1e-3)))
    times: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(repeats):
        for threads in times:
            torch.set_num_threads(threads)
            step_ms(net, x, y, optimizer, 3)  # warm-up at this thread count
            times[threads].append(step_ms(net, x, y, optimizer, steps))
    one, many = (statistics.median(times[t]) for t in (1, cores))
    return {"name": name, "flops": flops, "one": one, "many": many}


def fused_against_default(repeats: int) -> tuple[float, float]:
    torch.set_num_threads(1)
    build, shape, batch = WORKLOADS["MLP [64,64] on moons, batch 64 (W3)"]
    x, y = torch.randn(batch, *shape), torch.randint(0, 2, (batch,))
    results: dict[bool, list[float]] = {False: [], True: []}
    nets = {fused: build() for fused in results}
    optimizers = {
        fused: torch.optim.Adam(nets[fused].parameters(), lr=1e-3, fused=fused or None)
        for fused in results
    }
    for _ in range(repeats):
        for fused in results:
            results[fused].append(step_ms(nets[fused], x, y, optimizers[fused], 1000))
    return statistics.median(results[False]), statistics.median(results[True])


def _spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", action="store_true", help="one busy process beside")
    args = parser.parse_args()
    cores = usable_cores()
    busy = None
    if args.busy:
        busy = multiprocessing.Process(target=_spin, daemon=True)
        busy.start()
    try:
        print(
            f"# {platform.processor() or platform.machine()}, {cores} usable cores, torch "
            f"{torch.__version__}, repeats {args.repeats}, "
            f"{'one busy process beside' if busy else 'quiet'}"
        )
        time.sleep(1.0)  # the busy process under way
        busy_cores = busy_elsewhere()
        print(
            f"# auto: 1 thread up to {FLOPS_FOR_MORE_THREADS:.1e} flops per step, above it "
            f"the cores not busy elsewhere ({busy_cores} busy now)"
        )
        print(
            f"| net | flops/step | 1 thread ms/step | {cores} threads ms/step | {cores}/1 | auto |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name in WORKLOADS:
            r = measure(name, args.repeats, cores)
            auto = max(1, cores - busy_cores) if r["flops"] > FLOPS_FOR_MORE_THREADS else 1
            print(
                f"| {name} | {r['flops']:.2e} | {r['one']:.3f} | {r['many']:.3f} | "
                f"{r['many'] / r['one']:.2f} | {auto} |",
                flush=True,
            )
        default, fused = fused_against_default(args.repeats)
        print(
            f"\nW3 step, 1 thread: Adam default {default:.3f} ms, Adam(fused=True) "
            f"{fused:.3f} ms ({fused / default:.2f}x)"
        )
    finally:
        if busy is not None:
            busy.terminate()


if __name__ == "__main__":
    main()
