"""Train a model from the config tree: ``python -m dlbasics.train [group=option] [key=value]``.

The flow reads top to bottom in :func:`train`: seed, data, model, trainer, fit, test.
Torch and Lightning are imported inside it, so ``--help`` and ``--cfg job`` answer
without loading them.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dlbasics.config import CONFIG_DIR, register_experiments

register_experiments()


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment described by a composed config; return its final metrics."""
    import lightning.pytorch as pl
    from hydra.utils import instantiate

    from dlbasics import report
    from dlbasics.callbacks import BestAndLastCheckpoint
    from dlbasics.module import SupervisedModule
    from dlbasics.setup import build_callbacks, build_loggers, log_hyperparameters, quiet_lightning

    quiet_lightning()
    report.print_config(cfg)
    pl.seed_everything(cfg.seed, verbose=False)

    # The data come first: the model is sized from what they report.
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = SupervisedModule(
        net=cfg.model,
        task=datamodule.task,
        input_shape=datamodule.input_shape,
        num_outputs=datamodule.num_outputs,
        optimizer=cfg.optimizer,
        scheduler=cfg.scheduler or None,
        gradient_clip_val=cfg.gradient_clip_val,
    )

    loggers = build_loggers(cfg.logger)
    callbacks = build_callbacks(
        cfg.callbacks, has_logger=bool(loggers), progress_bar=cfg.trainer.enable_progress_bar
    )
    # Without a validation split there is nothing to validate; saying so avoids Lightning's warning.
    no_validation = {} if datamodule.has_split("val") else {"limit_val_batches": 0}
    checkpoint = next((c for c in callbacks if isinstance(c, BestAndLastCheckpoint)), None)
    trainer = instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=checkpoint is not None,  # else Lightning adds its own, per epoch
        **no_validation,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

    if cfg.test and datamodule.has_split("test"):
        best = checkpoint.best_path if checkpoint and checkpoint.best_path.exists() else None
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})

    log_hyperparameters(loggers, cfg, metrics)
    report.print_metrics(metrics, cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the validation loss for sweepers that optimise it."""
    metrics = train(cfg)
    return metrics.get("val/loss", metrics.get("train/loss"))


if __name__ == "__main__":
    main()
