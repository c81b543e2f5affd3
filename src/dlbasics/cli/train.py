"""The command line of training: ``python -m dlbasics.train [overrides]``.

Everything that belongs to a process lives here: reading ``sys.argv``, the checks before
Hydra starts, exit codes (2 for a mistake, 1 for a run that diverged, 130 for Ctrl-C),
signals, and printing an error as one line. The experiment itself is
:func:`dlbasics.training.train.train`, the same one that :func:`dlbasics.fit` runs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dlbasics.config.prechecks import check_command_line
from dlbasics.config.rundir import is_helper_process
from dlbasics.config.tree import CONFIG_DIR
from dlbasics.errors import DlbasicsError, RunInterrupted, TrainingDiverged
from dlbasics.training.report import plain_when_captured

log = logging.getLogger("dlbasics")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_app(cfg: DictConfig) -> dict | None:
    """One Hydra job of the command line: :func:`dlbasics.training.train.job`, its errors turned into
    one line and an exit code; None (the job failed) for a failed job of a sweep."""
    from dlbasics.training.train import _in_sweep, job

    run_dir = Path(cfg.paths.output_dir)
    in_sweep = _in_sweep()
    helper = is_helper_process()  # another rank of a DDP run: the first process owns run_dir
    if helper:
        _quiet_helper()
    # Still held while torch and Lightning load; a Ctrl-C noted since Hydra began making
    # this run's directory removes it.
    if _CTRL_C["held"] and _import_torch_held():
        _interrupted_while_starting(run_dir, helper, in_sweep)
    try:
        return job(cfg)
    except KeyboardInterrupt:
        # Before the graceful-stop handler is installed (imports, loading the data).
        _exit_interrupted("interrupted before training started; nothing was kept")
    except DlbasicsError as error:
        if not in_sweep or isinstance(error, RunInterrupted):
            _fail(error)
        # One job of a sweep failing (say, a learning rate that diverges) ends that job only.
        done = getattr(error, "cleanup", None)
        log.error("Error: %s%s", error, f" ({done})" if done else "")
        return None
    except Exception:
        if not _CTRL_C["seen"]:
            raise
        # A Ctrl-C that a library swallowed, leaving an error of its own behind.
        _interrupted_while_starting(run_dir, helper, in_sweep)


def _interrupted_while_starting(run_dir: Path, helper: bool, in_sweep: bool) -> None:
    from dlbasics.config.rundir import discard_unfinished

    if not helper:
        discard_unfinished(run_dir, "interrupted", in_sweep)
    _exit_interrupted("interrupted before training started; nothing was kept")


# The command line's Ctrl-C (SIGINT) before training starts (training has its own, see
# dlbasics.training.callbacks.GracefulStop). "held": while Hydra composes the config of a
# single run and makes its directory (config files, log), and while the job imports torch
# and Lightning, a Ctrl-C is only noted; then the job removes what Hydra made (its config
# names the directory) and exits 130. Interrupted there, Hydra would forget which directory
# it was making, and torch's C++ start-up would abort the process. Elsewhere a
# Ctrl-C raises KeyboardInterrupt at once. "seen": C code can swallow a KeyboardInterrupt:
# torch hands a Ctrl-C that arrives while it loads numpy's C module to numpy, carries on
# without it, and the next `import numpy` fails with "cannot load module more than once per
# process". Whatever error follows a Ctrl-C before training is then reported as the
# interruption it is. (A plain dict: launchers that pickle the job function by value,
# submitit and joblib, take it along.)
_CTRL_C = {"seen": False, "held": False}


def _on_ctrl_c(signum, frame) -> None:
    _CTRL_C["seen"] = True
    if not _CTRL_C["held"]:
        raise KeyboardInterrupt


def main() -> None:
    """Entry point of ``python -m dlbasics.train`` and ``dlbasics-train``: it owns the
    process and ends it (exit codes; a finished single run ends at once). From Python,
    call :func:`dlbasics.fit`, which never exits."""
    arguments = sys.argv[1:]
    plain_when_captured()  # a pipe, a file, a notebook's `!python -m ...`: no ANSI codes
    resume = [a for a in arguments if a.startswith("resume=")]
    multirun = bool({"-m", "--multirun"} & set(arguments))
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_ctrl_c)  # Python's own, plus a note
    try:
        if resume:
            if _import_torch_held():
                raise KeyboardInterrupt
            from dlbasics.training.resume import resume_run
            from dlbasics.training.train import train

            rest = [a for a in arguments if a not in resume]
            resume_run(resume[-1].split("=", 1)[1], rest, train, _log_to_run)
            _end_without_finalizing()
            return
        command_line = _overrides_to_check(arguments)
        # Another rank of a DDP run, started with the same command line: checked already.
        if command_line is not None and not is_helper_process():
            check_command_line(*command_line, multirun=multirun)
        _CTRL_C["held"] = command_line is not None and not multirun  # a single run
        try:
            _hydra_app()
        finally:
            if _CTRL_C["held"] and _CTRL_C["seen"]:  # Hydra ended before the job began
                _exit_interrupted("interrupted before training started")
            _CTRL_C["held"] = False
        if not multirun:
            _end_without_finalizing()
    except DlbasicsError as error:
        _fail(error)
    except KeyboardInterrupt as interrupt:
        # Ctrl-C while checking (nothing is written yet), or in a multirun outside its
        # jobs: a job cleans up after itself, and training stops gracefully. A search says
        # itself what was kept; so does a multirun whose jobs run elsewhere.
        if str(interrupt):
            _exit_interrupted(str(interrupt))
        if multirun:
            _exit_interrupted(
                "interrupted; the sweep's finished jobs keep their run directories "
                "(python -m dlbasics.sweeps <sweep dir> summarises them)"
            )
        where = f"; {resume[-1]} is as it was" if resume else ""
        _exit_interrupted(f"interrupted before training started{where}")


_CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def _overrides_to_check(arguments: list[str]) -> tuple[list[str], list[str]] | None:
    """The overrides of a plain run or multirun, and the ``--config-dir`` folders; None
    when a Hydra flag changes what the command means (``--help``, ``--cfg``, ...)."""
    overrides, config_dirs = [], []
    rest = iter(arguments)
    for argument in rest:
        flag, _, value = argument.partition("=")
        if flag in _CONFIG_DIR_FLAGS:
            config_dirs.append(value or next(rest, ""))
        elif argument in ("-m", "--multirun"):
            continue
        elif argument.startswith("-"):
            return None  # --help, --cfg, --config-name, ...: Hydra answers those itself
        else:
            overrides.append(argument)
    return overrides, config_dirs


def _fail(error: DlbasicsError) -> None:
    """Report a user-facing error in one short message and exit non-zero."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    if logging.getLogger().handlers:  # inside a run: also into the run's log file
        log.error("Error: %s", error)
    else:
        print(f"Error: {error}", file=sys.stderr)
    if isinstance(error, RunInterrupted):
        sys.exit(error.exit_code)
    sys.exit(getattr(error, "exit_code", 1 if isinstance(error, TrainingDiverged) else 2))


def _exit_interrupted(message: str) -> None:
    """Say why, then end with 130 (as a shell reports Ctrl-C) at once.

    ``sys.exit`` is not enough here: when the KeyboardInterrupt passed through code that an
    extension module ran (importing torch, say), CPython remembers it and, at exit, ends
    the process by SIGINT anyway, so the caller would see -2 and not the 130 promised.
    """
    try:
        _fail(RunInterrupted(message, 130))
    except SystemExit:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()  # the message reaches train.log too
        os._exit(130)


def _import_torch_held() -> bool:
    """Import torch and Lightning with a Ctrl-C only noted meanwhile (a KeyboardInterrupt
    raised inside torch's C++ start-up aborts the whole process: SIGABRT, no cleanup);
    from then on a Ctrl-C interrupts at once. Whether one was noted, then or before."""
    _CTRL_C["held"] = True
    try:
        import lightning.pytorch  # noqa: F401
    finally:
        _CTRL_C["held"] = False
    return _CTRL_C["seen"]


def _end_without_finalizing() -> None:
    """A single run has finished and said everything: end the process now, with exit 0.

    Python's own finalization, after the last line is printed, takes about a second here
    once torch, Lightning and matplotlib are imported (tearing down their modules: 4.3 s
    against 3.4 s for a process that only imports them), during which the command seems
    done but does not return, and a Ctrl-C ends it with SIGINT's -2. Taken only while
    nothing can notice: the run's logs are flushed here, and no child process and no
    thread but daemon ones is left (DDP's other processes, a launcher's workers), and no
    profiler or tracer waits for the exit (cProfile, coverage): else Python ends as usual.
    """
    if is_helper_process() or multiprocessing.active_children() or _has_children():
        return
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return  # cProfile, coverage and debuggers write their results at exit
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def _has_children() -> bool:
    """Whether this process has a child process still running (True where Linux's
    ``/proc`` cannot say, so that Python ends as usual)."""
    try:
        tasks = Path("/proc/self/task").iterdir()
        return any((task / "children").read_text().split() for task in tasks)
    except OSError:
        return True


def _quiet_helper() -> None:
    """Another rank of a DDP run logs warnings and errors to the console only: the run's
    log file and its messages are the first process's (Hydra opened a log file for this
    process too, named after its job; it is closed and removed while still empty)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
            log_file = Path(handler.baseFilename)
            # Lightning names a helper's Hydra job train_ddp_process_<rank>; under SLURM every
            # task shares the first process's train.log, which stays.
            named_for_helper = "_ddp_process_" in log_file.name
            if named_for_helper and log_file.is_file() and log_file.stat().st_size == 0:
                log_file.unlink()
    logging.getLogger("dlbasics").setLevel(logging.WARNING)


def _log_to_run(run_dir) -> None:
    """Console and ``<run dir>/train.log`` (appended), as Hydra sets them up for a new run."""
    from dlbasics.training.report import NotOnConsole

    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(NotOnConsole())
    file = logging.FileHandler(os.path.join(run_dir, "train.log"))
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[console, file], force=True)
