"""TensorBoard gets per-epoch losses, the task's metrics and a real HPARAMS tab."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import Logger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import read_csv_metrics


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


def scalar_events(run_dir) -> list[tuple[int, set[str]]]:
    """(step, tags) of each event of the run's events file that holds scalars."""
    (folder,) = (run_dir / "tb").iterdir()
    (file,) = folder.glob("events.out.tfevents.*")
    events = []
    for event in LegacyEventFileLoader(str(file)).Load():  # as written, not migrated
        tags = {v.tag for v in event.summary.value if v.WhichOneof("value") == "simple_value"}
        if tags:
            events.append((event.step, tags))
    return events


def test_tensorboard_gets_one_event_per_epoch_stepped_by_epochs_trained(run_training, tmp_path):
    run_training("model=mlp", "data=moons", "trainer.max_epochs=3")
    events = scalar_events(tmp_path)
    epochs = [(step, tags) for step, tags in events if "train/loss" in tags]
    assert [step for step, _ in epochs] == [1, 2, 3]
    for _, tags in epochs:  # the epoch's training and validation metrics, together
        assert {"train/loss", "train/acc", "train/lr", "val/loss", "val/acc", "val/f1"} == tags
    assert [step for step, tags in events if "val/loss" in tags] == [1, 2, 3]
    assert [step for step, tags in events if "test/acc" in tags] == [3]


def test_the_csv_logger_writes_one_row_per_epoch(run_training, tmp_path):
    run_training("model=mlp", "data=moons", "trainer.max_epochs=3", "logger=csv")
    rows = read_csv_metrics(tmp_path)
    epochs = [row for row in rows if "train/loss" in row]
    assert [(row["epoch"], row["step"]) for row in epochs] == [(0, 1), (1, 2), (2, 3)]
    assert all("val/loss" in row and "val/acc" in row for row in epochs)
    assert len([row for row in rows if "val/loss" in row]) == 3  # no row of its own
    assert [row["step"] for row in rows if "test/acc" in row] == [3]


class UsersLogger(Logger):
    """A logger as a Lightning user writes one: it keeps what Lightning hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[dict, int]] = []

    @property
    def name(self) -> str:
        return "users"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.records.append((dict(metrics), step))


class UsersCallback(pl.Callback):
    """A callback as a Lightning user writes one: it reads trainer.callback_metrics."""

    def __init__(self) -> None:
        self.val_losses: list[float] = []
        self.train_losses: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val_losses.append(float(trainer.callback_metrics["val/loss"]))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:  # the epoch just trained
            self.train_losses.append(float(trainer.callback_metrics["train/loss"]))


def test_the_epoch_metrics_go_through_lightnings_own_logging():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from dlbasics.config.tree import CONFIG_DIR
    from dlbasics.training.train import build_module

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=moons"])
    pl.seed_everything(0, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    logger, callback = UsersLogger(), UsersCallback()
    trainer = pl.Trainer(
        max_epochs=3, logger=logger, callbacks=[callback], num_sanity_val_steps=2,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    module = build_module(cfg, datamodule)
    trainer.fit(module, datamodule=datamodule)
    names = {"train/loss", "train/acc", "train/lr", "val/loss", "val/acc", "val/f1"}
    assert names <= trainer.logged_metrics.keys()
    assert names <= trainer.progress_bar_metrics.keys()
    assert names == set(trainer.callback_metrics)  # nothing else: train.py reports them all
    # The callback saw each validation as it ended (not the sanity check's), and each
    # epoch's training metrics once the epoch was over.
    assert len(callback.val_losses) == 3 and len(set(callback.val_losses)) == 3
    assert len(callback.train_losses) == 2
    # The user's logger got every epoch's values, as Lightning writes them: a record per
    # hook, with Lightning's epoch and step.
    val = [record for record, _ in logger.records if "val/loss" in record]
    train = [record for record, _ in logger.records if "train/loss" in record]
    assert [record["val/loss"] for record in val] == pytest.approx(callback.val_losses)
    assert [record["train/loss"] for record in train][:2] == pytest.approx(callback.train_losses)
    assert [record["epoch"] for record in train] == [0, 1, 2]
    assert train[-1]["train/loss"] == pytest.approx(float(trainer.callback_metrics["train/loss"]))
    trainer.test(module, datamodule=datamodule, verbose=False)
    assert "test/acc" in logger.records[-1][0] and "test/acc" in trainer.logged_metrics


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
