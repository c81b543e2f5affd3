"""TensorBoard gets per-epoch losses, the task's metrics and a real HPARAMS tab."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def load_events(run_dir):
    """The events of the run's one TensorBoard folder, ``<run dir>/tb/<name>``."""
    (folder,) = (run_dir / "tb").iterdir()
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize(
    ("data", "metrics"),
    [("moons", ["val/acc", "val/f1"]), ("make_regression", ["val/mse", "val/mae", "val/r2"])],
)
def test_tensorboard_has_losses_and_metrics_per_epoch(run_training, tmp_path, data, metrics):
    run_training("model=mlp", f"data={data}", "trainer.max_epochs=4")
    events = load_events(tmp_path)
    tags = set(events.Tags()["scalars"])
    for tag in ["train/loss", "val/loss", *metrics]:
        assert tag in tags
        assert len(events.Scalars(tag)) == 4, tag  # one point per epoch
    train_loss = [point.value for point in events.Scalars("train/loss")]
    assert train_loss[-1] < train_loss[0]
    assert any(tag.startswith("test/") for tag in tags)


def test_hparams_tab_lists_the_config_against_real_metrics(run_training, tmp_path):
    cfg, metrics = run_training("model=mlp", "data=moons", "trainer.max_epochs=2")
    events = load_events(tmp_path)
    hparams = events.PluginTagToContent("hparams")
    # Session start and end only: TensorBoard then takes the table's columns from every run.
    assert set(hparams) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    assert "hp_metric" not in events.Tags()["scalars"]  # no -1 placeholder
    session = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    values = session.session_start_info.hparams
    assert values["optimizer/lr"].number_value == pytest.approx(0.001)
    # Composed outside a Hydra job, the options are unknown: the class names stand in.
    assert values["model/_target_"].string_value == "dlbasics.nets.MLP"
    assert values["data/noise"].number_value == pytest.approx(0.2)
    for noise in ("ckpt_path", "optimizer/_partial_", "trainer/default_root_dir", "paths/log_dir"):
        assert noise not in values
    # The tab reads each metric's value from its scalar: the last logged point is the final one.
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])


def test_a_long_config_value_is_printed_whole_off_a_terminal():
    import io

    from omegaconf import OmegaConf
    from rich.console import Console

    from dlbasics.training import report

    deep = "/data/" + "/".join(f"folder_{i:02d}" for i in range(30)) + "/end.csv"  # 300 chars
    out = io.StringIO()
    original, report.console = report.console, Console(file=out, width=160)
    try:
        report.print_config(OmegaConf.create({"data": {"path": deep}}))
    finally:
        report.console = original
    printed = "".join(line.strip() for line in out.getvalue().splitlines())
    assert deep.replace(" ", "") in printed.replace(" ", "").replace("│", "")
