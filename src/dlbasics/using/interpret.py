"""What the model gets wrong: the rows it is most wrong about, per-class scores, confusions.

usage: python -m dlbasics.interpret run=<run dir> [ckpt=best|last|<file>] [top=N] [split=test|val|train]

  run=DIR        the run directory (outputs/<task>/runs/<date>_<time>)
  ckpt=CHOICE    best (default), last, or a .ckpt file
  top=N          how many of the worst rows to show (default 9)
  split=NAME     the split to look at: test (default; the validation split if the run has
                 none, else the training split), val or train

The run's data and split are rebuilt from its saved config, as evaluate does, and every row
of the split is scored on its own. Classification: the rows (or images) with the largest
cross-entropy loss, with their true and predicted classes, the probability of each and
their raw values (a CSV file's own columns, by file line); precision, recall, F1 and
support per class; the most confused pairs (true -> predicted). Regression: the largest
absolute residuals (true - predicted) with their rows, and the error by range of the true
target (MAE, RMSE and mean residual per quantile bin). The tables are printed and written,
with a picture, to <run dir>/interpret/ (replacing what an earlier call wrote there).
"""

from __future__ import annotations

import base64
import html
import json
import numbers
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlbasics.cli import commands
from dlbasics.errors import ConfigError

SPLITS = ("test", "val", "train")
DEFAULT_TOP = 9
BINS = 5  # quantile bins of the true target (regression)
MOST_IMAGES = 36  # top-loss images drawn at most in the picture (a 6 x 6 grid)
MOST_BARS = 25  # rows drawn at most as bars (a table's picture)
SHOWN_FEATURES = 6  # feature columns printed at most (all are in the CSV file)


def main(argv: list[str]) -> None:
    options, _ = commands.parse(argv, ("run", "ckpt", "top", "split"), "interpret")
    found = interpret_run(
        options.get("run"),
        options.get("ckpt"),
        top=options.get("top", DEFAULT_TOP),
        split=options.get("split"),
    )
    found.print()


# -- the numbers --------------------------------------------------------------------------


@dataclass
class Interpretation:
    """What a model gets wrong on one split of its run (``Run.interpret()``).

    Classification: :attr:`top_losses` (the ``top`` rows of largest loss, worst first,
    indexed by file ``line`` for a CSV file, else by ``row``, the position in the split),
    :attr:`per_class` (precision, recall, F1, support; then macro and weighted averages)
    and :attr:`most_confused` (true, predicted, count). Regression:
    :attr:`largest_residuals` and :attr:`error_by_range`. :attr:`figure` is the picture
    (it shows inline); in a notebook the object shows its tables and picture.
    """

    task: str
    split: str
    rows: int
    top_losses: Any = None
    per_class: Any = None
    most_confused: Any = None
    largest_residuals: Any = None
    error_by_range: Any = None
    accuracy: float | None = None
    mae: float | None = None  # regression: over the whole split
    rmse: float | None = None
    images: Any = None  # image data: the top-loss images, in the order of top_losses
    class_names: list[str] = field(default_factory=list)
    checkpoint: Path | None = None
    best_epoch: int | None = None
    folder: Path | None = None  # where the files were written
    files: list[str] = field(default_factory=list)
    figure: Any = None  # a dlbasics.using.run.Figure of the PNG written

    @property
    def worst(self):
        """The worst rows: :attr:`top_losses` or :attr:`largest_residuals`."""
        return self.top_losses if self.task == "classification" else self.largest_residuals

    def tables(self) -> dict[str, Any]:
        """The tables by file name (without ``.csv``)."""
        if self.task == "classification":
            names = ("top_losses", "per_class", "most_confused")
        else:
            names = ("largest_residuals", "error_by_range")
        return {name: getattr(self, name) for name in names}

    def headline(self) -> str:
        epoch = f" (the weights of epoch {self.best_epoch})" if self.best_epoch else ""
        where = f"{self.checkpoint}{epoch} on" if self.checkpoint else "the model on"
        line = f"Interpreted {where} the run's {self.split} split ({self.rows} rows)"
        if self.accuracy is not None:
            right = round(self.accuracy * self.rows)
            line += f": {right} right ({self.accuracy:.1%}), {self.rows - right} wrong"
        if self.mae is not None:
            line += f": MAE {self.mae:.4g}, RMSE {self.rmse:.4g}"
        return line + "."

    # -- how it shows ---------------------------------------------------------------------

    def print(self) -> None:
        """The tables, printed with Rich (as ``python -m dlbasics.interpret`` does)."""
        from dlbasics.training.report import console, use_full_width

        use_full_width()
        print(self.headline())
        worst = self.worst
        what = "Top losses" if self.task == "classification" else "Largest residuals"
        console.print(
            _rich_table(worst, f"{what} ({self.split} split, worst first)", SHOWN_FEATURES)
        )
        hidden = len(worst.columns) - len(_shown_columns(worst, SHOWN_FEATURES))
        if hidden:
            console.print(f"({hidden} more feature columns in the CSV file)")
        if self.task == "classification":
            console.print(_rich_table(self.per_class, "Per class"))
            if len(self.most_confused):
                console.print(_rich_table(self.most_confused.head(10), "Most confused"))
            else:
                console.print("No row of the split is misclassified.")
        else:
            console.print(_rich_table(self.error_by_range, "Error by range of the true target"))
        if self.folder is not None:
            files = ", ".join(self.files)
            console.print(f"Written to [bold]{self.folder}[/bold]: {files}", soft_wrap=True)

    def _repr_html_(self) -> str:
        parts = [f"<p><b>{html.escape(self.headline())}</b></p>"]
        titles = {
            "top_losses": "Top losses (worst first)",
            "per_class": "Per class",
            "most_confused": "Most confused (true → predicted)",
            "largest_residuals": "Largest residuals (true − predicted)",
            "error_by_range": "Error by range of the true target",
        }
        for name, table in self.tables().items():
            index = name in ("top_losses", "largest_residuals", "per_class")
            parts.append(f"<h4>{titles[name]}</h4>")
            parts.append(table.to_html(index=index, float_format=lambda v: f"{v:.4g}"))
        if self.figure is not None:
            picture = base64.b64encode(self.figure._repr_png_()).decode("ascii")
            parts.append(
                f'<img src="data:image/png;base64,{picture}" alt="{self.figure.path.name}">'
            )
        return "\n".join(parts)

    def __repr__(self) -> str:
        where = f", {str(self.folder)!r}" if self.folder else ""
        return f"Interpretation({self.task}, {self.split} split, {self.rows} rows{where})"


def examine(module, datamodule, split: str, top: int = DEFAULT_TOP) -> Interpretation:
    """Score every row of ``split`` of ``datamodule`` (set up, as the run split it) with
    ``module`` on its own; the worst ``top`` rows and the tables (nothing is written)."""
    import numpy as np

    if not datamodule.splits:
        datamodule.setup()
    x, _ = datamodule.splits[split]
    outputs = _net_outputs(module, x, datamodule.model_inputs, datamodule.eval_batch_size)
    x_raw, y_raw = datamodule.original_split(split)
    ids, id_name, features = _raw_rows(datamodule, split, x_raw)
    images = x_raw if x_raw.ndim > 2 else None
    top = max(1, min(int(top), len(x_raw)))
    if datamodule.task == "classification":
        found = _classification(outputs, y_raw.astype(np.int64), datamodule.class_names, top)
    else:
        predicted = outputs.astype(np.float64)
        if datamodule.target_scaling is not None:
            predicted = datamodule.target_scaling.undo(predicted)
        found = _regression(y_raw.astype(np.float64), predicted, datamodule.target_name, top)
    order = found.pop("order")
    worst = found["worst"]
    worst.index = np.asarray(ids)[order]
    worst.index.name = id_name
    if features is not None:
        raw = features.iloc[order]
        for name in raw.columns:  # a feature named like one of the columns above is marked
            column = name if name not in worst.columns else f"{name} (feature)"
            worst[column] = raw[name].to_numpy()
    key = "top_losses" if datamodule.task == "classification" else "largest_residuals"
    found[key] = found.pop("worst")
    return Interpretation(
        task=datamodule.task,
        split=split,
        rows=len(x_raw),
        images=None if images is None else images[order],
        class_names=list(datamodule.class_names),
        **found,
    )


def _net_outputs(module, x, inputs, batch: int):
    """The net's outputs for the stored rows ``x``, in batches of ``batch`` rows (each
    through ``inputs``, the datamodule's :meth:`model_inputs`), in evaluation mode."""
    import torch

    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            device = module.device
            parts = [module(inputs(part.to(device))).float().cpu() for part in x.split(batch)]
    finally:
        module.train(was_training)
    return torch.cat(parts).numpy()


def _raw_rows(datamodule, split: str, x_raw):
    """Each row's identifier (a CSV file's line number, a folder image's file, else its
    position in the split), the identifier's name, and the rows' raw values as a DataFrame
    (None for images)."""
    import numpy as np
    import pandas as pd

    from dlbasics.data.table import CsvTable

    if isinstance(getattr(datamodule, "table", None), CsvTable) and datamodule.row_split:
        frame = datamodule.raw_split(split)  # the file's own columns, indexed by file line
        return frame.index.to_numpy(), "line", frame.reset_index(drop=True)
    ids = np.arange(len(x_raw))
    if hasattr(datamodule, "split_files"):  # data=images: the file, within data.path
        return np.asarray(datamodule.split_files(split)), "file", None
    if x_raw.ndim > 2:
        return ids, "row", None
    names = list(datamodule.feature_names)
    if len(names) != x_raw.shape[1]:
        names = [f"x{i + 1}" for i in range(x_raw.shape[1])]
    return ids, "row", pd.DataFrame(x_raw, columns=names)


def _classification(logits, true, class_names: list[str], top: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import precision_recall_fscore_support

    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(true))
    losses = -log_probs[rows, true]  # cross-entropy of each row
    predicted = logits.argmax(axis=1)
    probabilities = np.exp(log_probs)
    order = np.argsort(-losses, kind="stable")[:top]
    names = np.asarray([str(name) for name in class_names], dtype=object)
    worst = pd.DataFrame(
        {
            "loss": losses[order],
            "true": names[true[order]],
            "predicted": names[predicted[order]],
            "p_predicted": probabilities[order, predicted[order]],
            "p_true": probabilities[order, true[order]],
        }
    )
    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=labels, zero_division=0
    )
    per_class = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support},
        index=pd.Index(list(names), name="class"),
    )
    for average in ("macro", "weighted"):
        scores = precision_recall_fscore_support(
            true, predicted, labels=labels, average=average, zero_division=0
        )
        per_class.loc[f"{average} avg"] = [*scores[:3], len(true)]
    per_class["support"] = per_class["support"].astype(int)
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    np.fill_diagonal(counts, 0)
    pairs = [(i, j, counts[i, j]) for i, j in zip(*np.nonzero(counts), strict=True)]
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    most_confused = pd.DataFrame(
        {
            "true": [names[i] for i, _, _ in pairs],
            "predicted": [names[j] for _, j, _ in pairs],
            "count": np.array([int(c) for _, _, c in pairs], dtype=np.int64),
        }
    )
    return {
        "order": order,
        "worst": worst,
        "per_class": per_class,
        "most_confused": most_confused,
        "accuracy": float(np.mean(predicted == true)),
    }


def _regression(true, predicted, target: str | None, top: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    true, predicted = true.reshape(len(true), -1), predicted.reshape(len(true), -1)
    residuals = true - predicted
    outputs = true.shape[1]
    order = np.argsort(-np.sqrt((residuals**2).sum(axis=1)), kind="stable")[:top]
    columns: dict[str, Any] = {}
    suffixes = [""] if outputs == 1 else [f"_{j + 1}" for j in range(outputs)]
    for j, suffix in enumerate(suffixes):
        columns[f"true{suffix}"] = true[order, j]
        columns[f"predicted{suffix}"] = predicted[order, j]
        columns[f"residual{suffix}"] = residuals[order, j]
    ranges = []
    for j in range(outputs):
        part = error_by_range(true[:, j], predicted[:, j])
        if outputs > 1:
            part.insert(0, "output", f"{target or 'y'}[{j + 1}]")
        ranges.append(part)
    return {
        "order": order,
        "worst": pd.DataFrame(columns),
        "error_by_range": pd.concat(ranges, ignore_index=True),
        "mae": float(np.abs(residuals).mean()),
        "rmse": float(np.sqrt((residuals**2).mean())),
    }


def error_by_range(true, predicted, bins: int = BINS):
    """MAE, RMSE and mean residual (true - predicted: above 0, the model predicts too
    low) of the rows in each quantile bin of the true target (fewer bins for few values)."""
    import numpy as np
    import pandas as pd

    true, predicted = np.asarray(true, float).ravel(), np.asarray(predicted, float).ravel()
    count = max(1, min(bins, len(np.unique(true))))
    binned = pd.qcut(true, count, duplicates="drop") if count > 1 else np.zeros(len(true))
    codes = binned.codes if hasattr(binned, "codes") else binned.astype(int)
    rows = []
    for code in sorted(set(codes.tolist())):
        mine = codes == code
        residual = true[mine] - predicted[mine]
        rows.append(
            {
                "low": float(true[mine].min()),
                "high": float(true[mine].max()),
                "rows": int(mine.sum()),
                "mae": float(np.abs(residual).mean()),
                "rmse": float(np.sqrt((residual**2).mean())),
                "mean_residual": float(residual.mean()),
            }
        )
    return pd.DataFrame(rows)


# -- the picture ----------------------------------------------------------------------------


def figure_inputs(found: Interpretation, title: str = "") -> dict[str, Any]:
    """Keyword arguments of :func:`dlbasics.figures.draw.top_losses_figure`."""
    worst = found.worst
    split = f"{found.split} split"
    if found.task == "classification" and found.images is not None:
        shown = worst.head(MOST_IMAGES)
        titles = [
            f"{row.true}/{row.predicted}\n{row.p_predicted:.2f}/{row.loss:.2f}"
            for row in shown.itertuples()
        ]
        more = f", the first {len(shown)} of {len(worst)}" if len(worst) > len(shown) else ""
        return {
            "style": "images",
            "images": found.images[: len(shown)],
            "titles": titles,
            "wrong": (shown["true"] != shown["predicted"]).to_numpy(),
            "title": f"{title}{', ' if title else ''}top losses, {split}{more}\n"
            "true/predicted/probability of the prediction/loss",
        }
    rows = len(worst)
    worst = worst.head(MOST_BARS)
    more = f", the first {len(worst)} of {rows}" if rows > len(worst) else ""
    split += more
    labels = [_row_label(worst, index) for index in range(len(worst))]
    if found.task == "classification":
        return {
            "style": "losses",
            "labels": labels,
            "losses": worst["loss"].to_numpy(),
            "notes": [
                f"true {row.true} → {row.predicted} (p {row.p_predicted:.2f})"
                for row in worst.itertuples()
            ],
            "wrong": (worst["true"] != worst["predicted"]).to_numpy(),
            "title": f"{title}{', ' if title else ''}top losses, {split} (cross-entropy)",
        }
    residual = next(c for c in worst.columns if c.startswith("residual"))
    ranges = found.error_by_range
    if "output" in ranges.columns:
        ranges = ranges[ranges["output"] == ranges["output"].iloc[0]]
    return {
        "style": "residuals",
        "labels": labels,
        "residuals": worst[residual].to_numpy(),
        "notes": [
            f"true {_number(t)}, predicted {_number(p)}"
            for t, p in zip(
                worst[residual.replace("residual", "true")],
                worst[residual.replace("residual", "predicted")],
                strict=True,
            )
        ],
        "ranges": [
            f"{_number(low)}–{_number(high)}"
            for low, high in zip(ranges["low"], ranges["high"], strict=True)
        ],  # fmt: skip
        "mae": ranges["mae"].to_numpy(),
        "mean_residual": ranges["mean_residual"].to_numpy(),
        "title": f"{title}{', ' if title else ''}largest residuals, {split}",
    }


def _row_label(worst, position: int, width: int = 44) -> str:
    """``line 17: area=80, region=north`` (the first features that fit ``width``)."""
    index = worst.index[position]
    head = f"{worst.index.name} {index}"
    known = {"loss", "true", "predicted", "p_predicted", "p_true"}
    features = [c for c in worst.columns if c not in known and not c.startswith(
        ("true_", "predicted_", "residual"))]  # fmt: skip
    text = ""
    for name in features:
        value = worst[name].iloc[position]
        part = f"{name}={_cell(value)}"
        candidate = f"{text}, {part}" if text else part
        if len(head) + 2 + len(candidate) > width:
            text += ", …" if text else ""
            break
        text = candidate
    return f"{head}: {text}" if text else head


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "NA" if number != number else f"{number:.4g}"


# -- the command ----------------------------------------------------------------------------


def interpret_run(
    run: str | Path | None,
    ckpt: str | None = None,
    top: int | str = DEFAULT_TOP,
    split: str | None = None,
) -> Interpretation:
    """What run ``run``'s checkpoint ``ckpt`` gets wrong on ``split`` (by default the split
    evaluate scores); the tables and the picture written to ``<run dir>/interpret/``."""
    from dlbasics.using.saved_run import open_run

    saved = open_run(run)
    top = _top(top)
    split = _split(split)
    if split is not None:  # data.json says which splits the run has, without loading torch
        rows = saved.data_description().get("rows") or {}
        if split in rows and not rows[split]:
            _no_split(saved, split, rows)
    saved.checkpoint(ckpt)  # a missing checkpoint is reported before loading
    model = saved.load(ckpt)
    datamodule, held_out = saved.held_out_split(model)
    if split is None:
        split = held_out
    elif not datamodule.has_split(split):
        _no_split(saved, split, datamodule.rows())
    found = examine(model.module, datamodule, split, top)
    found.checkpoint, found.best_epoch = model.checkpoint, model.best_epoch
    write(found, saved.directory / "interpret", saved.directory)
    return found


def _top(top: int | str) -> int:
    text = str(top).strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"top={top}: expected how many of the worst rows to show, a whole number of at "
            f"least 1 (default {DEFAULT_TOP})"
        )
    return int(text)


def _split(split: str | None) -> str | None:
    if split in (None, ""):
        return None
    if split not in SPLITS:
        raise ConfigError(f"split={split}: choose test, val or train")
    return split


def _no_split(saved, split: str, rows: dict[str, int]) -> None:
    has = [name for name in SPLITS if rows.get(name)]
    fraction = {"val": "data.val_fraction", "test": "data.test_fraction"}.get(split)
    value = saved.config.data.get(fraction.split(".")[1]) if fraction else None
    why = f" ({fraction}={value})" if fraction and value is not None else ""
    raise ConfigError(
        f"split={split}: the run has no {split} split{why}; it has "
        f"{', '.join(f'{name} ({rows[name]} rows)' for name in has)}: use split={has[0]}"
    )


def write(found: Interpretation, folder: Path, run_dir: Path | None = None) -> None:
    """The tables as CSV files and the picture as PNG in ``folder``, which is replaced as a
    whole (written beside it first: an interrupted call leaves the earlier files)."""
    from dlbasics.figures.draw import top_losses_figure
    from dlbasics.using.run import Figure

    staging = folder.with_name(f".{folder.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files = []
    for name, table in found.tables().items():
        index = name in ("top_losses", "largest_residuals", "per_class")
        table.to_csv(staging / f"{name}.csv", index=index)
        files.append(f"{name}.csv")
    picture = "top_losses.png" if found.task == "classification" else "largest_residuals.png"
    figure = top_losses_figure(**figure_inputs(found))
    figure.savefig(staging / picture)
    files.append(picture)
    about = {
        "run": str(run_dir) if run_dir else None,
        "checkpoint": str(found.checkpoint) if found.checkpoint else None,
        "split": found.split,
        "rows": found.rows,
        "top": len(found.worst),
        "files": files,
    }
    (staging / "interpreted.json").write_text(json.dumps(about, indent=2) + "\n")
    old = folder.with_name(f".{folder.name}-old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    found.folder, found.files = folder, files
    found.figure = Figure(folder / picture)


def _shown_columns(table, features: int | None) -> list[str]:
    known = {"loss", "true", "predicted", "p_predicted", "p_true", "residual"}
    columns = list(table.columns)
    if features is None:
        return columns
    fixed = [c for c in columns if c in known or c.startswith(("true_", "predicted_", "residual_"))]
    others = [c for c in columns if c not in fixed]
    return fixed + others[:features]


def _rich_table(table, title: str, features: int | None = None):
    """A DataFrame as a Rich table: its index first (where it names one), numbers right."""
    from rich.table import Table

    shown = Table(title=title, title_justify="left")
    named = table.index.name is not None
    columns = _shown_columns(table, features)
    if named:
        numeric = table.index.dtype.kind in "fiu"
        shown.add_column(str(table.index.name), justify="right" if numeric else "left")
    for name in columns:
        numeric = table[name].dtype.kind in "fiu"
        shown.add_column(str(name), justify="right" if numeric else "left")
    for index, row in zip(table.index, table[columns].itertuples(index=False), strict=True):
        cells = [_cell(value) for value in row]
        shown.add_row(*([str(index)] if named else []), *cells)
    return shown


def _cell(value: Any) -> str:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return _number(value)
    return "NA" if value is None else str(value)


def cli() -> None:
    """Entry point of ``python -m dlbasics.interpret`` and ``dlbasics-interpret``."""
    commands.run(main, __doc__)
