"""Trains dlbasics' module on moons with Lightning's DDP on 2 CPU processes (gloo).

Run as a script (``python tests/ddp_worker.py OUT``): Lightning's launcher starts the
second process by running this file again. Each process saves what it saw and ended with
to ``OUT/rank<r>.pt``, for ``test_ddp.py`` to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dlbasics.config.tree import CONFIG_DIR
from dlbasics.training.train import build_module


class Record(pl.Callback):
    """The training rows each process is given, epoch by epoch."""

    def __init__(self) -> None:
        self.epochs: list[list[torch.Tensor]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append([])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epochs[-1].append(batch[0].detach().cpu())


def main(out: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=moons", "trainer.max_epochs=3"])
    pl.seed_everything(0, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    record = Record()
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=3, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[record],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    torch.save(
        {
            "epochs": [torch.cat(rows) for rows in record.epochs],
            "train_x": datamodule.splits["train"][0].cpu(),
            "val": [t.cpu() for t in datamodule.splits["val"]],
            "params": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "global_step": trainer.global_step,
        },
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
