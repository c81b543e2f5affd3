"""Train a model from the config tree: ``python -m dlbasics.train [group=option] [key=value]``.

The flow reads top to bottom in :func:`train`: seed, data, model, trainer, fit, test.
:func:`main` first checks the command line (one clear line for a mistake, before anything
heavy is imported), or resumes a run with ``resume=<run dir>``. Torch and Lightning are
imported inside :func:`train`, so ``--help`` and ``--cfg job`` answer without loading them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dlbasics.config import CONFIG_DIR, register_experiments
from dlbasics.errors import ConfigError, DlbasicsError, RunInterrupted, TrainingDiverged
from dlbasics.rundir import is_helper_process

log = logging.getLogger("dlbasics")


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment described by a composed config; return its final metrics."""
    import lightning.pytorch as pl
    import torch

    from dlbasics import report
    from dlbasics.builders import (
        build,
        build_callbacks,
        build_loggers,
        end_session,
        quiet_lightning,
        start_session,
    )
    from dlbasics.callbacks import BestAndLastCheckpoint, GracefulStop, TrackBest
    from dlbasics.objective import choose_objective, objective_settings
    from dlbasics.resume import check_checkpoint
    from dlbasics.search import search_selected

    quiet_lightning()
    writes = not is_helper_process()  # only the first process of a DDP run writes and prints
    report.use_full_width()
    if writes:
        report.log_overrides(cfg)
        if not _in_sweep():  # a sweep's job: Hydra has printed its overrides
            report.print_config(cfg)
    pl.seed_everything(cfg.seed, verbose=False)
    torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision") or "highest")

    # The data come first: the model is sized from what they report.
    datamodule = build(cfg.data, "data")
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    if cfg.ckpt_path:
        check_checkpoint(cfg.ckpt_path, module, key="ckpt_path")

    loggers = build_loggers(cfg.logger)
    callbacks = build_callbacks(
        cfg.callbacks, has_logger=bool(loggers), progress_bar=cfg.trainer.enable_progress_bar
    )
    # What a sweep compares this run by: the best epoch's val/acc or val/loss.
    objective = choose_objective(datamodule.task, *objective_settings(cfg))
    tracker = TrackBest(objective.metric, objective.direction)
    callbacks.append(tracker)
    will_test = bool(cfg.test) and datamodule.has_split("test")
    if cfg.get("figures"):  # drawn after the test, or after training when no test follows
        callbacks.append(build(cfg.figures, "figures", evaluate_after_fit=not will_test))
    checkpoint = next((c for c in callbacks if isinstance(c, BestAndLastCheckpoint)), None)
    stop = next((c for c in callbacks if isinstance(c, GracefulStop)), None)
    # Without a validation split there is nothing to validate; saying so avoids Lightning's warning.
    no_validation = {} if datamodule.has_split("val") else {"limit_val_batches": 0}
    trainer = build(
        cfg.trainer,
        "trainer",
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=checkpoint is not None,  # else Lightning adds its own, per epoch
        **no_validation,
    )
    # What the model's inputs and outputs mean, readable beside the run (checkpoints carry it too).
    if writes:
        datamodule.save_description(cfg.paths.output_dir)
    start_session(loggers, cfg)  # the run's HPARAMS row, there from the first epoch on
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except TrainingDiverged as error:
        raise TrainingDiverged(f"{error} {_kept(checkpoint)}") from None
    if stop is not None and stop.stopped:
        signal_name = stop.received.name if stop.received else "a signal to another process"
        again = (  # a search's trial is not resumed: the search runs another in its place
            "Continue the search: run the same command again (the study keeps its trials)."
            if search_selected(cfg)
            else f"Resume with:\n  python -m dlbasics.train resume={cfg.paths.output_dir}"
        )
        raise RunInterrupted(
            f"Stopped by {signal_name} after {trainer.current_epoch} epochs; "
            f"{_kept(checkpoint)} {again}",
            exit_code=128 + (stop.received.value if stop.received else 15),
        )
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    outcome = tracker.outcome()
    if outcome.value is not None:  # a column of the HPARAMS tab to sort a sweep's runs by
        for logger in loggers:
            logger.log_metrics(
                {f"best/{outcome.metric}": outcome.value}, step=trainer.current_epoch
            )

    if will_test:
        best = checkpoint.best_path if checkpoint and checkpoint.best_path.exists() else None
        best = trainer.strategy.broadcast(best)  # DDP: as the process that wrote it sees it
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})

    end_session(loggers)
    if writes:
        outcome.save(cfg.paths.output_dir)
        report.save_metrics(metrics, cfg.paths.output_dir)
        report.print_metrics(metrics, cfg.paths.output_dir)
    return metrics


def build_module(cfg: DictConfig, datamodule):
    """The LightningModule for ``cfg.model``, sized from the datamodule.

    The net is first built on PyTorch's ``meta`` device (shapes, no memory) to refuse a
    model that cannot read these data (a CNN on tabular data) or could not fit in memory,
    and the optimizer and scheduler are built once, so a value they refuse stops the run
    here with one line rather than inside Lightning.
    """
    import torch
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from dlbasics.builders import config_errors
    from dlbasics.module import SupervisedModule
    from dlbasics.size import check_fits_in_memory

    shape, outputs = list(datamodule.input_shape), datamodule.num_outputs
    try:
        with torch.device("meta"):
            net = instantiate(cfg.model, input_shape=shape, num_outputs=outputs)
    except (ValueError, InstantiationException) as error:
        reason = error.__cause__ if isinstance(error, InstantiationException) else error
        if not isinstance(reason, ValueError):
            with config_errors(cfg.model, "model"):
                raise
        model, data = _choice(cfg, "model"), _choice(cfg, "data")
        raise ConfigError(
            f"model={model} cannot read data={data} (samples shaped "
            f"{tuple(datamodule.input_shape)}): {reason}. Image data: data=digits; "
            "tabular data suit model=mlp or model=linreg."
        ) from None
    check_fits_in_memory(net, cfg, datamodule, f"model={_choice(cfg, 'model')}")
    module = SupervisedModule(
        net=cfg.model,
        task=datamodule.task,
        input_shape=shape,
        num_outputs=outputs,
        optimizer=cfg.optimizer,
        scheduler=cfg.scheduler or None,
        gradient_clip_val=cfg.gradient_clip_val,
        data=datamodule.describe(),
    )
    with config_errors(cfg.optimizer, "optimizer"):
        optimizer = instantiate(cfg.optimizer)(module.parameters())
    if cfg.scheduler:
        with config_errors(cfg.scheduler, "scheduler"):
            instantiate(cfg.scheduler)(optimizer)
    return module


def _kept(checkpoint) -> str:
    """Where the newest good checkpoint of this run is, for the closing message."""
    paths = [checkpoint.last_path, checkpoint.best_path] if checkpoint else []
    newest = max((p for p in paths if p.exists()), key=lambda p: p.stat().st_mtime, default=None)
    return (
        f"The last good checkpoint is kept: {newest}." if newest else "No checkpoint was written."
    )


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for a group (``cnn``), or its class name outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get(group, "?")
    return str(cfg[group].get("_target_", "?")).rsplit(".", 1)[-1]


# -- the command line -------------------------------------------------------------------


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_app(cfg: DictConfig) -> dict | None:
    """One Hydra job: check the values, train, and return what a sweeper compares runs by
    (:func:`job_result`); None when the job failed."""

    from dlbasics.rundir import claim, discard_unfinished, link_job_log
    from dlbasics.validate import check_config

    run_dir = Path(cfg.paths.output_dir)
    in_sweep = _in_sweep()
    helper = is_helper_process()  # another rank of a DDP run: the first process owns run_dir
    try:
        if helper:
            _quiet_helper()
        else:
            try:
                claim(run_dir, "hydra.sweep.dir" if in_sweep else "hydra.run.dir")
            except DlbasicsError as error:
                _fail(error)  # another process's directory: leave it alone
            link_job_log(run_dir)
        share_cores_with_parallel_jobs()
        check_config(cfg)
        metrics = train(cfg)
    except KeyboardInterrupt:
        # Before the graceful-stop handler is installed (imports, loading the data).
        _interrupted_while_starting(run_dir, helper, in_sweep)
    except DlbasicsError as error:
        done = None if helper else discard_unfinished(run_dir, f"Error: {error}", in_sweep)
        if not in_sweep or isinstance(error, RunInterrupted):
            _fail(error)
        # One job of a sweep failing (say, a learning rate that diverges) ends that job only.
        log.error("Error: %s%s", error, f" ({done})" if done else "")
        return None
    except Exception:
        if not _CTRL_C["seen"]:
            raise
        # A Ctrl-C that a library swallowed, leaving an error of its own behind.
        _interrupted_while_starting(run_dir, helper, in_sweep)
    return job_result(run_dir, metrics)


def _interrupted_while_starting(run_dir: Path, helper: bool, in_sweep: bool) -> None:
    from dlbasics.rundir import discard_unfinished

    if not helper:
        discard_unfinished(run_dir, "interrupted", in_sweep)
    _exit_interrupted("interrupted before training started; nothing was kept")


# Set by the first Ctrl-C. C code can swallow a KeyboardInterrupt: torch hands a Ctrl-C that
# arrives while it loads numpy's C module to numpy, carries on without it, and the next
# `import numpy` fails with "cannot load module more than once per process". Whatever error
# follows a Ctrl-C before training is then reported as the interruption it is. (A plain
# dict: launchers that pickle the job function by value, submitit and joblib, take it along.)
_CTRL_C = {"seen": False}


def _remember_ctrl_c(signum, frame) -> None:
    _CTRL_C["seen"] = True
    raise KeyboardInterrupt


def job_result(run_dir: Path, metrics: dict[str, float]) -> dict:
    """A job's result for a sweeper: its objective's best value (``value``, None if never
    measured), the ``metric`` and ``direction``, the best ``epoch``, the final ``metrics``
    and the ``run_dir``. Plain values, so it travels back from a launcher's worker process."""
    from dataclasses import asdict

    from dlbasics.objective import Outcome

    outcome = Outcome.read(run_dir)
    return {
        **(asdict(outcome) if outcome else {"value": None}),
        "metrics": metrics,
        "run_dir": str(run_dir),
    }


def share_cores_with_parallel_jobs() -> None:
    """In a job of ``hydra/launcher=joblib``, give torch this job's share of the CPU cores:
    with every job using all cores, parallel jobs would slow each other down."""
    from hydra.core.hydra_config import HydraConfig

    from dlbasics.search import joblib_workers

    workers = joblib_workers(HydraConfig.get().launcher)
    if workers is None:
        return
    import torch

    from dlbasics.report import FILE_ONLY
    from dlbasics.validate import usable_cores

    cores = usable_cores()
    torch.set_num_threads(max(1, cores // workers))
    log.info(
        "torch threads: %d (%d parallel jobs share %d cores)",
        torch.get_num_threads(),
        workers,
        cores,
        extra=FILE_ONLY,
    )


def main() -> None:
    """Entry point of ``python -m dlbasics.train`` and ``dlbasics-train``."""
    arguments = sys.argv[1:]
    resume = [a for a in arguments if a.startswith("resume=")]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _remember_ctrl_c)  # Python's own, plus a note
    try:
        register_experiments()  # experiment=NAME from experiments/
        if resume:
            from dlbasics.resume import resume_run

            rest = [a for a in arguments if a not in resume]
            return resume_run(resume[-1].split("=", 1)[1], rest, train, _log_to_run)
        command_line = _overrides_to_check(arguments)
        # Another rank of a DDP run, started with the same command line: checked already.
        if command_line is not None and not is_helper_process():
            check_command_line(*command_line, multirun=bool({"-m", "--multirun"} & set(arguments)))
        _hydra_app()
    except DlbasicsError as error:
        _fail(error)
    except KeyboardInterrupt as interrupt:
        # Ctrl-C while checking or while Hydra starts a job, outside any job: a job that
        # claimed its run directory cleans up itself, and training stops gracefully.
        # A search says itself what was kept; so does a multirun whose jobs run elsewhere.
        if not resume and not {"-m", "--multirun"} & set(arguments):
            _discard_half_made_run()
        if str(interrupt):
            _exit_interrupted(str(interrupt))
        if {"-m", "--multirun"} & set(arguments):
            _exit_interrupted(
                "interrupted; the sweep's finished jobs keep their run directories "
                "(python -m dlbasics.sweeps <sweep dir> summarises them)"
            )
        where = f"; {resume[-1]} is as it was" if resume else ""
        _exit_interrupted(f"interrupted before training started{where}")


def check_command_line(overrides: list[str], config_dirs: list[str], multirun: bool) -> None:
    """Everything that can be checked before Hydra makes a run directory and Lightning is
    imported: the overrides and their values, a forced run directory, the user's CSV file."""
    from dlbasics.data.checks import check_data
    from dlbasics.validate import (
        check_launcher,
        check_multirun_processes,
        check_overrides,
        check_run_dir_free,
        check_search_command,
        runs_here,
    )

    check_launcher(overrides, multirun)
    configs = check_overrides(overrides, config_dirs, here=runs_here(overrides, config_dirs))
    configs = check_search_command(overrides, configs, multirun, config_dirs)
    if multirun:
        check_multirun_processes(overrides, configs, config_dirs)
    check_run_dir_free(overrides, multirun)
    seen = set()
    for cfg in configs:  # each distinct data config of a sweep once
        key = repr(cfg.data)
        if key not in seen:
            seen.add(key)
            check_data(cfg.data)


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
    sys.exit(1 if isinstance(error, TrainingDiverged) else 2)


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


def _discard_half_made_run() -> None:
    """Ctrl-C while Hydra was making a single run's directory (config files, log), before
    the job itself began: remove what it wrote, as the job would have. Hydra has forgotten
    its config by now; the directories it named in this process are remembered
    (:data:`dlbasics.config.NAMED_RUN_DIRS`)."""
    from dlbasics.config import NAMED_RUN_DIRS
    from dlbasics.rundir import discard_unfinished

    if is_helper_process():
        return
    for directory in NAMED_RUN_DIRS:
        discard_unfinished(directory, "interrupted", in_sweep=False)


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
    from dlbasics.report import NotOnConsole

    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(NotOnConsole())
    file = logging.FileHandler(os.path.join(run_dir, "train.log"))
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[console, file], force=True)


if __name__ == "__main__":
    main()
