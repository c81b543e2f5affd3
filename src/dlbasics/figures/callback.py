"""When figures are drawn and where they go: TensorBoard's Images tab and ``<run>/figures/``."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from dlbasics.figures.contents import DRAW, evaluation_inputs, progress_inputs, shown_split

log = logging.getLogger(__name__)


class RunFigures(Callback):
    """Draw what the model learned, during training and once it is final.

    *Progress* figures (the fitted line, a linear model's weights, decision regions) show
    the model every ``every_n_epochs`` epochs in TensorBoard, so its step slider shows the
    model converge. The *final* figures — those again plus predicted vs actual, residuals,
    the confusion matrix, misclassified images and the top losses — are drawn once, for
    the model that is tested (the best checkpoint) on the test split, or at the end of
    training on the validation (else training) split when no test follows; they go to
    TensorBoard and, as PNG files, to ``dirpath`` whatever the logger.

    Drawing stays off the training loop: at a progress epoch only the arrays are taken (a
    forward pass over a grid of inputs, a few milliseconds); they are drawn, with
    matplotlib's non-interactive Agg canvas, when training ends, or every
    ``draw_every_seconds`` on a long run so TensorBoard shows them while it trains.

    Args:
        dirpath: folder of the final PNG files.
        every_n_epochs: epochs between progress figures; ``None``: about ``frames`` per run.
        frames: progress figures per run when ``every_n_epochs`` is ``None``.
        draw_every_seconds: draw the progress figures taken so far at most this often.
        evaluate_after_fit: draw the final figures when training ends (no test will run);
            otherwise they are drawn when the test ends.
        progress: take the progress figures (``False``: the final ones only).
        max_images: at most this many misclassified images in their grid.
        **kinds: ``fitted_line``, ``fitted_plane``, ``weights``, ``decision_regions``, ``predicted_vs_actual``,
            ``residuals``, ``confusion_matrix``, ``misclassified``, ``top_losses``: ``False``
            switches it off.
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_epochs: int | None = None,
        frames: int = 10,
        draw_every_seconds: float = 60.0,
        evaluate_after_fit: bool = False,
        max_images: int = 32,
        progress: bool = True,
        **kinds: bool,
    ) -> None:
        unknown = set(kinds) - set(DRAW)
        if unknown:
            raise ValueError(
                f"unknown figure kind {', '.join(sorted(unknown))}; the kinds are {', '.join(DRAW)}"
            )
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.frames = frames
        self.draw_every_seconds = draw_every_seconds
        self.evaluate_after_fit = evaluate_after_fit
        self.max_images = max_images
        self.progress = progress
        self.kinds = {kind for kind in DRAW if kinds.get(kind, True)}
        self.seconds = 0.0  # time spent taking and drawing figures
        self.drawn = 0
        self._taken: list[tuple[int, dict[str, dict]]] = []  # (epoch, inputs) not yet drawn
        self._last_drawn = time.monotonic()
        self._epochs_done = 0

    def interval(self, trainer: pl.Trainer) -> int:
        """Epochs between progress figures."""
        if self.every_n_epochs:
            return self.every_n_epochs
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 100
        return max(1, math.ceil(epochs / self.frames))

    # -- when -----------------------------------------------------------------------------

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epochs_done = trainer.current_epoch + 1
        if not self.progress or trainer.sanity_checking:
            return
        if self._epochs_done % self.interval(trainer):
            return
        if self._epochs_done == trainer.max_epochs:
            return  # the final figures take the last epoch
        if not (_can_draw(trainer, pl_module) and _image_loggers(trainer)):
            return  # progress figures go to TensorBoard only
        started = time.perf_counter()
        title = f"epoch {self._epochs_done}"
        inputs = progress_inputs(pl_module, trainer.datamodule, self.kinds, title)
        self._taken.append((self._epochs_done, inputs))
        self.seconds += time.perf_counter() - started
        if time.monotonic() - self._last_drawn >= self.draw_every_seconds:
            self._draw_taken(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw_taken(trainer)
        if not _can_draw(trainer, pl_module):
            return
        if self.evaluate_after_fit or not trainer.datamodule.has_split("test"):
            self._draw_final(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if _can_draw(trainer, pl_module) and trainer.datamodule.has_split("test"):
            self._draw_final(trainer, pl_module, _tested_epoch(trainer))

    # -- what -------------------------------------------------------------------------------

    def _draw_taken(self, trainer: pl.Trainer) -> None:
        """Draw the progress figures taken since the last time, each at its own epoch."""
        taken, self._taken = self._taken, []
        for epoch, inputs in taken:
            self._draw(trainer, inputs, step=epoch, save_png=False)
        self._last_drawn = time.monotonic()

    def _draw_final(
        self, trainer: pl.Trainer, module: pl.LightningModule, epoch: int | None = None
    ) -> None:
        """The final figures, of the weights the run ends with: the last epoch's, or those
        of ``epoch`` (from 1) that the test restored from the best checkpoint."""
        datamodule = trainer.datamodule
        split = shown_split(datamodule)
        title = f"final model ({self._epochs_done} epochs)"
        if epoch is not None and epoch != self._epochs_done:
            title = f"best model (epoch {epoch} of {self._epochs_done})"
        inputs = progress_inputs(module, datamodule, self.kinds, title, final=True)
        inputs.update(
            evaluation_inputs(module, datamodule, split, self.kinds, title, self.max_images)
        )
        self._draw(trainer, inputs, step=self._epochs_done, save_png=True)
        if inputs:
            log.info(
                "Figures: %s in %s (%d figures drawn in %.1f s)",
                ", ".join(inputs),
                self.dirpath,
                self.drawn,
                self.seconds,
            )

    # -- where ------------------------------------------------------------------------------

    @rank_zero_only
    def _draw(
        self, trainer: pl.Trainer, inputs: dict[str, dict], step: int, save_png: bool
    ) -> None:
        """Draw each figure once and hand it to every logger that takes images (TensorBoard)
        and, for the final figures, to the PNG folder."""
        from matplotlib.image import imsave

        from dlbasics.figures.draw import rgb_array

        started = time.perf_counter()
        loggers = _image_loggers(trainer)
        for kind, kwargs in inputs.items():
            if not loggers and not save_png:
                break
            figure = DRAW[kind](**kwargs)
            image = rgb_array(figure)
            for logger in loggers:
                logger.experiment.add_image(
                    f"figures/{kind}", image, global_step=step, dataformats="HWC"
                )
            if save_png:
                self.dirpath.mkdir(parents=True, exist_ok=True)
                imsave(self.dirpath / f"{kind}.png", image)
            self.drawn += 1
        self.seconds += time.perf_counter() - started


def _tested_epoch(trainer: pl.Trainer) -> int | None:
    """The epoch (from 1) whose weights the test restored from dlbasics' best checkpoint, or
    None when it tested the weights in memory (another checkpoint callback, or none)."""
    if not trainer.ckpt_path:
        return None
    for callback in trainer.callbacks:
        best_epoch = getattr(callback, "best_epoch", None)
        best_path = getattr(callback, "best_path", None)
        if best_epoch is not None and best_path and Path(trainer.ckpt_path) == Path(best_path):
            return best_epoch + 1
    return None


def _can_draw(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Figures read dlbasics' datamodules (original units) and ask its module to predict;
    under DDP only the first process draws (every process holds the same model)."""
    return (
        trainer.is_global_zero
        and hasattr(trainer.datamodule, "original_split")
        and hasattr(module, "predict_raw")
    )


def _image_loggers(trainer: pl.Trainer) -> list[TensorBoardLogger]:
    """The run's loggers that take images (TensorBoard's, Lightning's or dlbasics' own)."""
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
