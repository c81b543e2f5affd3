"""TensorBoard gets per-epoch losses, the task's metrics and a real HPARAMS tab."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def load_events(run_dir):
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
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
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/experiment"]
    ).experiment
    metric_names = {info.name.tag for info in experiment.metric_infos}
    assert {"val/loss", "val/acc", "test/acc"} <= metric_names
    assert "hp_metric" not in metric_names  # no -1 placeholder
    assert "hp_metric" not in events.Tags()["scalars"]
    session = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert session.session_start_info.hparams["optimizer/lr"].number_value == pytest.approx(0.001)
    assert session.session_start_info.hparams["model/_target_"].string_value == "dlbasics.nets.MLP"
    # The tab reads each metric's value from its scalar: the last logged point is the final one.
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])
