"""The config schema: the keys of ``conf/train.yaml`` and of each group's options, and their types.

Every option's YAML file names its schema first in its defaults list, the pattern of Hydra's
tutorial "Structured Config schema" (a schema from another place than the option's group)::

    defaults:
      - /schema_model_mlp@_global_   # keys and types: dlbasics.config.schema.MLP
      - _self_

so Hydra itself refuses, in the file or on the command line, a key the option does not have
(``model.hiden_sizes=[8]``) and a value of the wrong type (``optimizer.lr=fast``,
``model.hidden_sizes=64``). :mod:`dlbasics.config.checks` turns that refusal into dlbasics'
one line and checks what a type cannot say: ranges (``optimizer.lr`` above 0), the names a
string may take (``model.activation``), keys that depend on each other.

The YAML files stay the place a user reads and edits: they hold the values and their
comments, and a field here has no default (``MISSING``: the file sets it). The exception are
the keys every data option shares (batch size, split, order of rows): their defaults are
written once, in :class:`Data`. A user's own option without a schema stays an open dict: the
groups are ``Any`` at the top level (:class:`Train`).

The schemas are stored at the root of Hydra's ConfigStore as ``schema_<group>_<option>``
rather than in a config group of their own, so that ``--help`` lists no group of schemas
beside the user's options; options with the same keys share one. Importing this module stores them (Hydra's launchers carry the
ConfigStore into their worker processes). It imports no torch or Lightning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, SI, DictConfig, OmegaConf

#: The activations :mod:`dlbasics.nets` builds: each name and its ``torch.nn`` class.
ACTIVATIONS = {
    "relu": "ReLU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
}

# Augmentations of training images (data.augment), applied by dlbasics.data.augment.
AUGMENTATIONS = ("flip", "crop")


# -- conf/train.yaml ---------------------------------------------------------------------


@dataclass
class LrFind:
    min_lr: float = MISSING
    max_lr: float = MISSING
    num_steps: int = MISSING


@dataclass
class Members:
    """Optimizer values that differ between the members of one stacked run (``seeds=``)."""

    lr: list[float] | None = None
    weight_decay: list[float] | None = None
    momentum: list[float] | None = None


@dataclass
class Train:
    """The top-level keys. A group's node is typed by its option's own schema, or not at
    all (a user's own option), so each group is ``Any`` here."""

    task_name: str = MISSING
    tags: list[str] = MISSING
    seed: int = MISSING
    seeds: list[int] | None = None
    members: Members = MISSING
    ckpt_path: str | None = MISSING
    test: bool = MISSING
    gradient_clip_val: float | None = MISSING
    float32_matmul_precision: str = MISSING
    lr_find: LrFind = MISSING
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    trainer: Any = MISSING
    logger: Any = None
    callbacks: Any = None
    figures: Any = None
    paths: Any = MISSING
    hparams_search: Any = None  # a preset may carry a search space without choosing a search


# -- model ---------------------------------------------------------------------------------


@dataclass
class Net:
    _target_: str = MISSING


@dataclass
class LinearRegression(Net):
    bias: bool = MISSING


@dataclass
class MLP(Net):
    hidden_sizes: list[int] = MISSING
    activation: str = MISSING
    dropout: float = MISSING


@dataclass
class CNN(Net):
    channels: list[int] = MISSING
    kernel_size: int = MISSING
    pool_size: int = MISSING
    pool_after: list[int] | None = MISSING
    hidden: int = MISSING
    activation: str = MISSING
    dropout: float = MISSING


# -- optimizer and scheduler -------------------------------------------------------------------


@dataclass
class Optimizer:
    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class MomentumOptimizer(Optimizer):
    momentum: float = MISSING


@dataclass
class Scheduler:
    _target_: str = MISSING
    _partial_: bool = MISSING


@dataclass
class StepLR(Scheduler):
    step_size: int = MISSING
    gamma: float = MISSING


@dataclass
class CosineAnnealingLR(Scheduler):
    T_max: int = MISSING
    eta_min: float = MISSING


@dataclass
class ReduceLROnPlateau(Scheduler):
    mode: str = MISSING
    factor: float = MISSING
    patience: int = MISSING


# -- data ------------------------------------------------------------------------------------


@dataclass
class Data:
    """The keys every data option shares, with their defaults: the one place they are
    written (:class:`dlbasics.data.InMemoryDataModule` takes its own from here)."""

    _target_: str = MISSING
    batch_size: int | None = 32  # rows per optimizer step (null = full batch)
    val_fraction: float = 0.1  # share of rows held out for validation (0 = none)
    test_fraction: float = 0.1  # share of rows held out for the final test (0 = none)
    standardize: bool = True  # scale features to zero mean, unit variance (training split's)
    # auto: a regression target is learned in standard units (its metrics stay in its own
    # units), class labels never; true/false force it. Any, not bool | str: OmegaConf cannot
    # fill in a union's default while Hydra composes (dlbasics.data.arrays checks the value).
    standardize_target: Any = False
    stratify: bool = True  # classification: keep class proportions in every split
    shuffle_seed: int = SI("${seed}")  # order of training rows each epoch: the run's seed


@dataclass
class Images(Data):
    """torchvision's MNIST, Fashion-MNIST or CIFAR-10 (:class:`dlbasics.data.TorchvisionImages`)."""

    dataset: str = MISSING
    root: str = MISSING
    download: bool = MISSING
    augment: list[str] | None = None  # training images only: flip, crop


@dataclass
class FolderImages(Data):
    """The user's folder of images, one subfolder per class (:class:`dlbasics.data.FolderImages`)."""

    path: str | None = None
    image_size: list[int] | None = None
    channels: int | None = None
    augment: list[str] | None = None  # training images only: flip, crop


@dataclass
class Sklearn(Data):
    """A scikit-learn function (:class:`dlbasics.data.SklearnData`); a bundled data set."""

    function: str = MISSING
    task: str = MISSING


@dataclass
class Generated(Sklearn):
    n_samples: int = MISSING
    random_state: int | None = MISSING


@dataclass
class Moons(Generated):
    noise: float = MISSING


@dataclass
class Circles(Moons):
    factor: float = MISSING


@dataclass
class Blobs(Generated):
    n_features: int = MISSING
    centers: Any = MISSING  # a number of blobs, or their centres
    cluster_std: Any = MISSING  # one standard deviation, or one per blob


@dataclass
class Classification(Generated):
    n_features: int = MISSING
    n_informative: int = MISSING
    n_redundant: int = MISSING
    n_classes: int = MISSING


@dataclass
class MakeRegression(Generated):
    n_features: int = MISSING
    n_informative: int = MISSING
    noise: float = MISSING
    bias: float = MISSING


@dataclass
class Linear(Data):
    weights: list[float] = MISSING
    bias: float = MISSING
    noise: float = MISSING
    n_samples: int = MISSING
    random_state: int | None = MISSING


@dataclass
class Points(Data):
    x: Any = MISSING  # one row per sample
    y: Any = MISSING
    weights: list[float] | None = MISSING
    bias: float = MISSING


@dataclass
class Csv(Data):
    """The user's CSV file (:class:`dlbasics.data.CsvData`); column names may be one name
    or a list, so those keys are ``Any``."""

    path: str | None = MISSING
    target: str | None = MISSING
    task: str = MISSING
    features: Any = MISSING
    drop: Any = MISSING
    sep: str | None = MISSING
    encoding: str = MISSING
    decimal: str | None = MISSING
    dropna: bool = MISSING
    impute: str | None = MISSING
    categorical: Any = MISSING
    categorical_encoding: str = MISSING
    min_category_count: int = MISSING
    unknown_category: str = MISSING


# -- trainer, callbacks, logger, figures, paths ------------------------------------------------


@dataclass
class Trainer:
    _target_: str = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING  # a count, auto, -1 (all) or a list of GPU indices
    max_epochs: int = MISSING
    check_val_every_n_epoch: int = MISSING
    num_sanity_val_steps: int = MISSING
    enable_progress_bar: bool = MISSING
    log_every_n_steps: int = MISSING
    enable_model_summary: bool = MISSING
    deterministic: Any = MISSING  # true, false or "warn" (Lightning checks it)
    default_root_dir: str = MISSING
    # dlbasics' own, not a Trainer argument: torch's CPU threads, auto or a number (checked
    # in dlbasics.config.checks). A default here, so a user's own trainer option has it too.
    threads: Any = "auto"


@dataclass
class DDPTrainer(Trainer):
    strategy: str = MISSING


@dataclass
class Checkpoint:
    _target_: str = MISSING
    dirpath: str = MISSING
    monitor: str = MISSING
    every_n_seconds: float | None = MISSING
    every_n_epochs: int | None = MISSING


@dataclass
class ProgressBar:
    _target_: str = MISSING
    refresh_per_second: float = MISSING


@dataclass
class ModelSummary:
    _target_: str = MISSING
    max_depth: int = MISSING


@dataclass
class GracefulStop:
    _target_: str = MISSING
    grace_seconds: float = MISSING


@dataclass
class EarlyStopping:
    _target_: str = MISSING
    monitor: str = MISSING
    patience: int = MISSING
    min_delta: float = MISSING
    mode: str = MISSING


#: The callbacks of every run, each typed. The group itself is a plain dict, so that a
#: callback is dropped (``callbacks.progress_bar=null``, ``~callbacks.progress_bar``) and
#: another added (``+callbacks.lr_monitor._target_=...``).
CALLBACKS = {
    "checkpoint": Checkpoint,
    "progress_bar": ProgressBar,
    "model_summary": ModelSummary,
    "graceful_stop": GracefulStop,
}


@dataclass
class CsvLogger:
    _target_: str = MISSING
    save_dir: str = MISSING
    name: str = MISSING
    version: str = MISSING


@dataclass
class TensorBoardLogger(CsvLogger):
    default_hp_metric: bool = MISSING


@dataclass
class Figures:
    _target_: str = MISSING
    dirpath: str = MISSING
    every_n_epochs: int | None = MISSING
    frames: int = MISSING
    draw_every_seconds: float = MISSING
    max_images: int = MISSING
    fitted_line: bool = MISSING
    fitted_plane: bool = MISSING
    weights: bool = MISSING
    decision_regions: bool = MISSING
    predicted_vs_actual: bool = MISSING
    residuals: bool = MISSING
    confusion_matrix: bool = MISSING
    misclassified: bool = MISSING
    top_losses: bool = MISSING


@dataclass
class Paths:
    root_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str = MISSING


# -- hparams_search ----------------------------------------------------------------------------


@dataclass
class HparamsSearch:
    n_trials: int = MISSING
    metric: str = MISSING
    direction: str = MISSING
    study_name: str | None = MISSING
    storage: str | None = MISSING
    sampler_seed: int | None = MISSING
    n_startup_trials: int = MISSING
    parallel_trials: Any = MISSING  # auto, or a number (checked in dlbasics.config.checks)
    space: Any = MISSING  # nested like the config, in the command line's sweep syntax


#: The schemas as the YAML files name them: ``schema_<name>`` in the ConfigStore. Options
#: whose keys are the same share one (``optimizer=adam`` and ``adamw``: ``schema_optimizer``).
SCHEMAS: dict[str, type | dict[str, type]] = {
    "train": Train,
    "model_linreg": LinearRegression,
    "model_mlp": MLP,
    "model_cnn": CNN,
    "optimizer": Optimizer,
    "optimizer_momentum": MomentumOptimizer,
    "scheduler_step": StepLR,
    "scheduler_cosine": CosineAnnealingLR,
    "scheduler_plateau": ReduceLROnPlateau,
    "data": Data,
    "data_sklearn": Sklearn,
    "data_torchvision": Images,
    "data_images": FolderImages,
    "data_moons": Moons,
    "data_circles": Circles,
    "data_blobs": Blobs,
    "data_classification": Classification,
    "data_make_regression": MakeRegression,
    "data_linear": Linear,
    "data_points": Points,
    "data_csv": Csv,
    "trainer": Trainer,
    "trainer_ddp": DDPTrainer,
    # Groups of named objects: plain dicts of typed entries (each can be dropped).
    "callbacks": CALLBACKS,
    "callbacks_early_stopping": {"early_stopping": EarlyStopping},  # with default's
    "logger_csv": {"csv": CsvLogger},
    "logger_tensorboard": {"tensorboard": TensorBoardLogger},
    "figures": Figures,
    "paths": Paths,
    "hparams_search": HparamsSearch,
}


def keys_of(schema: type | dict[str, type]) -> set[str]:
    """The keys a schema of :data:`SCHEMAS` gives its option."""
    if isinstance(schema, dict):
        return set(schema)
    return {field.name for field in dataclasses.fields(schema)}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (again: storing is idempotent).

    :class:`Train` is stored as the root it types. An option's schema is stored as its
    group's node without a value yet, typed by the schema (``{model: ???}``, a
    :class:`MLP`), for the root (``@_global_``): the option's YAML merged into it is checked
    against the schema and gets its defaults. Such a node costs Hydra almost nothing to copy
    (it copies the whole ConfigStore each time it composes, and ``--help`` composes about a
    hundred times), where a filled-in one costs a millisecond each.
    """
    store = ConfigStore.instance()
    store.store(name="schema_train", node=Train, provider="dlbasics")
    for name, schema in SCHEMAS.items():
        if name == "train":
            continue
        group = next(g for g in GROUPS if name == g or name.startswith(f"{g}_"))
        node = (
            {key: _typed(entry) for key, entry in schema.items()}
            if isinstance(schema, dict)
            else _typed(schema)
        )
        store.store(
            name=f"schema_{name}", node=OmegaConf.create({group: node}), provider="dlbasics"
        )


#: The config groups whose options have a schema here, as :data:`SCHEMAS` names them.
GROUPS = (
    "model",
    "optimizer",
    "scheduler",
    "data",
    "trainer",
    "callbacks",
    "logger",
    "figures",
    "paths",
    "hparams_search",
)


def _typed(schema: type) -> DictConfig:
    """A node of type ``schema`` with no value yet (``???``)."""
    return DictConfig(content=MISSING, ref_type=schema)


register()
