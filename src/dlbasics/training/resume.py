"""``python -m dlbasics.train resume=<run dir> [key=value ...]``: continue a run in place.

The run's own composed config (``.hydra/config.yaml``) is reloaded, training continues from
its ``checkpoints/last.ckpt`` in the same directory, and TensorBoard events are appended to
the same run. Only overrides that cannot change what was trained are accepted
(:data:`RESUMABLE`, e.g. ``trainer.max_epochs=50`` to train longer); they are written into
the run's config and listed in ``.hydra/resumes.yaml``.
"""

from __future__ import annotations

import datetime
import logging
import re
import shlex
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlbasics.errors import ConfigError
from dlbasics.using.saved_run import (
    SavedRun,
    open_run,
    read_checkpoint,
    run_overrides,
    train_command,
)

# Keys a resumed run may change: how long and where it trains, how it reports and saves.
# Anything else (model, data, optimizer, seed, ...) would make the checkpoint mean another run.
RESUMABLE = (
    "trainer.max_epochs",
    "trainer.accelerator",
    "trainer.enable_progress_bar",
    "trainer.deterministic",
    "callbacks.progress_bar",
    "callbacks.checkpoint.every_n_seconds",
    "callbacks.checkpoint.every_n_epochs",
    "callbacks.graceful_stop",
    "test",
)


# Overrides of these make a new run start from scratch: the checkpoint's weights and optimizer
# state belong to the run's own model, data, optimizer and scheduler.
FROM_SCRATCH = ("model", "data", "optimizer", "scheduler")


def check_resumable(saved: SavedRun, overrides: list[str]) -> None:
    """A ConfigError naming the first override that would change what was trained, with the
    command that starts a new run with the run's own overrides and these."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE):
            group = re.split(r"[./]", key)[0]
            last = saved.directory / "checkpoints" / "last.ckpt"
            command = train_command(
                run_overrides(saved) + overrides, None if group in FROM_SCRATCH else last
            )
            how = (
                f"from scratch (its checkpoints fit only its own {group})"
                if group in FROM_SCRATCH
                else "from its last checkpoint"
            )
            raise ConfigError(
                f"resume={saved.directory}: {key} cannot change when resuming (the checkpoint "
                f"was trained with the run's own value); resume accepts {', '.join(RESUMABLE)}. "
                f"To change {key}, start a new run {how}: {command}"
            )


def load_run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The run's composed config, pointed at its own directory and newest checkpoint."""
    from dlbasics.config.checks import check_key_exists
    from dlbasics.config.rundir import failure

    saved = open_run(run_dir, key="resume")  # a run directory, with its config
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        failed = failure(run_dir)
        why = f" It failed before its first checkpoint: {failed}" if failed else ""
        raise ConfigError(
            f"resume={run_dir}: there is no checkpoints/last.ckpt to resume from.{why} "
            "Start a new run instead."
        )
    cfg = saved.config
    check_resumable(saved, overrides)
    for override in overrides:
        check_key_exists(cfg, override.split("=", 1)[0])
    resumed = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    check_schedule_kept(saved, cfg, resumed, overrides)
    cfg = resumed
    # Hydra resolved this to the run directory when the run started; there is no Hydra run now.
    cfg.paths.output_dir = str(run_dir)
    cfg.ckpt_path = str(checkpoint)
    csv_logger = cfg.get("logger", {}).get("csv")
    if csv_logger:
        # Lightning's CSV logger deletes an existing metrics.csv: write beside it instead.
        resumes = len(list((run_dir / "csv").glob("resumed-*")))
        csv_logger.version = f"resumed-{resumes + 1}"
    return cfg


def check_schedule_kept(
    saved: SavedRun, before: DictConfig, after: DictConfig, overrides: list[str]
) -> None:
    """A ConfigError if the overrides move a setting of the learning-rate schedule (cosine's
    ``T_max`` follows ``trainer.max_epochs``): the checkpoint restores the scheduler as it
    was, so the run would go on with the old schedule while its config said the new one."""
    if not before.get("scheduler"):
        return  # a fixed learning rate
    then = OmegaConf.to_container(before.scheduler, resolve=True)
    now = OmegaConf.to_container(after.scheduler, resolve=True)
    for key, value in then.items():
        if now.get(key) != value:
            command = train_command(run_overrides(saved) + overrides)
            raise ConfigError(
                f"resume={saved.directory}: {' '.join(overrides)} would change scheduler.{key} "
                f"({value} -> {now.get(key)}), but the checkpoint goes on with the schedule it "
                f"was trained with; resume without it, or train on the new schedule from "
                f"scratch: {command}"
            )


def record_resume(run_dir: Path, overrides: list[str]) -> None:
    """Write the accepted overrides into the run's config and list them in resumes.yaml."""
    config_file = run_dir / ".hydra" / "config.yaml"
    saved = OmegaConf.load(config_file)
    OmegaConf.save(OmegaConf.merge(saved, OmegaConf.from_dotlist(overrides)), config_file)
    log_file = run_dir / ".hydra" / "resumes.yaml"
    history = OmegaConf.load(log_file) if log_file.is_file() else OmegaConf.create([])
    when = datetime.datetime.now().isoformat(timespec="seconds")
    history.append({"resumed": when, "overrides": list(overrides)})
    OmegaConf.save(history, log_file)


def check_checkpoint(path: str | Path, module, key: str) -> None:
    """A ConfigError if the checkpoint cannot be read or does not fit ``module``: other
    weights, or another optimizer or scheduler, whose state Lightning would restore."""
    state = read_checkpoint(
        Path(path),
        f"{key}={path}:",
        lambda other: f"start from it: {train_command(_job_overrides(), other)}",
    )
    weights = state.get("state_dict")
    if not isinstance(weights, dict):
        raise ConfigError(f"{key}={path}: not a Lightning checkpoint (it has no state_dict)")
    hyper = state.get("hyper_parameters") or {}
    for name, tensor in module.state_dict().items():
        if name not in weights or tuple(weights[name].shape) != tuple(tensor.shape):
            found = tuple(weights[name].shape) if name in weights else "nothing"
            raise ConfigError(
                f"{key}={path}: {_what_differs(hyper, module.hparams)} ('{name}' is {found} "
                f"there, {tuple(tensor.shape)} here); start from a checkpoint of the same "
                "model and data, or without ckpt_path"
            )
    for part in ("optimizer", "scheduler"):
        then, now = _target(hyper.get(part, module.hparams[part])), _target(module.hparams[part])
        if then != now:
            raise ConfigError(
                f"{key}={path}: the checkpoint was trained with {part} {then}, this run uses "
                f"{now}, which cannot take over its state; use the checkpoint's {part}, or "
                "start without ckpt_path"
            )


def _target(config: dict | None) -> str | None:
    return (config or {}).get("_target_")


def _what_differs(then: dict, now) -> str:
    """Why a checkpoint's weights do not fit: its model (``then``, its hyperparameters) or
    the data it was trained on differ from this run's (``now``), said as precisely as known."""
    then_net, now_net = then.get("net") or {}, now["net"]
    if _target(then_net) != _target(now_net):
        return f"the checkpoint holds another model ({_target(then_net)}, not {_target(now_net)})"
    shape, own = list(then.get("input_shape") or now["input_shape"]), list(now["input_shape"])
    if shape != own:
        if len(shape) == len(own) == 1:
            return (
                f"the checkpoint was trained on data with {shape[0]} features, this run's "
                f"data have {own[0]}"
            )
        return f"the checkpoint was trained on samples shaped {shape}, this run's are {own}"
    if then.get("num_outputs", now["num_outputs"]) != now["num_outputs"]:
        return (
            f"the checkpoint predicts {then['num_outputs']} outputs (classes or targets), this "
            f"run's data need {now['num_outputs']}"
        )
    settings = [
        f"{k}={then_net.get(k)} there, {now_net.get(k)} here"
        for k in sorted(set(then_net) | set(now_net))
        if then_net.get(k) != now_net.get(k)
    ]
    if settings:
        return f"the checkpoint holds the same model with other settings ({'; '.join(settings)})"
    return "the checkpoint holds another model or was trained on other data"


def _job_overrides() -> list[str]:
    """This job's command-line overrides (none outside a Hydra job, e.g. when resuming)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def finished(run_dir: Path, max_epochs: int, overrides: list[str]) -> int | None:
    """Epochs done if the run's last checkpoint ends a run that finished them all, else None.
    An unreadable one is a ConfigError with the command that starts a new run like this one
    from the run's other checkpoint, if it is intact."""
    state = read_checkpoint(
        run_dir / "checkpoints" / "last.ckpt",
        f"resume={run_dir}: its checkpoints/last.ckpt",
        lambda other: (
            "start a new run from it with the run's settings: "
            + train_command(run_overrides(open_run(run_dir, "resume")) + overrides, other)
        ),
    )
    if state.get("dlbasics_finished") and state["epoch"] >= max_epochs:
        return int(state["epoch"])
    return None


def resume_run(
    run_dir: str, overrides: list[str], train: Callable, log_to_run: Callable[[Path], None]
) -> None:
    """Resume ``run_dir`` with ``train``, or say that it has nothing left to do."""
    from dlbasics.config.checks import check_config
    from dlbasics.config.rundir import FAILED_MARK, claim, is_helper_process

    directory = Path(run_dir).resolve()
    cfg = load_run_config(directory, overrides)
    check_config(cfg)
    if is_helper_process():  # another rank of a resumed DDP run: the first one owns the run
        train(cfg)
        return
    claim(directory, "resume")
    done = finished(directory, cfg.trainer.max_epochs, overrides)
    if done is not None:
        print(
            f"{directory} already finished its {done} epochs; nothing to resume. "
            f"To train longer: python -m dlbasics.train resume={directory} "
            f"trainer.max_epochs={done * 2}"
        )
        return
    if overrides:
        record_resume(directory, overrides)
    log_to_run(directory)
    logging.getLogger("dlbasics").info(
        "Resuming %s from %s%s",
        directory,
        cfg.ckpt_path,
        f" with {shlex.join(overrides)}" if overrides else "",
    )
    train(cfg)
    (directory / FAILED_MARK).unlink(missing_ok=True)  # a failed job of a sweep, now done
