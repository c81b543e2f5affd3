"""A run directory loaded for use: its config, a checkpoint, and what its data meant.

One place loads a run for ``resume=``, ``evaluate``, ``predict`` and ``export``:

* :func:`open_run` checks that a directory holds a run and reads its composed config
  (``.hydra/config.yaml``); it imports no torch, so a wrong path is reported at once;
* :meth:`SavedRun.checkpoint` picks ``best``, ``last`` or a file (``ckpt=``), and
  :func:`read_checkpoint` reads one, saying why it cannot (truncated, not a checkpoint);
* :meth:`SavedRun.load` rebuilds the trained :class:`~dlbasics.training.module.SupervisedModule` from
  a checkpoint, with the data description it carries: task, feature and class names, and
  the training split's scaling statistics (see :class:`TrainedModel`).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from dlbasics.data.arrays import Scaling
from dlbasics.errors import ConfigError, DataError


@dataclass
class SavedRun:
    """A run directory and its composed config."""

    directory: Path
    config: DictConfig
    key: str = "run"  # the command-line key that named it, for messages
    given: Path | None = None  # the checkpoint named instead of its run (run=<ckpt file>)

    def checkpoint(self, choice: str | None = None) -> Path:
        """``best`` (the default, what the run's test used; ``last`` if there is no best;
        the checkpoint named by ``run=`` if it named one), ``last``, or a checkpoint file;
        a ConfigError saying what exists otherwise."""
        folder = self.directory / "checkpoints"
        if choice in (None, "") and self.given is not None:
            return self.given
        if choice in (None, "", "best", "last"):
            names = [choice] if choice else ["best", "last"]
            for name in names:
                if (folder / f"{name}.ckpt").is_file():
                    return folder / f"{name}.ckpt"
            found = ", ".join(p.name for p in sorted(folder.glob("*.ckpt"))) or "none"
            wanted = f"checkpoints/{choice}.ckpt" if choice else "checkpoint"
            raise ConfigError(
                f"{self.key}={self.directory}: no {wanted} in the run (checkpoints there: "
                f"{found}); the run may have stopped before its first epoch ended"
            )
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"ckpt={choice}: no such file; use ckpt=best, ckpt=last or a .ckpt file"
            )
        return path

    def load(self, choice: str | None = None) -> TrainedModel:
        """The trained model of checkpoint ``choice``, in evaluation mode on the CPU."""
        from dlbasics.training.module import SupervisedModule

        path = self.checkpoint(choice)
        own = path.parent == self.directory / "checkpoints"
        state = read_checkpoint(
            path,
            f"{self.key}={self.directory}: its checkpoints/{path.name}" if own else f"ckpt={path}:",
            lambda other: f"use it with ckpt={other.stem if own else other}",
        )
        hyper = state.get("hyper_parameters") or {}
        if "net" not in hyper or not isinstance(state.get("state_dict"), dict):
            raise ConfigError(f"ckpt={path}: not a checkpoint of a dlbasics run")
        module = SupervisedModule(**hyper)
        module.load_state_dict(state["state_dict"])
        module.eval()
        description = hyper.get("data") or self.data_description()
        self._check_same_data(description, path)
        # best.ckpt holds the weights of epoch ``best_epoch`` (counted from 0), written later.
        best = state.get("best_epoch")
        return TrainedModel(module, description, path, None if best is None else int(best) + 1)

    def _check_same_data(self, description: dict[str, Any], path: Path) -> None:
        """A checkpoint from elsewhere (``ckpt=<file>``) must read and predict what this run's
        data hold, or every number computed with it would be wrong."""
        if (self.directory / "data.json").is_file():
            differs = different_data(description, self.data_description())
            if differs:
                raise ConfigError(
                    f"ckpt={path}: trained on other data than {self.key}={self.directory} "
                    f"({differs})"
                )

    def held_out_split(self, model: TrainedModel):
        """The run's data rebuilt from its config, split and scaled as in training (the split
        is seeded), checked against what ``model`` was trained on; returns the datamodule and
        the split to score: ``test``, else ``val``, else ``train``."""
        from dlbasics.training.builders import build, quiet_lightning

        quiet_lightning()
        datamodule = build(self.config.data, "data")
        datamodule.setup("test")
        model.check_same_data(
            datamodule.describe(), f"the run's data ({self.config.data._target_})"
        )
        split = next(s for s in ("test", "val", "train") if datamodule.has_split(s))
        return datamodule, split

    def data_description(self) -> dict[str, Any]:
        """What the run's data meant (``data.json``, written when it started), read without
        torch; checkpoints carry the same, which :meth:`load` prefers."""
        file = self.directory / "data.json"
        if not file.is_file():
            raise ConfigError(
                f"{self.key}={self.directory}: no data.json in the run (it says what the "
                "model's inputs and outputs mean; a run writes it when it starts)"
            )
        return json.loads(file.read_text())


def open_run(directory: str | Path | None, key: str = "run") -> SavedRun:
    """The run in ``directory``, or a ConfigError saying why it is not one."""
    if not directory:
        raise ConfigError(
            f"{key}= is required: the run directory, e.g. {key}=outputs/train/runs/..."
        )
    path = Path(directory).expanduser().resolve()
    given = None
    if path.is_file():
        run_dir = path.parent.parent
        if path.suffix != ".ckpt" or not (run_dir / ".hydra" / "config.yaml").is_file():
            raise ConfigError(
                f"{key}={directory}: a file, not a run directory; give the run directory "
                f"({key}=outputs/train/runs/...), and a checkpoint of another run with ckpt="
            )
        if key != "run":  # resume= continues the run from its own last checkpoint
            raise ConfigError(f"{key}={directory}: a checkpoint; give its run: {key}={run_dir}")
        path, given = run_dir, path  # <run dir>/checkpoints/best.ckpt: that run, that file
    if not path.is_dir():
        raise ConfigError(f"{key}={directory}: no such directory")
    config_file = path / ".hydra" / "config.yaml"
    if not config_file.is_file():
        _refuse_sweep(path, directory, key)
        raise ConfigError(f"{key}={directory}: not a run directory (no .hydra/config.yaml in it)")
    config = OmegaConf.load(config_file)
    if is_seeds_run(path):  # a seeds= run: its members are the runs
        _refuse_sweep(path, directory, key, what="a seeds= run's directory")
    _anchor_data_path(config, path)
    _read_as_it_was(config)
    return SavedRun(path, config, key, given)


def takes_images(description: dict[str, Any]) -> bool:
    """Whether a run (its ``data.json``, or an export's description) learned from images,
    samples shaped ``C x H x W``: predict reads image files for it, export takes images."""
    return len(description.get("input_shape") or []) == 3


def target_name(description: dict[str, Any]) -> str:
    """What a run predicts, as its outputs are named (``predicted_<name>``): the table's
    target column; ``class`` for images; else ``y``."""
    images = takes_images(description) and description.get("class_names")
    return description.get("target_name") or ("class" if images else "y")


def is_seeds_run(directory: Path) -> bool:
    """Whether ``directory`` is a ``seeds=`` run (its members are the runs)."""
    from dlbasics.config.members import is_stacked

    config_file = Path(directory) / ".hydra" / "config.yaml"
    return config_file.is_file() and is_stacked(OmegaConf.load(config_file))


def _refuse_sweep(
    path: Path, directory: str | Path, key: str, what: str = "a sweep directory"
) -> None:
    """A sweep's directory given for a run: a ConfigError naming its job folders."""
    from dlbasics.search.sweeps import read_jobs

    jobs = read_jobs(path)  # best first
    if not jobs:
        return
    names = ", ".join(job.run_dir.name for job in sorted(jobs, key=lambda job: job.number)[:10])
    best = " (its best)" if jobs[0].done else ""
    raise ConfigError(
        f"{key}={directory}: {what}; give one of its jobs ({names}"
        f"{' ...' if len(jobs) > 10 else ''}), e.g. {key}={jobs[0].run_dir}{best}; "
        f"python -m dlbasics.sweeps {directory} lists them, best first"
    )


# Where classes named by an older run's config live now (the flat layout before 0.2).
_MOVED_TARGETS = {
    "dlbasics.callbacks.": "dlbasics.training.callbacks.",
    "dlbasics.loggers.": "dlbasics.training.loggers.",
    "dlbasics.module.": "dlbasics.training.module.",
    "dlbasics.sweeps.": "dlbasics.search.sweeps.",
}


def _read_as_it_was(config: DictConfig) -> None:
    """An older run, read as it was trained.

    A table trained on before text columns were encoded (no ``categorical_encoding`` key in
    its config) left them out: rebuilt, its data must leave them out too. A ``_target_``
    from before the package's folders points to where that class lives now.
    """
    data = config.get("data") or {}
    if "path" in data and "target" in data and "categorical_encoding" not in data:
        config.data.categorical_encoding = "none"
    _retarget(config)


def _retarget(node) -> None:
    for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
        if OmegaConf.is_interpolation(node, key):
            continue  # e.g. ${paths.output_dir}: nothing to move, and not resolvable here
        value = node[key]
        if isinstance(value, DictConfig | ListConfig):
            _retarget(value)
        elif key == "_target_" and isinstance(value, str):
            for old, new in _MOVED_TARGETS.items():
                if value.startswith(old):
                    node[key] = new + value[len(old) :]


def _anchor_data_path(config: DictConfig, run_dir: Path) -> None:
    """A relative ``data.path`` was read from where the run started (Hydra's runtime cwd,
    in ``.hydra/hydra.yaml``): point it there, so the run's CSV file (or folder of images,
    ``data=images``; or ``data.root``, torchvision's folder) is found from anywhere."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return
    started_in = None
    for key in ("path", "root"):
        data_path = (config.get("data") or {}).get(key)
        if not data_path or Path(str(data_path)).is_absolute():
            continue
        started_in = started_in or OmegaConf.select(
            OmegaConf.load(hydra_file), "hydra.runtime.cwd"
        )
        if started_in and (Path(started_in) / str(data_path)).exists():
            config.data[key] = str(Path(started_in) / str(data_path))


class TrainedModel:
    """A trained module and what its data meant: everything to use it on raw rows."""

    def __init__(
        self, module, description: dict[str, Any], checkpoint: Path, best_epoch: int | None
    ) -> None:
        self.module = module
        self.description = description
        self.checkpoint = checkpoint
        self.best_epoch = best_epoch  # best.ckpt: the epoch (from 1) its weights come from

    @property
    def task(self) -> str:
        return self.description["task"]

    @property
    def input_shape(self) -> list[int]:
        return list(self.description["input_shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.description.get("class_names") or [])

    @property
    def feature_columns(self) -> list[str]:
        """The input columns by name, in training order (see :func:`feature_columns`)."""
        return feature_columns(self.description)

    @property
    def target_column(self) -> str:
        return target_name(self.description)

    def raw_feature_model(self):
        """The net with the scaling folded in (:class:`~dlbasics.nets.RawFeatureModel`)."""
        from dlbasics.nets import RawFeatureModel

        return RawFeatureModel(
            self.module.net,
            self.input_shape,
            classification=self.task == "classification",
            feature_scaling=self.description.get("feature_scaling"),
            target_scaling=self.description.get("target_scaling"),
            fill=self.encoding.fill_values() if self.encoding else None,
        ).eval()

    @property
    def encoding(self):
        """How a table's columns become the net's inputs (:mod:`dlbasics.data.encoding`),
        or None for data that are numbers already."""
        from dlbasics.data.encoding import TableEncoding

        return TableEncoding.of(self.description)

    def check_same_data(self, description: dict[str, Any], what: str) -> None:
        """A DataError if data rebuilt now (their ``describe()``) are not what the model was
        trained on: a CSV file that changed since the run, say."""
        differs = different_data(self.description, description)
        if differs:
            raise DataError(
                f"{what} no longer match what {self.checkpoint.name} was trained on "
                f"({differs}); evaluate them as other data, or use the original file"
            )

    def model_ready(self, x: np.ndarray, y: np.ndarray, source: str):
        """Raw arrays of other data -> the tensors the module was trained on.

        Features are scaled with the run's *training* statistics and checked against the
        input shape; class labels are mapped to the run's classes (a label the model never
        saw is a DataError); regression targets are scaled as in training.
        """
        import torch

        if np.asarray(x).dtype == np.uint8:  # images as stored: pixels in [0, 1]
            x = np.asarray(x, dtype=np.float32) / 255.0
        x = np.asarray(x, dtype=np.float32)
        shape = self.input_shape
        if len(x) == 0:
            raise DataError(f"{source}: no rows to score")
        if x.shape[1:] != tuple(shape) and x[0].size != math.prod(shape):
            raise DataError(
                f"{source}: samples shaped {x.shape[1:]}, but the run was trained on samples "
                f"shaped {tuple(shape)} ({', '.join(self.feature_columns[:8])}"
                f"{', ...' if len(self.feature_columns) > 8 else ''})"
            )
        x = x.reshape(len(x), *shape)
        scaling = self.description.get("feature_scaling")
        if scaling:  # per column, or for images per channel
            x = Scaling.from_dict(scaling).apply(x)
        if self.task == "classification":
            y = self.class_indices(y, source)
        else:
            y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
            outputs = int(self.description.get("num_outputs") or y.shape[1])
            if y.shape[1] != outputs:
                raise DataError(
                    f"{source}: {y.shape[1]} target column(s), but the run predicts {outputs}"
                )
            target = self.description.get("target_scaling")
            if target:
                y = Scaling.from_dict(target).apply(y)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y)

    def class_indices(self, labels: np.ndarray, source: str) -> np.ndarray:
        """Labels (as the data give them, or the run's class names) -> class indices."""
        index = {name: i for i, name in enumerate(self.class_names)}
        texts = [str(label) for label in np.asarray(labels).tolist()]
        unknown = sorted({text for text in texts if text not in index})
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            raise DataError(
                f"{source}: class label(s) {shown} were not among the run's classes "
                f"({', '.join(self.class_names)}); the model cannot score them"
            )
        return np.array([index[text] for text in texts], dtype=np.int64)


def different_data(trained: dict[str, Any], other: dict[str, Any]) -> str | None:
    """How two data descriptions differ in what a model reads and predicts, or None."""
    for key in ("task", "input_shape", "feature_names", "class_names"):
        if key in other and _as_list(trained.get(key)) != _as_list(other[key]):
            return f"{key}: {trained.get(key)!s:.80} when trained, {other[key]!s:.80} now"
    return None


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def feature_columns(description: dict[str, Any]) -> list[str]:
    """The input columns by name: the data's own names (a CSV's header, before its
    categories are one-hot encoded; a scikit-learn bundle's), else ``x1 .. xn`` for
    generated data, with images flattened row by row."""
    if description.get("columns"):  # a table: its own columns, before their encoding
        return list(description["columns"])
    names = list(description.get("feature_names") or [])
    count = math.prod(description["input_shape"])
    return names if len(names) == count else [f"x{i + 1}" for i in range(count)]


def read_checkpoint(path: Path, label: str, use_other: Callable[[Path], str] | None = None) -> dict:
    """The checkpoint at ``path`` loaded on the CPU, or a ConfigError starting with ``label``
    that says why it cannot be.

    When it is unreadable and the other checkpoint of its run (``best.ckpt`` or
    ``last.ckpt``) is intact, the message ends with ``use_other(that path)``: how to use it.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ConfigError(f"{label.rstrip(':')}: no such file") from None
    except Exception as error:  # truncated, not a checkpoint at all, ...
        # Its first sentence: torch's zip reader goes on for lines about what might be wrong.
        reason = " ".join(str(error).split()).split(". ")[0].rstrip(".") or type(error).__name__
        other = next((o for o in _others(Path(path)) if _readable(o)), None)
        hint = (
            f" The run's {other.name} is intact: {use_other(other)}" if other and use_other else ""
        )
        raise ConfigError(f"{label} cannot be read as a checkpoint ({reason}).{hint}") from None


def _others(path: Path) -> list[Path]:
    """The run's other checkpoints beside ``path``, best first."""
    names = [n for n in ("best.ckpt", "last.ckpt") if n != path.name]
    return [path.with_name(n) for n in names if path.with_name(n).is_file()]


def _readable(path: Path) -> bool:
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return False
    return True


# Overrides a new run must not inherit: another checkpoint, the run's own directory, a search.
NOT_INHERITED = ("ckpt_path", "hydra", "hparams_search")


def run_overrides(saved: SavedRun) -> list[str]:
    """The overrides the run was started with (``.hydra/overrides.yaml``) and those its
    resumes added (``.hydra/resumes.yaml``); a relative ``data.path`` made absolute."""
    hydra = saved.directory / ".hydra"
    started = hydra / "overrides.yaml"
    overrides = list(OmegaConf.load(started)) if started.is_file() else []
    if (hydra / "resumes.yaml").is_file():
        for resume in OmegaConf.load(hydra / "resumes.yaml"):
            overrides += list(resume.overrides)
    data_path = OmegaConf.select(saved.config, "data.path")
    return [f"data.path={data_path}" if o.startswith("data.path=") else o for o in overrides]


def train_command(overrides: list[str], checkpoint: Path | None = None) -> str:
    """``python -m dlbasics.train`` with ``overrides`` (a later one replacing an earlier one
    of its key; a group choice such as ``model=linreg`` also the earlier ``model.*`` ones),
    from ``checkpoint`` if given; quoted for the shell."""
    merged: dict[str, str] = {}
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if any(key == k or key.startswith((k + ".", k + "/")) for k in NOT_INHERITED):
            continue
        if "." not in key:
            merged = {k: o for k, o in merged.items() if not k.startswith(key + ".")}
        merged.pop(key, None)
        merged[key] = override
    start = [f"ckpt_path={checkpoint}"] if checkpoint else []
    return shlex.join(["python", "-m", "dlbasics.train", *start, *merged.values()])
