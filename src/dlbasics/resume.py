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
import shlex
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlbasics.errors import ConfigError
from dlbasics.saved_run import open_run, read_checkpoint

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


def check_resumable(run_dir: Path, overrides: list[str]) -> None:
    """A ConfigError naming the first override that would change what was trained."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE):
            raise ConfigError(
                f"resume={run_dir}: {key} cannot change when resuming (the checkpoint was "
                f"trained with the run's own value); resume accepts {', '.join(RESUMABLE)}. "
                f"To change {key}, start a new run: python -m dlbasics.train ckpt_path="
                f"{run_dir}/checkpoints/last.ckpt {override}"
            )


def load_run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The run's composed config, pointed at its own directory and newest checkpoint."""
    from dlbasics.rundir import failure
    from dlbasics.validate import check_key_exists

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
    check_resumable(run_dir, overrides)
    for override in overrides:
        check_key_exists(cfg, override.split("=", 1)[0])
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    # Hydra resolved this to the run directory when the run started; there is no Hydra run now.
    cfg.paths.output_dir = str(run_dir)
    cfg.ckpt_path = str(checkpoint)
    csv_logger = cfg.get("logger", {}).get("csv")
    if csv_logger:
        # Lightning's CSV logger deletes an existing metrics.csv: write beside it instead.
        resumes = len(list((run_dir / "csv").glob("resumed-*")))
        csv_logger.version = f"resumed-{resumes + 1}"
    return cfg


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
    """A ConfigError if the checkpoint cannot be read or holds another model's weights."""
    state = read_checkpoint(Path(path), key)
    weights = state.get("state_dict")
    if not isinstance(weights, dict):
        raise ConfigError(f"{key}={path}: not a Lightning checkpoint (it has no state_dict)")
    expected = module.state_dict()
    for name, tensor in expected.items():
        if name not in weights or tuple(weights[name].shape) != tuple(tensor.shape):
            found = tuple(weights[name].shape) if name in weights else "nothing"
            trained = state.get("hyper_parameters", {}).get("net", {}).get("_target_", "?")
            raise ConfigError(
                f"{key}={path}: the checkpoint holds another model ({trained}; '{name}' is "
                f"{found} there, {tuple(tensor.shape)} here); start from a checkpoint of the "
                "same model and data, or without ckpt_path"
            )


def finished(checkpoint: Path, max_epochs: int) -> int | None:
    """Epochs done if the checkpoint ends a run that finished them all, else None."""
    state = read_checkpoint(checkpoint, "resume")
    if state.get("dlbasics_finished") and state["epoch"] >= max_epochs:
        return int(state["epoch"])
    return None


def resume_run(
    run_dir: str, overrides: list[str], train: Callable, log_to_run: Callable[[Path], None]
) -> None:
    """Resume ``run_dir`` with ``train``, or say that it has nothing left to do."""
    from dlbasics.rundir import FAILED_MARK, claim, is_helper_process
    from dlbasics.validate import check_config

    directory = Path(run_dir).resolve()
    cfg = load_run_config(directory, overrides)
    check_config(cfg)
    if is_helper_process():  # another rank of a resumed DDP run: the first one owns the run
        train(cfg)
        return
    claim(directory, "resume")
    done = finished(Path(cfg.ckpt_path), cfg.trainer.max_epochs)
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
