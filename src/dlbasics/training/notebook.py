"""What a run shows in a Jupyter notebook: a table of epochs updated in place, as fastai
draws it, instead of a terminal's progress bar (which a notebook cell cannot redraw).

Only imported in a notebook (``rich``'s console says whether it is one); IPython is there.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping

# The columns of the table, in this order, where the run logs them.
COLUMNS = tuple(
    f"{split}/{name}" for split in ("train", "val") for name in ("loss", "acc", "f1", "r2")
)
MAX_ROWS = 20  # longer runs show every k-th epoch, and always the last one


class EpochTable:
    """One row per epoch (epoch, the metrics of :data:`COLUMNS`, time), in one output area
    of the cell, updated at most a few times a second while training runs."""

    def __init__(self, max_epochs: int, done: int = 0) -> None:
        from IPython.display import display

        self.max_epochs = max_epochs
        self.rows: dict[int, dict[str, float]] = {}
        self.started = time.monotonic()
        self.resumed_at = done
        self.handle = display(self._bundle(), raw=True, display_id=True)

    def add(self, epoch: int, metrics: Mapping, show: bool) -> None:
        """Record epoch ``epoch`` (counted from 1); redraw if ``show``."""
        self.rows[epoch] = {
            name: float(metrics[name]) for name in COLUMNS if name in metrics
        } | {"time": time.monotonic() - self.started}
        if show:
            self.show()

    def show(self) -> None:
        if self.handle is not None:
            self.handle.update(self._bundle(), raw=True)

    def _shown(self) -> list[int]:
        epochs = sorted(self.rows)
        if len(epochs) <= MAX_ROWS:
            return epochs
        step = -(-len(epochs) // (MAX_ROWS - 1))
        return sorted({*epochs[::step], epochs[-1]})

    def _columns(self) -> list[str]:
        present = {name for row in self.rows.values() for name in row}
        return [name for name in COLUMNS if name in present]

    def _bundle(self) -> dict[str, str]:
        """The same table as HTML (the notebook) and as text (a plain front end, a log)."""
        columns = self._columns()
        done = max(self.rows, default=self.resumed_at)
        title = f"Epoch {done}/{self.max_epochs}"
        text_rows = [["epoch", *columns, "time"]]
        for epoch in self._shown():
            row = self.rows[epoch]
            text_rows.append(
                [str(epoch), *(_number(row.get(name)) for name in columns), f"{row['time']:.1f}s"]
            )
        widths = [max(len(r[i]) for r in text_rows) for i in range(len(text_rows[0]))]
        text = "\n".join(
            "  ".join(cell.rjust(width) for cell, width in zip(r, widths, strict=True))
            for r in text_rows
        )
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in text_rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in r) + "</tr>"
            for r in text_rows[1:]
        )
        fraction = min(1.0, done / max(1, self.max_epochs))
        markup = (
            f"<div><progress value='{fraction:.3f}' max='1' style='width:300px'></progress> "
            f"{html.escape(title)}</div>"
            f"<table class='dataframe'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
        return {"text/plain": f"{title}\n{text}", "text/html": markup}


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
