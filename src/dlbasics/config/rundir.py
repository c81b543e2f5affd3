"""The run directory: one owner at a time, and nothing half-made left behind.

* :func:`claim` locks ``<run dir>/.lock`` for the life of the process, so a second run or
  ``resume=`` pointed at the same directory stops with one line instead of mixing files.
* :func:`discard_unfinished` removes what a run wrote when it failed before its first
  checkpoint (there is nothing to resume); a job of a sweep is marked failed instead
  (``failed.txt``), so the sweep's numbering stays readable and ``resume=`` can explain.

Free of torch and Lightning imports.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from dlbasics.errors import ConfigError

FAILED_MARK = "failed.txt"
# What dlbasics and Hydra write into a run directory; nothing else is ever removed.
_RUN_FILES = (
    ".hydra",
    "train.log",
    "tb",
    "csv",
    "checkpoints",
    "data.json",
    "metrics.json",
    "objective.json",
    "history.csv",
    "figures",
    "job.out",
    "job.err",
    ".lock",
)

_held: dict[Path, int] = {}  # run directories locked by this process -> file descriptor


def is_helper_process() -> bool:
    """Whether this process is one of a distributed run's other ranks (Lightning's DDP
    launcher, torchrun or SLURM started it with a rank above 0). The first process owns
    the run directory: it claims it, writes into it and cleans it up; the others train."""
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # SLURM: one task per GPU
    return any(int(os.environ.get(name) or 0) > 0 for name in ranks)


def link_job_log(directory: Path) -> None:
    """In a job sent by Hydra's submitit launcher (SLURM, or ``submitit_local``), link the
    job's own stdout and stderr files, which submitit keeps under the sweep's ``.submitit/``
    folder by job id, into the run directory as ``job.out`` and ``job.err``."""
    # submitit's own test for one of its jobs (JobEnvironment.activated): its executors
    # export SUBMITIT_EXECUTOR (slurm, local) into the job's environment.
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    try:
        paths = _submitit().JobEnvironment().paths
    except Exception:  # not one of its jobs after all (the variable came from elsewhere)
        return
    for name, target in (("job.out", paths.stdout), ("job.err", paths.stderr)):
        link = directory / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(Path(target).resolve())


def _submitit():
    """The submitit module. Its job runner has imported it already; where it has not (a
    process that inherited a job's environment), importing it must not reconfigure
    logging, as it does by default (it would close Hydra's handlers of this run):
    ``SUBMITIT_LOG_LEVEL=NOCONFIG``, submitit's own switch, is set while it is imported."""
    if "SUBMITIT_LOG_LEVEL" in os.environ:
        import submitit

        return submitit
    os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
    try:
        import submitit
    finally:
        del os.environ["SUBMITIT_LOG_LEVEL"]
    return submitit


def holds_run(directory: Path) -> bool:
    """Whether ``directory`` already holds a run (its config or a checkpoint)."""
    return (directory / ".hydra" / "config.yaml").is_file() or any(
        (directory / "checkpoints").glob("*.ckpt")
    )


def other_files(directory: Path) -> list[str]:
    """The names in ``directory`` that no run writes (empty if it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name not in _RUN_FILES)


def checkpoints(directory: Path) -> list[Path]:
    """The run's checkpoints, and those of its members (a ``seeds=`` run: ``<k>/checkpoints``)."""
    return sorted(
        [*(directory / "checkpoints").glob("*.ckpt"), *directory.glob("[0-9]*/checkpoints/*.ckpt")]
    )


def claim(directory: Path, key: str) -> None:
    """Lock ``directory`` for this process, or raise a ConfigError naming the owner's pid."""
    directory = directory.resolve()
    if directory in _held:
        return
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(descriptor, 32).decode(errors="replace").strip() or "?"
        os.close(descriptor)
        raise ConfigError(
            f"{key}={directory}: the run directory is in use by another process (pid {owner}); "
            "wait for it to finish, or start a new run"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, str(os.getpid()).encode())
    _held[directory] = descriptor


def release(directory: Path) -> None:
    """Give up the lock taken by :func:`claim` (it is released at exit in any case)."""
    descriptor = _held.pop(directory.resolve(), None)
    if descriptor is not None:
        os.close(descriptor)


def failure(directory: Path) -> str | None:
    """Why the run in ``directory`` failed, as its ``failed.txt`` says (None: not marked)."""
    mark = Path(directory) / FAILED_MARK
    return mark.read_text().strip() if mark.is_file() else None


def discard_unfinished(directory: Path, reason: str, in_sweep: bool) -> str | None:
    """After a failure: remove the run's files if it wrote no checkpoint.

    Only the files a run writes are removed, and the directory itself only if that
    leaves it empty. In a sweep the job's directory is kept and marked with ``failed.txt``
    (checkpoint or not). Returns what was done, in words, or None when a checkpoint exists
    (it is kept).
    """
    directory = directory.resolve()
    if not directory.is_dir():
        return None
    if in_sweep:  # the sweep's summary and search read why; a checkpoint stays
        (directory / FAILED_MARK).write_text(reason + "\n")
        return f"marked failed: {directory / FAILED_MARK}"
    if checkpoints(directory):
        return None
    release(directory)
    members = [d for d in directory.iterdir() if d.name.isdigit() and (d / ".hydra").is_dir()]
    for path in members:  # a seeds= run's members, none of which wrote a checkpoint
        shutil.rmtree(path, ignore_errors=True)
    for name in _RUN_FILES:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    try:
        directory.rmdir()
    except OSError:
        return f"removed the run's files from {directory}"
    return f"removed {directory} (no checkpoint was written)"
