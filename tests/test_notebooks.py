"""The notebooks of examples/, executed on a real Jupyter kernel as a learner runs them.

Each notebook runs top to bottom with nbclient; then one more cell, run in the same kernel,
checks what the learner would look at: the metrics reached, the weights recovered, the
figures shown. The output cells are checked too: no ANSI escape codes, no terminal
progress bar squeezed into a cell.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# What each notebook must have reached, checked in its own kernel after its last cell.
CHECKS = {
    "01_linear_regression.ipynb": """
assert line.metrics["test/r2"] > 0.9, line.metrics
assert line.history["train/loss"].iloc[-1] < line.history["train/loss"].iloc[0] / 2
assert np.allclose(weights, [2.0, -3.5], atol=0.35) and abs(bias - 5.0) < 0.35, (weights, bias)
assert {"fitted_line"} <= set(line.figures) and {"fitted_plane", "weights"} <= set(plane.figures)
""",
    "02_mlp_moons_activations.ipynb": """
assert set(table.index) == {"relu", "tanh", "sigmoid"}
assert table["test/acc"].max() > 0.9, table
assert all(len(run.history) == 15 for run in runs.values())
assert list(spread) == ["relu", "sigmoid"] and all(s["seeds"] == 5 for s in spread.values())
assert spread["relu"]["test/acc_mean"] > 0.9 and spread["relu"]["test/acc_std"] > 0
""",
    "03_cnn_digits.ipynb": """
assert cnn.metrics["test/acc"] > 0.85, cnn.metrics
assert abs(again.evaluate()["test/acc"] - cnn.metrics["test/acc"]) < 1e-6
""",
    "05_penguins_table.ipynb": """
assert 1e-5 < found.recommended < 1, found.recommended
assert run.metrics["test/acc"] > 0.9, run.metrics
assert "island=Biscoe" in used["feature_names"] and sum(used["rows"].values()) == 344
assert len(wrong.top_losses) == 5 and "island" in wrong.top_losses.columns
assert prediction["predicted_species"].iloc[0] == "Gentoo", prediction
""",
    "06_your_own_photos.ipynb": """
assert run.metrics["test/acc"] > 0.7, run.metrics
assert json.loads((run.dir / "data.json").read_text())["feature_scaling"]["shape"] == [3, 1, 1]
assert wrong.top_losses.index.name == "file" and len(wrong.top_losses) == 6
assert all(name.startswith("test/") for name in wrong.top_losses.index)
right = prediction["predicted_class"] == prediction["path"].str.rsplit("_", n=1).str[0]
assert len(prediction) == 9 and right.sum() >= 6, prediction
assert "misclassified" in run.figures
""",
    "04_hand_derivations.ipynb": """
assert failed == 0
assert abs(by_hand[0].item() - w.grad.item()) < 1e-12
""",
}
ANSI = re.compile(r"\x1b\[")


def outputs_text(book) -> str:
    parts = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append(value if isinstance(value, str) else "".join(value))
            parts.extend(output.get("traceback", []))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_and_reaches_its_results(name, tmp_path, monkeypatch):
    book = nbformat.read(EXAMPLES / name, as_version=4)
    book.cells.append(nbformat.v4.new_code_cell(CHECKS[name]))
    client = nbclient.NotebookClient(
        book,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # runs land in tmp_path/outputs
    )
    if (EXAMPLES / "data").is_dir():  # the tables the notebooks read, where they read them
        shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    # One torch thread in the kernel: the suite runs beside it on a 2-core machine.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client.execute()
    text = outputs_text(book)
    assert not ANSI.search(text), "an output cell carries ANSI escape codes"
    assert not re.search(r"Epochs\s*━", text), "a terminal progress bar was drawn into a cell"
    if name != "04_hand_derivations.ipynb":
        assert "<progress" in text and "Epoch " in text  # the table of epochs was drawn
        assert list((tmp_path / "outputs").glob("*/runs/*/checkpoints/best.ckpt"))


@pytest.mark.slow
def test_interrupting_the_kernel_keeps_a_checkpoint_and_the_kernel_usable(tmp_path):
    """The notebook's ■ button (SIGINT to the kernel) during a fit: the cell ends with the
    RunInterrupted line, last.ckpt is kept, and the next cell resumes the run."""
    import time

    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        client.execute_interactive("import dlbasics", timeout=120)
        long_fit = (
            'dlbasics.fit("model=linreg", "data=linear", "data.n_samples=2000", '
            '"data.batch_size=8", "trainer.max_epochs=10000", "figures=none")'
        )
        message_id = client.execute(long_fit)
        # data.json is written just before training starts; a moment later it runs.
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob("outputs/train/runs/*/data.json")):
            assert time.monotonic() < deadline, "the fit never started"
            time.sleep(0.2)
        time.sleep(3)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=120)
        while reply["parent_header"].get("msg_id") != message_id:
            reply = client.get_shell_msg(timeout=120)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "RunInterrupted"
        assert reply["content"]["traceback"][0].startswith("RunInterrupted: Stopped by SIGINT")
        (last,) = tmp_path.glob("outputs/train/runs/*/checkpoints/last.ckpt")

        outputs = []
        resume = (
            f'run = dlbasics.fit("resume={last.parent.parent}", '
            f"f\"trainer.max_epochs={{len(dlbasics.load('{last.parent.parent}').history) + 1}}\")\n"
            "print('resumed to', len(run.history), 'epochs')"
        )
        for _ in range(3):
            resumed = client.execute_interactive(
                resume, timeout=300, output_hook=lambda message: outputs.append(message)
            )
            # ipykernel aborts a request that reaches it while it still clears the queue
            # after the interrupted cell's error: not run at all, so it is sent again.
            if resumed["content"]["status"] != "aborted":
                break
            time.sleep(1)
        assert resumed["content"]["status"] == "ok"
        printed = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        assert "resumed to" in printed
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
