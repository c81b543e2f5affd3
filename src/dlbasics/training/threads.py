"""How many CPU threads torch uses for a run (``trainer.threads``).

torch's default, one intra-op thread per core, is slower than one thread for the small
nets of the course: a step of an MLP on moons is a few microseconds of arithmetic around
half a millisecond of overhead, and splitting each tiny operation between threads only adds
to the overhead — much more so when another process shares a core. More threads pay only
once a step has real arithmetic in it. ``benchmarks/threads_bench.py`` measures where: on
the 2-core machine here, one thread wins below about 10⁸ floating-point operations per step,
and two threads are 1.3–2x faster above it while nothing else runs — but 1.3 to 38 times
slower with one busy process beside (see ``benchmarks/README.md``).

``auto`` therefore counts the work of one training step (one forward on PyTorch's ``meta``
device, shapes only, times 3 for the backward) and takes one thread below
:data:`FLOPS_FOR_MORE_THREADS`, every usable core above it, and never more threads than
torch was given (``OMP_NUM_THREADS``, ``torch.set_num_threads``, a parallel job's share of
the cores), nor threads for cores that other processes keep busy (:func:`busy_elsewhere`).
A number forces that many. On a GPU the arithmetic is on the GPU: one thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dlbasics.errors import ConfigError
from dlbasics.search.hparams import usable_cores

__all__ = ["FLOPS_FOR_MORE_THREADS", "choose_threads", "flops_per_step", "usable_cores"]

log = logging.getLogger("dlbasics")

#: Floating-point operations of one training step above which more threads pay (measured:
#: benchmarks/threads_bench.py).
FLOPS_FOR_MORE_THREADS = 1e8


def flops_per_step(net: torch.nn.Module, input_shape: Sequence[int], batch_size: int) -> float:
    """Floating-point operations of one training step of ``net`` on ``batch_size`` samples:
    one forward with ``meta`` stand-ins for its weights and input (nothing computed, copied
    or allocated), times 3 (the backward costs about twice the forward)."""
    from torch.func import functional_call

    stand_ins = {
        name: torch.empty_like(value, device="meta")
        for name, value in (*net.named_parameters(), *net.named_buffers())
    }
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        functional_call(net, stand_ins, (torch.empty(batch_size, *input_shape, device="meta"),))
    return 3.0 * counter.get_total_flops()


def choose_threads(
    setting,
    net: torch.nn.Module,
    datamodule,
    on_gpu: bool,
    processes: int = 1,
    members: int = 1,
) -> tuple[int, str]:
    """The number of torch threads for this run, and why (for the log); ``processes``: how
    many processes of the run share this machine's cores (DDP on the CPU); ``members``: how
    many copies of ``net`` each step trains (``seeds=``, stacked)."""
    if setting != "auto":
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ConfigError(
                f"trainer.threads={setting}: must be auto or a whole number of at least 1"
            )
        return setting, "trainer.threads"
    given = torch.get_num_threads()  # what the process allows: OMP_NUM_THREADS, a job's share
    if on_gpu:
        return 1, "auto: the arithmetic runs on the GPU"
    rows = len(datamodule.splits["train"][0]) if getattr(datamodule, "splits", None) else 1
    batch = getattr(datamodule, "batch_size", None) or rows
    try:
        flops = members * flops_per_step(net, datamodule.input_shape, batch)
    except Exception:  # a user's net that the meta device cannot run: torch's own choice
        return given, "auto: the work of a step could not be counted"
    if flops <= FLOPS_FOR_MORE_THREADS:
        return 1, f"auto: {flops:.1e} flops per step, below {FLOPS_FOR_MORE_THREADS:.0e}"
    busy = busy_elsewhere()
    threads = max(1, min(given, (usable_cores() - busy) // max(1, processes)))
    return threads, (
        f"auto: {flops:.1e} flops per step, above {FLOPS_FOR_MORE_THREADS:.0e}; "
        f"{busy} cores busy elsewhere"
    )


def busy_elsewhere(window: float = 0.2) -> int:
    """How many cores other processes keep busy now: the busy time of the cores this
    process may run on, over ``window`` seconds (``/proc/stat``), less this process's own,
    in cores, rounded. A thread that has
    to share its core with a busy process stalls the others at every operation (1.3 to 38
    times slower per step measured, benchmarks/README.md), so auto leaves those cores
    alone. 0 where the system does not say (no ``/proc/stat``)."""
    try:
        before_all, before_own = _cpu_seconds(), _own_cpu_seconds()
        time.sleep(window)
        spent = (_cpu_seconds() - before_all) - (_own_cpu_seconds() - before_own)
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, round(spent / window))


def _cpu_seconds() -> float:
    """CPU seconds the cores this process may run on have been busy (every process on
    them): the ``cpuN`` lines of ``/proc/stat`` for the cores of its affinity."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if allowed is not None and int(name[3:]) not in allowed:
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        busy += user + nice + system + irq + softirq + steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
