"""``python -m dlbasics.train resume=<run dir> [key=value ...]``: continue a run in place.

The run's own composed config (``.hydra/config.yaml``) is reloaded, training continues from
its ``checkpoints/last.ckpt`` in the same directory, and TensorBoard events are appended to
the same run. Overrides may change keys, e.g. ``trainer.max_epochs=50`` to train longer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlbasics.errors import ConfigError


def load_run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The run's composed config, pointed at its own directory and newest checkpoint."""
    from dlbasics.validate import check_key_exists

    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"resume={run_dir}: not a run directory (no .hydra/config.yaml in it)")
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        raise ConfigError(f"resume={run_dir}: there is no checkpoints/last.ckpt to resume from")
    cfg = OmegaConf.load(config_file)
    for override in overrides:
        key = override.split("=", 1)[0]
        check_key_exists(cfg, key)
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


def finished(checkpoint: Path, max_epochs: int) -> int | None:
    """Epochs done if the checkpoint ends a run that finished them all, else None."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state.get("dlbasics_finished") and state["epoch"] >= max_epochs:
        return int(state["epoch"])
    return None


def resume_run(
    run_dir: str, overrides: list[str], train: Callable, log_to_run: Callable[[Path], None]
) -> None:
    """Resume ``run_dir`` with ``train``, or say that it has nothing left to do."""
    from dlbasics.validate import check_config

    directory = Path(run_dir).resolve()
    cfg = load_run_config(directory, overrides)
    check_config(cfg)
    done = finished(Path(cfg.ckpt_path), cfg.trainer.max_epochs)
    if done is not None:
        print(
            f"{directory} already finished its {done} epochs; nothing to resume. "
            f"To train longer: python -m dlbasics.train resume={directory} "
            f"trainer.max_epochs={done * 2}"
        )
        return
    log_to_run(directory)
    train(cfg)
