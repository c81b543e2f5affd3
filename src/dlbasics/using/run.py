"""A run as a Python object: what :func:`dlbasics.fit` and :func:`dlbasics.load` return.

A :class:`Run` reads its run directory, so a run made by the command line and one made by
``fit`` are the same object: its config, final metrics, history of epoch metrics, best
epoch, trained module, figures, and predict/evaluate/export (the same code as the
commands ``dlbasics.predict``, ``dlbasics.evaluate`` and ``dlbasics.export``).
A :class:`Sweep` is a multirun's or search's directory: its summary and its jobs' runs.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dlbasics.errors import ConfigError


class Figure:
    """One of a run's PNG figures; shows itself inline in a notebook."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()

    def __repr__(self) -> str:
        return f"Figure({str(self.path)!r})"


class Run:
    """A finished (or stopped) run directory, ready to look at and to use."""

    def __init__(self, directory: str | Path) -> None:
        from dlbasics.using.saved_run import open_run

        self._saved = open_run(directory, key="run")
        self.dir: Path = self._saved.directory

    # -- what the run was and what came of it ---------------------------------------------

    @property
    def config(self):
        """The composed config the run trained with (``.hydra/config.yaml``), as a
        DictConfig: ``run.config.optimizer.lr``; ``print(OmegaConf.to_yaml(run.config))``."""
        return self._saved.config

    @property
    def metrics(self) -> dict[str, float]:
        """The final metrics, as the closing table shows them (``metrics.json``): the last
        epoch's train/ and val/, and test/ of the best checkpoint."""
        file = self.dir / "metrics.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    @property
    def history(self):
        """A pandas DataFrame, one row per epoch (``epoch`` counted from 1), a column per
        logged train/ and val/ metric (``history.csv``)."""
        import pandas as pd

        file = self.dir / "history.csv"
        if not file.is_file():
            return pd.DataFrame({"epoch": []}).set_index("epoch")
        return pd.read_csv(file).set_index("epoch")

    @property
    def best_epoch(self) -> int | None:
        """The epoch (counted from 1) whose weights ``best.ckpt`` holds: the best value of
        the run's objective (``val/acc`` or ``val/loss``); None if it never measured one."""
        from dlbasics.training.objective import Outcome

        outcome = Outcome.read(self.dir)
        return outcome.epoch if outcome else None

    @functools.cached_property
    def trained(self):
        """The best checkpoint, loaded with what its data meant (feature and class names,
        the training split's scaling): :class:`~dlbasics.using.saved_run.TrainedModel`."""
        from dlbasics.api import importable_from_cwd

        with importable_from_cwd():
            return self._saved.load("best")

    @property
    def module(self):
        """The best checkpoint's LightningModule (its ``net`` is a plain ``nn.Module``),
        in evaluation mode on the CPU; loaded when first asked for."""
        return self.trained.module

    @property
    def figures(self) -> dict[str, Figure]:
        """The run's final figures by name (``figures/*.png``); each shows inline."""
        folder = self.dir / "figures"
        return {path.stem: Figure(path) for path in sorted(folder.glob("*.png"))}

    # -- using it -------------------------------------------------------------------------

    def predict(self, data, ckpt: str | None = None):
        """Predictions for ``data``: a pandas DataFrame with the run's feature columns (by
        name), a NumPy array of rows in the run's column order, or a CSV file's path
        (written to ``<run dir>/predict/``, as ``python -m dlbasics.predict`` does); for a
        run on images, a folder of images, an image file or a list of image files.
        Returns a DataFrame: the input's columns (images: ``path``), then
        ``predicted_<target>`` and, for classification, ``probability_<class>`` per class."""
        import pandas as pd

        from dlbasics.using.predict import predict_to_file

        options = {"run": str(self.dir), **({"ckpt": ckpt} if ckpt else {})}
        images = self._images(data)
        if images is not None:
            from dlbasics.using.predict import describe, predict_images

            description, default_output = describe(options)
            source = Path(data) if isinstance(data, str | os.PathLike) else None
            output, _, _, _ = predict_images(options, description, default_output, source, images)
            return pd.read_csv(output)
        if isinstance(data, str | os.PathLike):
            from dlbasics.using.predict import input_decimal, read_header

            output, _, _, _ = predict_to_file({**options, "input": str(data)})
            _, sep = read_header(Path(data), "input")  # the output is written as the input
            return pd.read_csv(output, sep=sep, decimal=input_decimal(Path(data), sep))
        frame = self._as_frame(data)
        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / "rows.csv"
            frame.to_csv(source, index=False)
            output, _, _, _ = predict_to_file(
                {**options, "input": str(source), "output": str(Path(folder) / "out.csv")}
            )
            predicted = pd.read_csv(output)
        predicted.index = frame.index
        return predicted

    def _images(self, data) -> list[Path] | None:
        """The image files ``data`` names (a folder, an image file, a list of image
        files), or None for a table."""
        from dlbasics.using.predict import image_files, listed_images
        from dlbasics.using.saved_run import takes_images

        if not takes_images(self._saved.data_description()):
            return None  # a table's run: a list is a row of values
        if isinstance(data, str | os.PathLike):
            return image_files(Path(data).expanduser())
        if isinstance(data, list | tuple) and data and all(
            isinstance(item, str | os.PathLike) for item in data
        ):
            return listed_images(list(data))
        return None

    def _as_frame(self, data):
        import numpy as np
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return data
        from dlbasics.using.saved_run import feature_columns

        columns = feature_columns(self._saved.data_description())
        array = np.asarray(data)
        if array.ndim == 1:
            array = array[None, :]
        if not columns or array.ndim != 2 or array.shape[1] != len(columns):
            wanted = f"{len(columns)} columns ({', '.join(columns[:8])})" if columns else "rows"
            raise ConfigError(
                f"predict: an array shaped {array.shape}; the run reads {wanted}; "
                "or pass a DataFrame with those columns, or a CSV file's path"
            )
        return pd.DataFrame(array, columns=columns)

    def evaluate(self, ckpt: str | None = None, **data: Any) -> dict[str, float]:
        """The metrics of checkpoint ``ckpt`` (best) on the run's test split, or on other
        data: ``run.evaluate(path="new.csv")`` or ``run.evaluate(noise=20)`` set
        ``data.path`` / ``data.noise`` (all their rows, the run's training scaling). Also
        written to ``<run dir>/eval/<date>_<time>/``, as ``dlbasics.evaluate`` does."""
        from dlbasics.using.evaluate import evaluate_run

        overrides = [f"data.{key}={_value(value)}" for key, value in data.items()]
        metrics, _, _, _ = evaluate_run(self.dir, ckpt, overrides)
        return metrics

    def export(self, format: str = "onnx", ckpt: str | None = None) -> Path:
        """Export the checkpoint as ONNX (the export extra) or pt2, checked against it on
        the run's test split; returns the file's path (``<run dir>/export/``)."""
        from dlbasics.using.export import export_run

        target, _, _, _, _ = export_run(self.dir, format, ckpt)
        return target

    def interpret(self, top: int = 9, ckpt: str | None = None, split: str | None = None):
        """What the model gets wrong on the run's test split (or ``split="val"`` /
        ``"train"``): the ``top`` rows of largest loss or residual with their raw values,
        per-class scores and the most confused pairs, or the error by target range; also
        written to ``<run dir>/interpret/``, as ``python -m dlbasics.interpret`` does.
        Returns a :class:`~dlbasics.using.interpret.Interpretation` (``.top_losses``,
        ``.per_class``, ``.most_confused``, or ``.largest_residuals`` and
        ``.error_by_range``, and ``.figure``), which shows its tables in a notebook."""
        from dlbasics.api import importable_from_cwd
        from dlbasics.using.interpret import interpret_run

        with importable_from_cwd():
            return interpret_run(self.dir, ckpt, top=top, split=split)

    # -- how it shows ---------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r})"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{value:.6g}</td></tr>"
            for name, value in self.metrics.items()
        )
        best = self.best_epoch
        return (
            f"<p><b>Run</b> <code>{html.escape(str(self.dir))}</code>"
            + (f" &middot; best epoch {best}" if best else "")
            + f"</p><table><tr><th>metric</th><th>value</th></tr>{rows}</table>"
        )


def _value(value: Any) -> str:
    """A Python value as an override's value (lists as ``[a,b]``)."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(value)


class Sweep:
    """A multirun's or search's directory: the summary of its jobs and their runs."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).resolve()

    @property
    def summary(self):
        """One row per job, best first (``summary.csv``): its varying overrides, the
        objective's best value and epoch, the final metrics, status and run directory."""
        return self._table("summary.csv")

    @property
    def by_setting(self):
        """For jobs that differ only in their seed: one row per setting with each metric's
        mean and standard deviation (``summary_by_setting.csv``); None otherwise."""
        from dlbasics.search.sweeps import BY_SETTING_FILE

        return self._table(BY_SETTING_FILE) if (self.dir / BY_SETTING_FILE).is_file() else None

    @property
    def runs(self) -> list[Run]:
        """The jobs' runs, best first (failed jobs without a config left out)."""
        from dlbasics.search.sweeps import read_jobs

        return [
            Run(job.run_dir)
            for job in read_jobs(self.dir)
            if (job.run_dir / ".hydra" / "config.yaml").is_file()
        ]

    def _table(self, name: str):
        import pandas as pd

        from dlbasics.search.sweeps import summarize

        file = self.dir / name
        if not file.is_file() and name == "summary.csv":
            summarize(self.dir)  # an interrupted sweep: summarised now
        if not file.is_file():
            raise ConfigError(f"{self.dir}: no {name} (no job of the sweep finished)")
        return pd.read_csv(file)

    def __repr__(self) -> str:
        return f"Sweep({str(self.dir)!r})"

    def _repr_html_(self) -> str:
        try:
            return self.summary.to_html(index=False)
        except ConfigError as error:
            return f"<p>{error}</p>"
