"""Train a model from the config tree: ``python -m dlbasics.train [group=option] [key=value]``.

The experiment reads top to bottom in :func:`train`: seed, data, model, trainer, fit, test,
save. :func:`job` is one Hydra job around it (its run directory claimed, its values checked,
nothing half-made left behind on failure); the command line (:mod:`dlbasics.cli.train`) and the
Python face (:func:`dlbasics.fit`) both run it. Library code here raises
:class:`~dlbasics.errors.DlbasicsError`; only the command line turns it into an exit code.
Torch and Lightning are imported inside :func:`train`, so ``--help`` and ``--cfg job``
answer without loading them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path

from omegaconf import DictConfig

from dlbasics.config.rundir import is_helper_process
from dlbasics.errors import (
    ConfigError,
    DlbasicsError,
    RunDirectoryRemoved,
    RunInterrupted,
    TrainingDiverged,
)

log = logging.getLogger("dlbasics")


def train(cfg: DictConfig, show_config: bool = True) -> dict[str, float]:
    """Run one experiment described by a composed config; return its final metrics.

    ``show_config``: print the composed config as a tree first (the command line does;
    in a notebook ``run.config`` shows it on demand). With ``seeds``, the K seeds train as
    one vectorised run (:mod:`dlbasics.training.seeds`)."""
    from dlbasics.config.members import is_stacked

    if is_stacked(cfg):
        from dlbasics.training.seeds import train_seeds

        return train_seeds(cfg, show_config=show_config)
    import lightning.pytorch as pl
    import torch

    from dlbasics.training import report
    from dlbasics.training.builders import (
        build,
        build_callbacks,
        build_loggers,
        quiet_lightning,
        start_session,
    )
    from dlbasics.training.callbacks import BestAndLastCheckpoint, GracefulStop, History, TrackBest
    from dlbasics.training.objective import choose_objective, objective_settings
    from dlbasics.training.resume import check_checkpoint
    from dlbasics.training.threads import choose_threads

    quiet_lightning()
    writes = not is_helper_process()  # only the first process of a DDP run writes and prints
    report.use_full_width()
    if writes:
        report.log_overrides(cfg)
        if show_config and not _in_sweep():  # a sweep's job: Hydra printed its overrides
            report.print_config(cfg)
    pl.seed_everything(cfg.seed, verbose=False)
    set_matmul_precision(cfg)

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
    if writes:  # one row per epoch in <run dir>/history.csv, what Run.history reads
        callbacks.append(History(cfg.paths.output_dir))
    will_test = bool(cfg.test) and datamodule.has_split("test")
    if cfg.get("figures"):  # drawn after the test, or after training when no test follows
        callbacks.append(build(cfg.figures, "figures", evaluate_after_fit=not will_test))
    checkpoint = next((c for c in callbacks if isinstance(c, BestAndLastCheckpoint)), None)
    stop = next((c for c in callbacks if isinstance(c, GracefulStop)), None)
    # Without a validation split there is nothing to validate; saying so avoids Lightning's warning.
    no_validation = {} if datamodule.has_split("val") else {"limit_val_batches": 0}
    trainer = build(
        _without(cfg.trainer, "threads"),  # dlbasics' own key, not a Trainer argument
        "trainer",
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=checkpoint is not None,  # else Lightning adds its own, per epoch
        **no_validation,
    )
    threads, why = choose_threads(
        cfg.trainer.get("threads", "auto"),
        module.net,
        datamodule,
        on_gpu=trainer.strategy.root_device.type == "cuda",
        processes=trainer.num_devices,  # DDP on the CPU: its processes share the cores
    )
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%s)", threads, why, extra=report.FILE_ONLY)
    # What the model's inputs and outputs mean, readable beside the run (checkpoints carry it too).
    if writes:
        datamodule.save_description(cfg.paths.output_dir)
    start_session(loggers, cfg)  # the run's HPARAMS row, there from the first epoch on
    fit_until_stopped(
        trainer,
        lambda: trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path),
        stop,
        kept=lambda: _kept(checkpoint),
        interrupted=lambda what, signum: _interrupted(cfg, checkpoint, what, signum),
    )
    with _interrupt_after_training(cfg, checkpoint, trainer):
        return _test_and_report(
            cfg, trainer, module, datamodule, loggers, checkpoint, tracker, will_test, writes
        )


def _test_and_report(cfg, trainer, module, datamodule, loggers, checkpoint, tracker, will_test,
                     writes) -> dict[str, float]:  # fmt: skip
    """After training: the best epoch, the test on the best checkpoint, the closing table."""
    from dlbasics.training import report
    from dlbasics.training.builders import end_session

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
        epochs = trainer.current_epoch  # epochs trained; baseline, best epoch, rows beside
        summary = report.summarise(metrics, datamodule, epochs, checkpoint, outcome)
        report.print_metrics(metrics, cfg.paths.output_dir, summary)
    return metrics


def set_matmul_precision(cfg: DictConfig) -> None:
    """torch's float32 matrix-product precision for the run (``float32_matmul_precision``)."""
    import torch

    # conf/train.yaml says high; a run saved before the key existed trained with torch's
    # default, highest, and resumes with it.
    torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision") or "highest")


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

    from dlbasics.training.builders import config_errors
    from dlbasics.training.module import SupervisedModule
    from dlbasics.training.size import check_fits_in_memory

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


def job(cfg: DictConfig, show_config: bool = True) -> dict:
    """One Hydra job: claim its run directory, check the values, :func:`train`, and return
    :func:`job_result`. A DlbasicsError or a Ctrl-C before training started leaves nothing
    half-made (a job of a sweep is marked failed instead) and is raised again."""
    from dlbasics.config.checks import check_config
    from dlbasics.config.rundir import claim, discard_unfinished, link_job_log

    run_dir = Path(cfg.paths.output_dir)
    in_sweep = _in_sweep()
    helper = is_helper_process()  # another rank of a DDP run: the first process owns run_dir
    if not helper:
        # Another process's directory raises here, before anything of it is touched.
        claim(run_dir, "hydra.sweep.dir" if in_sweep else "hydra.run.dir")
        link_job_log(run_dir)
    try:
        share_cores_with_parallel_jobs()
        check_config(cfg)
        metrics = train(cfg, show_config=show_config)
    except KeyboardInterrupt:
        # Before the graceful-stop handler was installed (imports, loading the data).
        if not helper:
            discard_unfinished(run_dir, "interrupted", in_sweep)
        raise
    except DlbasicsError as error:
        if not helper and not getattr(error, "keeps_run", False):
            error.cleanup = discard_unfinished(run_dir, f"Error: {error}", in_sweep)
        raise
    except Exception:
        if helper or run_dir.is_dir():
            raise
        # Deleted while it trained (a logger's or a save's FileNotFoundError): one line.
        raise RunDirectoryRemoved.of(run_dir) from None
    return job_result(run_dir, metrics)


def job_result(run_dir: Path, metrics: dict[str, float]) -> dict:
    """A job's result for a sweeper: its objective's best value (``value``, None if never
    measured), the ``metric`` and ``direction``, the best ``epoch``, the final ``metrics``
    and the ``run_dir``. Plain values, so it travels back from a launcher's worker process."""
    from dataclasses import asdict

    from dlbasics.training.objective import Outcome

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

    from dlbasics.search.hparams import joblib_workers

    workers = joblib_workers(HydraConfig.get().launcher)
    if workers is None:
        return
    import torch

    from dlbasics.config.checks import usable_cores
    from dlbasics.training.report import FILE_ONLY

    cores = usable_cores()
    torch.set_num_threads(max(1, cores // workers))
    log.info(
        "torch threads: %d (%d parallel jobs share %d cores)",
        torch.get_num_threads(),
        workers,
        cores,
        extra=FILE_ONLY,
    )


def fit_until_stopped(trainer, fit, stop, kept, interrupted) -> None:
    """Run ``fit()`` and say how it ended when it did not finish, as one error: a diverged
    loss (with ``kept()``: where the last good checkpoint is), or a signal, which stopped it
    at once or, through the graceful ``stop`` callback, at an epoch's end
    (``interrupted(what, signum)`` makes that error)."""
    try:
        fit()
    except TrainingDiverged as error:
        raise TrainingDiverged(f"{error} {kept()}") from None
    except SystemExit as error:
        # A fit that a signal stopped at once, after its on_exception hooks (last.ckpt written).
        signum = _stopping_signal(error, trainer)
        if signum is None:
            raise
        what = f"Stopped at once by {signum.name} after {trainer.current_epoch} whole epochs"
        raise interrupted(what, signum) from None
    if stop is not None and stop.stopped:
        signum = stop.received or signal.SIGTERM  # a signal to another process of a DDP run
        by = stop.received.name if stop.received else "a signal to another process"
        raise interrupted(f"Stopped by {by} after {trainer.current_epoch} epochs", signum)


def _stopping_signal(error: BaseException, trainer) -> signal.Signals | None:
    """The signal behind ``error``, how a fit or test of ``trainer`` ended, or None.

    Lightning ends a SIGTERM with its SIGTERMException (a SystemExit) once
    ``trainer.received_sigterm`` is set, and a KeyboardInterrupt inside its loops with a
    SystemExit(1) raised while it handles it; outside its loops the KeyboardInterrupt
    itself arrives.
    """
    if trainer.received_sigterm:
        return signal.SIGTERM
    if isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt):
        return signal.SIGINT
    return None


@contextlib.contextmanager
def _interrupt_after_training(cfg: DictConfig, checkpoint, trainer, kept: str | None = None):
    """A Ctrl-C or SIGTERM during the test, the figures or the closing table: the training
    is done and its checkpoints stay, so the run is kept and says so (exit 130 or 143).
    ``kept``: where they are, if not in ``checkpoint`` (a seeds= run's members)."""
    epochs = trainer.current_epoch
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as error:
        signum = _stopping_signal(error, trainer)
        if signum is None:
            raise
        evaluate = (
            f" Its metrics: python -m dlbasics.evaluate run={cfg.paths.output_dir}"
            if checkpoint is not None
            else ""
        )
        interrupted = RunInterrupted(
            f"{signum.name} after training ({epochs} epochs), before the test and the figures "
            f"were done; {kept or _kept(checkpoint)}{evaluate}",
            exit_code=128 + signum.value,
        )
        interrupted.keeps_run = True  # trained: job() neither removes nor marks it failed
        raise interrupted from None


def _without(config: DictConfig, key: str) -> DictConfig:
    """``config`` less ``key``, its interpolations resolved where it stood."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(config, resolve=True)
    values.pop(key, None)
    return OmegaConf.create(values)


def _interrupted(cfg: DictConfig, checkpoint, what: str, signum: signal.Signals) -> RunInterrupted:
    """The error of a run that a signal stopped: what happened, the checkpoint kept, and
    how to go on; it exits with 128 + the signal's number, as a shell reports it."""
    from dlbasics.search.hparams import search_selected

    again = (  # a search's trial is not resumed: the search runs another in its place
        "Continue the search: run the same command again (the study keeps its trials)."
        if search_selected(cfg)
        else f"Resume with:\n  python -m dlbasics.train resume={cfg.paths.output_dir}\n"
        f'or in Python: dlbasics.fit("resume={cfg.paths.output_dir}")'
    )
    return RunInterrupted(f"{what}; {_kept(checkpoint)} {again}", exit_code=128 + signum.value)


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
