"""The base of every datamodule here: arrays in memory, split once, served as whole batches.

Every datamodule derives from :class:`InMemoryDataModule`, which needs only
:meth:`~InMemoryDataModule.load_arrays` (features and targets as NumPy arrays). The base
splits them once with a fixed seed, standardises features with the training split's
statistics where that is the data's default, moves the tensors to the training device
once, and serves whole batches (see :mod:`dlbasics.training.batches`). Images given as
uint8 stay uint8; each batch of them is made float and standardised as it is served
(:mod:`dlbasics.data.pixels`).

After :meth:`~InMemoryDataModule.setup` a datamodule reports what a model needs to be
built for it: :attr:`task`, :attr:`input_shape` and :attr:`num_outputs`, and what it takes
to use the model on raw data later: :meth:`~InMemoryDataModule.describe`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from dlbasics.config.schema import Data as DEFAULT  # the defaults of a data config
from dlbasics.data.arrays import (
    Scaling,
    Split,
    Task,
    check_finite,
    check_target_scaling,
    encode_labels,
    scale_splits,
    split_rows,
)
from dlbasics.data.augment import augmentation
from dlbasics.data.pixels import PixelInputs
from dlbasics.errors import DataError
from dlbasics.training.batches import (
    MemberBatches,
    OrderedBatches,
    ShuffledBatches,
    ShuffledChunks,
)

log = logging.getLogger("dlbasics.data")

# A validation or test split of fewer rows gets a warning: one row moves its accuracy by
# more than 3 points, and its best epoch and R² are as unsteady.
FEW_ROWS = 30


class InMemoryDataModule(pl.LightningDataModule):
    """Base for datasets small enough to live in (device) memory.

    Args:
        task: ``"regression"`` (float targets, shape ``(N, outputs)``) or
            ``"classification"`` (integer class labels, shape ``(N,)``).
        batch_size: rows per optimizer step; ``None`` trains on the full training split.
        val_fraction, test_fraction: shares of all rows held out; ``0`` means no such split.
        standardize: scale tabular features to zero mean and unit variance using the
            training split's statistics only; uint8 images per channel, batch by batch.
        standardize_target: also standardise regression targets (training statistics);
            the module reports its metrics in the target's own units all the same.
            ``"auto"``: regression targets yes, class labels never (``data=csv``'s default).
        stratify: keep class proportions in every split (classification only).
        shuffle: reshuffle the training rows every epoch.
        split_seed: seed of the train/val/test split (fixed, independent of the run's seed).
        shuffle_seed: seed of the per-epoch order of training rows (the configs set it to
            the run's ``seed``).
        eval_batch_size: rows per validation/test batch (evaluation has no optimizer step).
        steps_per_chunk: minibatches per Lightning step when the module asks for chunks
            (see :mod:`dlbasics.training.batches`).
        augment: images only: ``flip``, ``crop`` applied to each training minibatch
            (:mod:`dlbasics.data.augment`).
    """

    def __init__(
        self,
        task: Task,
        batch_size: int | None = DEFAULT.batch_size,
        val_fraction: float = DEFAULT.val_fraction,
        test_fraction: float = DEFAULT.test_fraction,
        standardize: bool = DEFAULT.standardize,
        standardize_target: bool | str = DEFAULT.standardize_target,
        stratify: bool = DEFAULT.stratify,
        shuffle: bool = True,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        eval_batch_size: int = 4096,
        steps_per_chunk: int = 32,
        augment: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.task = task
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.stratify = stratify
        self.shuffle = shuffle
        self.split_seed = split_seed
        self.shuffle_seed = shuffle_seed
        self.eval_batch_size = eval_batch_size
        self.steps_per_chunk = steps_per_chunk
        self.augment = list(augment) if augment else None
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.num_classes: int | None = None
        self.class_names: list[str] = []  # class index -> original label (classification)
        self.feature_names: list[str] = []  # input columns in order, where the data name them
        self.target_name: str | None = None
        self.label_names: dict[str, str] = {}  # label -> readable name (iris: "0" -> "setosa")
        self.feature_scaling: Scaling | None = None  # set by setup() when standardising
        # Images loaded as uint8 stay uint8; this turns each batch into the model's floats.
        self.pixels: PixelInputs | None = None
        self.target_scaling: Scaling | None = None
        # The weights and bias that generated the data, in its own units, where known
        # (data=linear, make_regression, points with weights): figures draw them.
        self.true_weights: np.ndarray | None = None
        self.true_bias: float | None = None

    # -- what subclasses provide ------------------------------------------------------

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return all features ``X`` (``(N, ...)``) and targets ``y`` (``(N,)`` or ``(N, k)``)."""
        raise NotImplementedError

    # -- what a model needs -------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, e.g. ``(2,)`` for moons or ``(1, 8, 8)`` for digits."""
        return tuple(self._split("train")[0].shape[1:])

    @property
    def num_outputs(self) -> int:
        """Number of classes (classification) or of target columns (regression)."""
        if self.task == "classification":
            return int(self.num_classes)
        return self._split("train")[1].shape[1]

    def describe(self) -> dict[str, Any]:
        """What it takes to use a model of these data on raw inputs, as plain Python values.

        The task, the input shape, the feature and class names, and the training split's
        scaling statistics (``None`` where nothing was scaled). The module keeps it in its
        hyperparameters, so every checkpoint carries it.
        """
        return {
            "task": self.task,
            "input_shape": list(self.input_shape),
            "num_outputs": self.num_outputs,
            "feature_names": list(self.feature_names),
            "target_name": self.target_name,
            "class_names": list(self.class_names),
            "feature_scaling": self.feature_scaling.to_dict() if self.feature_scaling else None,
            "target_scaling": self.target_scaling.to_dict() if self.target_scaling else None,
            "rows": self.rows(),
        }

    def rows(self) -> dict[str, int]:
        """Rows of each split: ``{"train": 404, "val": 51, "test": 51}`` (0: no such split)."""
        if not self.splits:
            self.setup()
        return {
            name: len(self.splits[name][0]) if name in self.splits else 0
            for name in ("train", "val", "test")
        }

    def baseline(self, split: str) -> dict[str, Any]:
        """What a model that ignores its inputs scores on ``split``, in the data's own units:
        classification, the accuracy of always predicting the training split's majority class
        (``{"metric": "acc", "value": ..., "predicts": "<class name>"}``); regression, the MSE
        of always predicting the training split's mean (``"metric": "mse"``; its R² is about 0).
        """
        train, held_out = self.original_targets("train"), self.original_targets(split)
        if self.task == "classification":
            counts = np.bincount(train.astype(np.int64), minlength=int(self.num_classes))
            majority = int(np.argmax(counts))  # a tie: the first class
            value = float(np.mean(held_out == majority))
            return {"metric": "acc", "value": value, "predicts": self.class_names[majority]}
        mean = train.astype(np.float64).mean(axis=0)
        value = float(np.mean((held_out.astype(np.float64) - mean) ** 2))
        return {"metric": "mse", "value": value, "predicts": mean.tolist()}

    def save_description(self, directory: str | Path) -> Path:
        """Write :meth:`describe` to ``directory/data.json``: what the run's inputs and
        outputs mean (columns in order, classes, scaling), readable without Python."""
        file = Path(directory) / "data.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(self.describe(), indent=2) + "\n")
        return file

    def original_split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A split as NumPy arrays in the data's own units (scaling undone), on the host.

        Features keep their shape (images stay images, as float32 pixels in ``[0, 1]``);
        classification targets are class indices (:attr:`class_names` names them),
        regression targets ``(N, outputs)``.
        """
        x = self._split(name)[0].detach().cpu()
        if self.pixels is not None:  # stored uint8, never scaled
            return PixelInputs()(x).numpy(), self.original_targets(name)
        x = x.numpy()
        if self.feature_scaling is not None:
            x = self.feature_scaling.undo(x)
        return x, self.original_targets(name)

    def original_targets(self, name: str) -> np.ndarray:
        """A split's targets alone, as :meth:`original_split` gives them."""
        y = self._split(name)[1].detach().cpu().numpy()
        return self.target_scaling.undo(y) if self.target_scaling is not None else y

    def model_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of a split as stored -> what the model takes: uint8 images become float
        pixels, standardised where the data are; other rows are stored model-ready."""
        return self.pixels(x) if self.pixels is not None else x

    # -- Lightning hooks ----------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Load, split and standardise once; later calls (fit, then test) reuse the result."""
        if self.splits:
            return
        check_target_scaling(self.standardize_target, self.task)
        x, y = self.load_arrays()
        pixels = np.asarray(x).dtype == np.uint8 and np.ndim(x) == 4  # images: kept as uint8
        if not pixels:
            x = np.asarray(x, dtype=np.float32)
            check_finite(x, "the features")
        if self.task == "classification":
            key = f"data.target={self.target_name}" if self.target_name else "data"
            y, labels = encode_labels(y, key)
            self.class_names = [self.label_names.get(label, label) for label in labels]
            self.num_classes = len(self.class_names)
        else:
            y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
            check_finite(y, "the target")
        parts = self._split_rows(x, y)
        if self.augment and x.ndim != 4:
            raise DataError(
                f"data.augment={self.augment}: augments images (samples shaped C x H x W); "
                f"these samples are shaped {tuple(x.shape[1:])}"
            )
        if self.standardize and x.ndim == 2:
            parts, self.feature_scaling = scale_splits(parts, column=0)
        elif self.standardize and pixels:  # per channel, applied to each batch (PixelInputs)
            self.feature_scaling = Scaling.of_pixels(parts["train"][0])
        if pixels:
            self.pixels = PixelInputs(self.feature_scaling)
        if self.standardize_target and self.task == "regression":
            parts, self.target_scaling = scale_splits(parts, column=1)
        self.splits = {
            name: (torch.from_numpy(a), torch.from_numpy(b)) for name, (a, b) in parts.items()
        }
        if stage == "fit":  # a run's setup: say what it learns from and is judged on
            self._report_rows()

    def train_dataloader(self) -> ShuffledBatches:
        """Plain ``(x, y)`` minibatches for any LightningModule, one shard per process under
        DDP; chunks of minibatches for a module that asks for them (``takes_chunks``)."""
        x, y = self._on_device("train")
        batch_size = self.batch_size or len(x)  # None: full batch
        trainer = self.trainer
        # Each epoch's order is read from the trainer when the epoch's first batch is taken
        # (its current_epoch, restored on resume); without a trainer, from set_epoch.
        epoch_of = (lambda: trainer.current_epoch) if trainer is not None else None
        module = trainer.lightning_module if trainer else None
        seeds = getattr(module, "member_seeds", None)
        transform = self._training_inputs()
        if seeds:  # K stacked members, each in its own seed's order (training/seeds.py)
            chunk = self.steps_per_chunk if module.takes_chunks else None
            return MemberBatches(
                x, y, batch_size, seeds, chunk, self.shuffle, epoch_of, transform
            )  # fmt: skip
        if getattr(module, "takes_chunks", False):
            return ShuffledChunks(
                x, y, batch_size, self.steps_per_chunk, self.shuffle, self.shuffle_seed,
                epoch_of=epoch_of, transform=transform,
            )  # fmt: skip
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return ShuffledBatches(
            x, y, batch_size, self.shuffle, self.shuffle_seed, rank, world_size, epoch_of,
            transform,
        )  # fmt: skip

    def val_dataloader(self) -> OrderedBatches | list:
        return self._eval_batches("val")

    def test_dataloader(self) -> OrderedBatches | list:
        return self._eval_batches("test")

    def predict_dataloader(self) -> OrderedBatches | list:
        return self._eval_batches("test")

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # The tensors were moved to the training device once, in ``_on_device``.
        return batch

    # -- kept in checkpoints: a resumed run must see the same data ------------------------

    def state_dict(self) -> dict[str, Any]:
        """What Lightning stores in a checkpoint: :meth:`describe`."""
        return self.describe() if self.splits else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse to resume on data whose classes or columns changed since the checkpoint."""
        now = self.describe() if self.splits else {}
        for key, what in (("class_names", "classes"), ("feature_names", "feature columns")):
            saved, current = state_dict.get(key), now.get(key)
            if saved and current and list(saved) != list(current):
                # Same indices, other meaning: the model's inputs or outputs would be mixed up.
                raise DataError(
                    f"the checkpoint was trained with {what} {list(saved)}, but the data now "
                    f"have {list(current)}; use the original data or start a new run"
                )

    # -- helpers ------------------------------------------------------------------------

    def has_split(self, name: str) -> bool:
        """Whether the ``val`` or ``test`` split holds any rows."""
        return name in self.splits and len(self.splits[name][0]) > 0

    def _split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.splits:
            self.setup()
        return self.splits[name]

    def _eval_batches(self, name: str) -> OrderedBatches | list:
        if not self.has_split(name):
            return []  # Lightning skips a loop whose loader is empty
        x, y = self._on_device(name)
        return OrderedBatches(x, y, self.eval_batch_size, self.pixels)

    def _training_inputs(self):
        """What each training minibatch's inputs go through: ``data.augment`` (on the
        pixels as stored: a crop shifts black in), then :attr:`pixels`; None for nothing."""
        augment, pixels = augmentation(self.augment), self.pixels
        if augment is None or pixels is None:
            return augment or pixels
        return lambda images: pixels(augment(images))

    def _on_device(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Move a split to the trainer's device once (a no-op on CPU) and keep it there."""
        x, y = self._split(name)
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        if x.device != device:
            x, y = x.to(device), y.to(device)
            self.splits[name] = (x, y)
        return x, y

    def _report_rows(self) -> None:
        """One line of the rows of each split, and a warning for a held-out split too small
        for its metrics to mean much (logger ``dlbasics.data``: console and train.log)."""
        from dlbasics.config.rundir import is_helper_process

        if is_helper_process():  # DDP: the first process says it
            return
        rows = self.rows()
        log.info("data: %d training rows, %d validation, %d test", *rows.values())
        headline = "acc" if self.task == "classification" else "r2"
        for split, name in (("val", "validation"), ("test", "test")):
            count = rows[split]
            if not 0 < count < FEW_ROWS:
                continue
            moves = (
                f" (one row moves {split}/acc by {100 / count:.2g} points)"
                if self.task == "classification"
                else ""
            )
            log.warning(
                "data: the %s split has only %d rows, so its %s/ metrics (%s/%s, %s/loss) are "
                "noisy%s; use more rows or a larger data.%s_fraction (now %g)",
                name, count, split, split, headline, split, moves, split,
                getattr(self, f"{split}_fraction"),
            )  # fmt: skip

    def _split_rows(self, x: np.ndarray, y: np.ndarray) -> Split:
        """Split rows into train/val/test with ``split_seed`` (stratified for classes)."""
        return split_rows(
            x,
            y,
            self.val_fraction,
            self.test_fraction,
            stratify=self.task == "classification" and self.stratify,
            seed=self.split_seed,
        )
