"""DDP on 2 CPU processes (gloo): sharded rows, averaged gradients, whole-split metrics,
one writer of the run directory, and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from conftest import run_cli

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    done = subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(out)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_each_process_trains_on_its_own_shard_every_epoch(ranks):
    train_x = ranks[0]["train_x"]  # 800 rows
    for epoch in range(3):
        rows = [rank["epochs"][epoch] for rank in ranks]
        assert len(rows[0]) == len(rows[1]) == 400
        together = torch.cat(rows)
        # Disjoint, and together every training row once.
        assert torch.equal(together.unique(dim=0), train_x.unique(dim=0))
    assert not torch.equal(ranks[0]["epochs"][0], ranks[0]["epochs"][1])  # reshuffled
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 3 * 13  # 400 rows / 32


def test_gradients_are_averaged_so_both_processes_end_identical(ranks):
    first, second = ranks[0]["params"], ranks[1]["params"]
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_metrics_cover_the_whole_split_on_every_process(ranks):
    from dlbasics.nets import MLP

    metrics = ranks[0]["metrics"]
    assert metrics == pytest.approx(ranks[1]["metrics"])
    # val/loss is the loss over all validation rows with the final weights.
    net = MLP([2], 2)  # the default model config's net: hidden [64, 64], relu
    net.load_state_dict({k.removeprefix("net."): v for k, v in ranks[0]["params"].items()})
    x, y = ranks[0]["val"]
    with torch.no_grad():
        assert float(F.cross_entropy(net(x), y)) == pytest.approx(metrics["val/loss"], abs=1e-5)
    # train/acc and train/loss are over both shards' 800 rows of the last epoch, as the
    # weights changed step by step: replayed here, one shard alone would give another value.
    (right0, loss0), (right1, loss1) = replayed_last_epoch(ranks)
    assert right0 != right1  # so each shard's own accuracy differs from the whole split's
    assert metrics["train/acc"] == pytest.approx((right0 + right1) / 800, abs=1e-6)
    assert metrics["train/acc"] != pytest.approx(right0 / 400, abs=1e-6)
    assert metrics["train/acc"] != pytest.approx(right1 / 400, abs=1e-6)
    assert metrics["train/loss"] == pytest.approx((loss0 + loss1) / 800, rel=1e-5)


def replayed_last_epoch(ranks) -> list[tuple[int, float]]:
    """Each shard's (rows classified right, summed loss) in the last epoch, by replaying in
    this process what the DDP run did: the same initial weights, each step's two shards'
    batches (as recorded), their gradients averaged, one Adam step."""
    import lightning.pytorch as pl
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from dlbasics.config.tree import CONFIG_DIR
    from dlbasics.training.train import build_module

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=moons"])
    with torch.random.fork_rng():  # as ddp_worker.py builds its module
        pl.seed_everything(0, verbose=False)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        module = build_module(cfg, datamodule)
    train_x, train_y = datamodule.splits["train"]
    assert torch.equal(train_x, ranks[0]["train_x"])
    net, optimizer, size = module.net, torch.optim.Adam(module.net.parameters(), lr=1e-3), 32

    def labels(x):  # recorded rows -> their training labels
        same = (x[:, None, :] == train_x[None]).all(dim=-1)
        assert bool((same.sum(dim=1) == 1).all())
        return train_y[same.int().argmax(dim=1)]

    for epoch in range(3):
        shards = [(rank["epochs"][epoch], labels(rank["epochs"][epoch])) for rank in ranks]
        seen = [(0, 0.0), (0, 0.0)]
        for start in range(0, len(shards[0][0]), size):
            grads = []
            for k, (x, y) in enumerate(shards):
                output = net(x[start : start + size])
                loss = F.cross_entropy(output, y[start : start + size])
                right = int((output.argmax(dim=1) == y[start : start + size]).sum())
                seen[k] = (seen[k][0] + right, seen[k][1] + float(loss.detach()) * len(output))
                net.zero_grad()
                loss.backward()
                grads.append([p.grad.clone() for p in net.parameters()])
            for p, first, second in zip(net.parameters(), *grads, strict=True):
                p.grad = (first + second) / 2
            optimizer.step()
    for name, value in net.state_dict().items():  # the replay ended where the run did
        assert torch.allclose(value, ranks[0]["params"][f"net.{name}"], atol=1e-6), name
    return seen


def test_a_ddp_run_from_the_command_line_writes_once_and_resumes(tmp_path):
    run = tmp_path / "run"
    args = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data=moons"]
    done = run_cli(*args, "trainer.max_epochs=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Final metrics") == 1  # printed by the first process only
    names = sorted(p.name for p in run.iterdir())
    assert names == [".hydra", ".lock", "checkpoints", "data.json", "figures", "history.csv",
                     "metrics.json", "objective.json", "tb", "train.log"]  # fmt: skip
    (board,) = (run / "tb").iterdir()
    assert len(list(board.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]

    resumed = run_cli(f"resume={run}", "trainer.max_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["epoch"] == 3
    assert json.loads((run / "metrics.json").read_text())["val/acc"] > 0.8
