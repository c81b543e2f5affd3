"""The Python face: :func:`fit`, :func:`load` and :func:`sweep`, for notebooks and scripts.

``fit`` takes the command line's override strings, runs the same checks, composes the same
config tree (Hydra's compose API, inside a context: no global Hydra state is left behind)
and runs the same job (:func:`dlbasics.training.train.job`) through Hydra's ``run_job``, the call a
launcher plugin makes, so the run directory is laid out exactly as the command line lays it
out (``.hydra/``, ``train.log``, checkpoints, figures). It returns a :class:`~dlbasics.using.run.Run`.

A mistake raises a :class:`~dlbasics.errors.DlbasicsError` whose message is the line the
command line prints. Nothing here exits the process or reads ``sys.argv``; what a run
changes in the process (logging handlers, signal handlers, torch's thread count) is put
back when it ends.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from dlbasics.errors import ConfigError, DlbasicsError
from dlbasics.using.run import Run, Sweep

log = logging.getLogger("dlbasics")


def fit(
    *overrides: str,
    config_dir: str | Path | Sequence[str | Path] | None = None,
    root_dir: str | Path | None = None,
    **unknown,
) -> Run | Sweep:
    """Train one run and return it.

    ``overrides`` are the command line's words, e.g. ``fit("experiment=cnn_digits",
    "trainer.max_epochs=5")``; ``"resume=<run dir>"`` continues a run in place, as
    ``python -m dlbasics.train resume=...`` does. ``fit(..., "seeds=[0,1,2,3,4]")`` trains
    five seeds as one vectorised run and returns it as a :class:`~dlbasics.using.run.Sweep`
    (``by_setting``: each metric's mean and standard deviation; ``runs``: the members).
    ``config_dir``: a folder (or several) of your own configs, searched beside the
    package's (the command line's ``--config-dir``).
    ``root_dir``: where ``outputs/`` goes (default: the current directory).
    """
    words = _check_call("fit", overrides, unknown)
    config_dirs = _config_dirs(config_dir)
    if root_dir is not None:
        words.insert(0, f"paths.root_dir={_root(root_dir)}")
    from dlbasics.config.prechecks import check_command_line

    resume = [w for w in words if w.startswith("resume=")]
    if resume:
        rest = [w for w in words if w not in resume and not w.startswith("paths.root_dir=")]
        return _resume(resume[-1].split("=", 1)[1], rest)
    _refuse_multirun(words)
    with importable_from_cwd():
        check_command_line(words, config_dirs, multirun=False)
        with _process_settings_kept():
            directory = _run_job(words, config_dirs)
    from dlbasics.using.saved_run import is_seeds_run

    return Sweep(directory) if is_seeds_run(directory) else Run(directory)


def load(path: str | Path) -> Run:
    """The run in ``path`` (a run directory, or a checkpoint file inside one), made by the
    command line or by :func:`fit`."""
    from dlbasics.search.sweeps import read_jobs
    from dlbasics.using.saved_run import is_seeds_run, open_run

    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"load({path!r}): give the run directory as a string or a Path")
    given = Path(path).expanduser()
    if given.is_file():
        if given.suffix == ".ckpt" and given.parent.name == "checkpoints":
            given = given.parent.parent  # <run dir>/checkpoints/best.ckpt: its run
        else:
            raise ConfigError(
                f"load({str(path)!r}): a file; give a run directory (or a checkpoint in its "
                "checkpoints/ folder)"
            )
    if given.is_dir() and (
        not (given / ".hydra" / "config.yaml").is_file() or is_seeds_run(given)
    ):
        jobs = sorted(read_jobs(given), key=lambda job: job.number)
        if jobs:
            names = ", ".join(job.run_dir.name for job in jobs[:10])
            raise ConfigError(
                f"load({str(path)!r}): a {'seeds= run' if is_seeds_run(given) else 'sweep'} "
                f"directory; load one of its jobs ({names}"
                f"{' ...' if len(jobs) > 10 else ''}), e.g. "
                f"dlbasics.load({str(jobs[0].run_dir)!r}), or the sweep with "
                f"dlbasics.load_sweep({str(path)!r})"
            )
    return Run(open_run(given, key="load").directory)


def load_sweep(path: str | Path) -> Sweep:
    """A finished (or interrupted) sweep directory: its summary and its jobs' runs."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"load_sweep({str(path)!r}): no such directory")
    return Sweep(directory)


def sweep(
    *overrides: str,
    config_dir: str | Path | Sequence[str | Path] | None = None,
    root_dir: str | Path | None = None,
    **unknown,
) -> Sweep:
    """Run a multirun or a search and return its summary and runs.

    ``sweep("optimizer.lr=0.01,0.1", "seed=0,1,2")`` trains every combination;
    ``sweep("hparams_search=optuna")`` runs an Optuna search; ``hydra/launcher=joblib``
    runs jobs in parallel. The values are checked here first (the same lines as the command
    line's); the sweep itself is ``python -m dlbasics.train -m ...`` in a child process, as
    Hydra's launchers and sweepers need one, its output shown as it comes.
    """
    words = _check_call("sweep", overrides, unknown)
    config_dirs = _config_dirs(config_dir)
    if root_dir is not None:
        words.insert(0, f"paths.root_dir={_root(root_dir)}")
    from dlbasics.config.prechecks import check_command_line

    check_command_line(words, config_dirs, multirun=True)
    directory = _sweep_dir(words, config_dirs)
    command = [sys.executable, "-m", "dlbasics.train", "-m", *words]
    command += [f"hydra.sweep.dir={directory}"]
    for folder in config_dirs:
        command += ["--config-dir", folder]
    _run_child(command)
    return Sweep(directory)


# -- fit, step by step ------------------------------------------------------------------


def _run_job(words: list[str], config_dirs: list[str]) -> Path:
    """Compose the config and run one job as Hydra's launchers do; returns its directory."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import run_job
    from hydra.errors import HydraException
    from hydra.types import HydraContext

    from dlbasics.config.checks import with_search_path
    from dlbasics.config.tree import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3", job_name="train"):
        try:
            cfg = compose("train", with_search_path(words, config_dirs), return_hydra_config=True)
        except HydraException as error:  # checked already; kept as one line all the same
            raise ConfigError(str(error).strip().splitlines()[0]) from None
        _refuse_processes(cfg)
        _name_apart(cfg)
        outcome: dict = {}
        run_job(
            task_function=functools.partial(_job_logged, outcome=outcome),
            config=cfg,
            job_dir_key="hydra.run.dir",
            job_subdir_key=None,
            hydra_context=HydraContext(
                config_loader=GlobalHydra.instance().config_loader(),
                callbacks=_NoCallbacks(),
            ),
            configure_logging=False,  # Hydra's would close every handler of the process
        )
    if "error" in outcome:
        raise outcome["error"]
    return Path(outcome["result"]["run_dir"])


def _job_logged(cfg, outcome: dict) -> None:
    """The job, logging to the console and ``<run dir>/train.log``; its result or its
    error goes into ``outcome`` (Hydra would print its own line for a failed job)."""
    from dlbasics.config.rundir import release
    from dlbasics.training.train import job

    run_dir = Path(cfg.paths.output_dir)
    try:
        with logging_to(run_dir):
            outcome["result"] = job(cfg, show_config=False)
    except Exception as error:
        outcome["error"] = error
    finally:
        release(run_dir)  # the lock of this run: a later fit in this process may resume it


def _name_apart(cfg) -> None:
    """Two fits of this process within one second would get the same directory name
    (``<date>_<time>_<pid>``): the later one gets ``-2``, ``-3``, ... after it."""
    from omegaconf import open_dict

    name = str(cfg.hydra.run.dir)
    if Path(name).exists():
        with open_dict(cfg):
            cfg.hydra.run.dir = _free_name(name)


def _free_name(name: str) -> str:
    number = 2
    while Path(f"{name}-{number}").exists():
        number += 1
    return f"{name}-{number}"


class _NoCallbacks:
    """Hydra's job callbacks for one job of :func:`fit`: the config's callbacks are those
    of a multirun (its summary), which a single run does not have."""

    def on_job_start(self, **kwargs) -> None:
        pass

    def on_job_end(self, **kwargs) -> None:
        pass


def _resume(run_dir: str, overrides: list[str]) -> Run:
    """``fit("resume=<run dir>", ...)``: as ``python -m dlbasics.train resume=...``."""
    from dlbasics.config.rundir import release
    from dlbasics.training.resume import resume_run
    from dlbasics.training.train import train

    directory = Path(run_dir).expanduser().resolve()
    with importable_from_cwd(), _process_settings_kept(), ExitStack() as logs:
        try:
            resume_run(
                str(directory),
                overrides,
                functools.partial(train, show_config=False),
                lambda folder: logs.enter_context(logging_to(Path(folder))),
            )
        finally:
            release(directory)
    return Run(directory)


# -- the call itself ---------------------------------------------------------------------


def _check_call(name: str, overrides: tuple, unknown: dict) -> list[str]:
    """The overrides as a list of strings, or one line saying what is wrong with the call."""
    if unknown:
        key, value = next(iter(unknown.items()))
        raise ConfigError(
            f"{name}({key}={value!r}): unknown keyword; {name} takes override strings as on "
            f"the command line, e.g. {name}(\"{key}={value}\"), and config_dir=, root_dir="
        )
    for word in overrides:
        if not isinstance(word, str):
            raise ConfigError(
                f"{name}({word!r}): overrides are strings as on the command line, e.g. "
                f"{name}(\"trainer.max_epochs=5\")"
            )
        if word.startswith("-"):
            raise ConfigError(
                f"{name}({word!r}): command-line flags are not overrides"
                + ("; use dlbasics.sweep(...) for a multirun" if word in ("-m", "--multirun") else "")
            )
    return list(overrides)


def _config_dirs(config_dir) -> list[str]:
    if config_dir is None:
        return []
    folders = [config_dir] if isinstance(config_dir, str | os.PathLike) else list(config_dir)
    for folder in folders:
        if not Path(folder).expanduser().is_dir():
            raise ConfigError(f"config_dir={str(folder)!r}: no such folder")
    return [str(Path(folder).expanduser().resolve()) for folder in folders]


def _root(root_dir) -> str:
    return str(Path(root_dir).expanduser().resolve())


def _refuse_multirun(words: list[str]) -> None:
    """A sweep's values (``optimizer.lr=0.01,0.1``) belong to :func:`sweep`."""
    from dlbasics.config.checks import parse_overrides

    for word, override in zip(words, parse_overrides(words), strict=True):
        if override.is_sweep_override():
            raise ConfigError(
                f"{word}: several values make a sweep; run it with dlbasics.sweep({word!r}, ...)"
            )


def _refuse_processes(cfg) -> None:
    """fit trains in this process; several processes (DDP) are the command line's."""
    trainer = cfg.trainer
    strategy = str(trainer.get("strategy") or "auto")
    if "ddp" in strategy or str(trainer.get("devices", 1)) not in ("1", "auto"):
        raise ConfigError(
            f"trainer.strategy={strategy} trainer.devices={trainer.get('devices')}: "
            "dlbasics.fit trains in this one process; several processes (DDP) start from the "
            "command line: python -m dlbasics.train trainer=ddp ..."
        )


@contextmanager
def logging_to(run_dir: Path) -> Iterator[None]:
    """The run's messages on the console and in ``<run dir>/train.log``, as Hydra sets them
    up for a command-line run; the process's own logging is as it was afterwards."""
    from dlbasics.training.report import NotOnConsole

    root = logging.getLogger()
    added = []
    file = logging.FileHandler(run_dir / "train.log")
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    added.append(file)
    if not any(type(h) is logging.StreamHandler for h in root.handlers):
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter("%(message)s"))
        console.addFilter(NotOnConsole())
        added.append(console)
    level = root.level
    root.setLevel(logging.INFO)
    for handler in added:
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


@contextmanager
def importable_from_cwd() -> Iterator[None]:
    """Your own code in the current folder (``_target_: my_code.MyNet``) imports, as with
    ``python -m dlbasics.train``, which puts that folder first on ``sys.path``; a script
    run from elsewhere has its own folder there instead. ``sys.path`` is as it was after."""
    here = os.getcwd()
    if here in sys.path or "" in sys.path:
        yield
        return
    sys.path.insert(0, here)
    try:
        yield
    finally:
        if here in sys.path:
            sys.path.remove(here)


@contextmanager
def _process_settings_kept() -> Iterator[None]:
    """torch's thread count and float32 precision as they were before the run, and the
    SIGINT handler (a notebook kernel's interrupt: Lightning ignores SIGINT from the first
    KeyboardInterrupt it catches on, and does not put the handler back)."""
    import signal
    import threading

    import torch

    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    main = threading.current_thread() is threading.main_thread()
    on_sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)
        if main and on_sigint is not None:
            signal.signal(signal.SIGINT, on_sigint)


# -- sweep, step by step -----------------------------------------------------------------


def _sweep_dir(words: list[str], config_dirs: list[str]) -> Path:
    """Where the sweep will land, named now so that it can be read when it ends: the
    user's ``hydra.sweep.dir``, or ``<log dir>/<task>/multiruns/<date>_<time>_<pid>``."""
    from dlbasics.config.checks import compose_config, parse_overrides, with_search_path

    for word in words:
        key, _, value = word.partition("=")
        if key.lstrip("+") == "hydra.sweep.dir" and value:
            return Path(value).expanduser().resolve()
    # Every single-valued override (a preset names its own task_name); a sweep's axes do
    # not name the directory.
    naming = [
        word
        for word, override in zip(words, parse_overrides(words), strict=True)
        if not override.is_sweep_override()
    ]
    cfg = compose_config(with_search_path(naming, config_dirs), hydra=True)
    name = str(Path(str(cfg.hydra.sweep.dir)).expanduser().resolve())
    return Path(_free_name(name) if Path(name).exists() else name)


def _run_child(command: list[str]) -> None:
    """Run ``command``, showing its output line by line; its ``Error:`` line raised as a
    DlbasicsError. Ctrl-C (a notebook's interrupt) is passed on, and waited for."""
    environment = {**os.environ, "TTY_COMPATIBLE": "0", "COLUMNS": os.environ.get("COLUMNS", "120")}
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        bufsize=1,
    )
    errors = []
    try:
        for line in child.stdout:
            sys.stdout.write(line)
            if line.startswith("Error: "):
                errors.append(line[len("Error: ") :].rstrip("\n"))
        child.wait()
    except KeyboardInterrupt:
        child.send_signal(2)  # SIGINT: the sweep stops as on the command line
        child.wait()
        raise
    finally:
        child.stdout.close()
    if child.returncode != 0:
        message = errors[-1] if errors else f"the sweep ended with exit code {child.returncode}"
        raise DlbasicsError(message)
