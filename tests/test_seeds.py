"""seeds=[...]: K seeds of one run trained as one vectorised run, each member its own run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import dlbasics
from conftest import fit_error, interrupt_once
from dlbasics.nets import CNN, MLP, LinearRegression
from dlbasics.training.batches import MemberBatches, ShuffledBatches
from dlbasics.training.stacked import stack_nets, stackable

QUIET = ("figures=none", "logger=none", "callbacks.model_summary=null")
MOONS = ("model=mlp", "data=moons", "data.n_samples=600", "data.batch_size=32", "model.hidden_sizes=[16]")


def _weights(checkpoint) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in b:
        scale = b[name].abs().max().clamp(min=1e-6)
        assert float((a[name] - b[name]).abs().max() / scale) <= 1e-4, name


@pytest.mark.parametrize(
    "setting",
    [
        # Adam on a classifier, minibatches on the fast path
        (*MOONS, "trainer.max_epochs=3"),
        # SGD with momentum and weight decay, each member's gradients clipped on their own
        (
            *MOONS,
            "optimizer=sgd",
            "optimizer.lr=0.5",
            "optimizer.weight_decay=0.01",
            "gradient_clip_val=0.5",
            "trainer.max_epochs=2",
        ),
        # regression with a standardised target, full batch, a cosine schedule
        ("model=linreg", "data=linear", "data.batch_size=null", "scheduler=cosine",
         "trainer.max_epochs=5"),
        # the CNN: a grouped convolution, images served per member
        ("model=cnn", "data=digits", "model.channels=[4]", "model.hidden=8",
         "data.batch_size=128", "trainer.max_epochs=1"),
    ],
    ids=["adam-mlp", "sgd-clipped", "linreg-regression", "cnn"],
)  # fmt: skip
def test_each_member_ends_where_its_own_run_ends(fit, setting):
    seeds = fit(*setting, *QUIET, "seeds=[3,7]")
    assert isinstance(seeds, dlbasics.Sweep)
    for index, seed in enumerate((3, 7)):
        alone = fit(*setting, *QUIET, f"seed={seed}")
        member = seeds.dir / str(index)
        for name in ("last.ckpt", "best.ckpt"):
            _assert_same_weights(
                _weights(member / "checkpoints" / name), _weights(alone.dir / "checkpoints" / name)
            )
        own = dlbasics.load(member)
        assert own.config.seed == seed
        assert own.best_epoch == alone.best_epoch
        for name, value in alone.metrics.items():
            assert own.metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
        assert own.history.shape == alone.history.shape


def test_a_seeds_run_is_a_sweep_of_ordinary_runs(fit):
    seeds = fit(*MOONS, "optimizer.lr=0.02", "trainer.max_epochs=2", "callbacks.model_summary=null",
                "seeds=[0,1,2]")  # fmt: skip
    runs = seeds.runs
    assert sorted(run.config.seed for run in runs) == [0, 1, 2]
    # each member: its own config, checkpoints, history, figures, TensorBoard run, metrics
    for index in range(3):
        member = seeds.dir / str(index)
        assert (member / ".hydra" / "overrides.yaml").read_text().startswith(f"- seed={index}\n")
        assert json.loads((member / "metrics.json").read_text())["test/acc"] > 0.5
        assert (member / "figures" / "confusion_matrix.png").is_file()
        (events,) = member.glob("tb/*/events.out.tfevents.*")
        tags = EventAccumulator(str(events)).Reload().Tags()["scalars"]
        assert {"train/loss", "val/acc", "test/acc", "best/val/acc"} <= set(tags)
        assert f"seed={index}" in events.parent.name
    # the members differ: their own weights, their own order of rows
    first, second = (_weights(seeds.dir / str(k) / "checkpoints" / "last.ckpt") for k in (0, 1))
    assert not torch.equal(first["net.layers.1.weight"], second["net.layers.1.weight"])
    # the closing summary: each metric's mean and standard deviation over the members
    by_setting = seeds.by_setting
    assert int(by_setting["seeds"].iloc[0]) == 3
    accuracies = [run.metrics["test/acc"] for run in runs]
    assert by_setting["test/acc_mean"].iloc[0] == pytest.approx(sum(accuracies) / 3)
    assert by_setting["test/acc_std"].iloc[0] > 0


def test_a_member_is_used_and_resumed_as_an_ordinary_run(fit):
    seeds = fit(*MOONS, *QUIET, "trainer.max_epochs=2", "seeds=[0,1]")
    member = seeds.dir / "1"
    assert set(dlbasics.load(member).evaluate()) >= {"test/acc", "test/loss"}
    resumed = fit(f"resume={member}", "trainer.max_epochs=3")
    assert resumed.dir == member
    assert len(resumed.history) == 3 and resumed.best_epoch is not None
    with pytest.raises(dlbasics.ConfigError, match=r"a seeds= run directory; load one of its jobs \(0, 1\)"):
        dlbasics.load(seeds.dir)
    message = fit_error(fit, f"resume={seeds.dir}")
    assert message.startswith(f"resume={seeds.dir}: a seeds= run's directory; give one of its")
    assert "(0, 1)" in message


@pytest.mark.parametrize(
    "setting, member_values, own",
    [
        (("optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=0.001"),
         ("members.lr=[0.3,0.03]", "members.momentum=[0.5,0.9]"),
         ("optimizer.lr=0.03", "optimizer.momentum=0.5")),
        (("optimizer=adamw",), ("members.weight_decay=[0.0,0.1]",), ("optimizer.weight_decay=0.1",)),
    ],
    ids=["sgd-lr-momentum", "adamw-weight-decay"],
)  # fmt: skip
def test_members_with_values_of_their_own_end_where_their_own_runs_end(
    fit, setting, member_values, own
):
    stacked = fit(*MOONS, *setting, *QUIET, "trainer.max_epochs=2", "seeds=[3,5]", *member_values)
    assert len(stacked.runs) == 8 if len(member_values) == 2 else 4
    # the member with those values and seed 5: the last of its setting, after seed 3
    index = 2 * {"optimizer.lr=0.03": 2, "optimizer.weight_decay=0.1": 1}[own[0]] + 1
    member = dlbasics.load(stacked.dir / str(index))
    assert member.config.seed == 5
    for word in own:
        key, value = word.split("=")
        assert float(member.config.optimizer[key.split(".")[1]]) == float(value)
    alone = fit(*MOONS, *setting, *QUIET, "trainer.max_epochs=2", "seed=5", *own)
    _assert_same_weights(
        _weights(member.dir / "checkpoints" / "last.ckpt"),
        _weights(alone.dir / "checkpoints" / "last.ckpt"),
    )
    saved = torch.load(member.dir / "checkpoints" / "last.ckpt", weights_only=False)
    group = saved["optimizer_states"][0]["param_groups"][0]
    for word in own:  # its own values, where its own torch optimizer resumes them
        key, value = word.split("=")
        assert group[key.split(".")[1]] == float(value)
        assert saved["hyper_parameters"]["optimizer"][key.split(".")[1]] == float(value)
    resumed = fit(f"resume={member.dir}", "trainer.max_epochs=3")
    assert len(resumed.history) == 3


@pytest.mark.parametrize(
    "words, expected",
    [
        (("seeds=[0,1,1]",), "seed 1 is listed twice"),
        (("seeds=[0,1]", "scheduler=plateau"), "scheduler=plateau"),
        (("seeds=[0,1]", "callbacks=early_stopping"), "callbacks.early_stopping"),
        (("seeds=[0,1]", "optimizer._target_=torch.optim.Adagrad"), "SGD, Adam, AdamW and RMSprop"),
        (("seeds=[0,1]", "~model", "+model._target_=torch.nn.Identity"), "model._target_=torch.nn.Identity"),
        (("members.lr=[0.1,0]",), "members.lr=[0.1, 0]: a list of different numbers above 0"),
        (("members.momentum=[0.5,0.9]",), "optimizer=sgd or rmsprop"),
        (("members.lr=[0.1,0.01]", "scheduler=step"), "use scheduler=none"),
    ],
)  # fmt: skip
def test_what_cannot_be_stacked_is_one_line_with_the_way_round(fit, words, expected):
    message = fit_error(fit, *words)
    assert expected in message and "\n" not in message
    if "twice" not in expected and "members" not in " ".join(words):
        assert "-m seed=0,1" in message


def test_a_seeds_run_inside_a_multirun_is_refused_before_it_starts():
    from dlbasics.config.prechecks import check_command_line

    with pytest.raises(dlbasics.ConfigError, match=r"-m with seeds= or members"):
        check_command_line(["seeds=[0,1]", "optimizer.lr=0.1,0.01"], [], multirun=True)


def test_a_diverging_member_names_its_seed(fit):
    message = fit_error(
        fit, "model=linreg", "data=linear", "optimizer=sgd", "optimizer.lr=5",
        "trainer.max_epochs=30", *QUIET, "seeds=[0,1]",
    )  # fmt: skip
    assert message.startswith("member 0 (seed 0): the training loss became")
    folder = message.split("checkpoint is kept: ")[1].split("<k>")[0]
    for checkpoint in Path(folder).glob("*/checkpoints/*.ckpt"):  # the diverged weights: none
        assert all(torch.isfinite(t).all() for t in _weights(checkpoint).values()), checkpoint
    assert list(Path(folder).glob("*/checkpoints/best.ckpt"))


@pytest.mark.parametrize(
    "net, shape",
    [
        (lambda: MLP((1, 8, 8), 3, hidden_sizes=[8, 4], activation="tanh"), (1, 8, 8)),
        (lambda: CNN((3, 8, 8), 3, channels=[4, 6], hidden=5), (3, 8, 8)),
        (lambda: LinearRegression((4,), 2, bias=False), (4,)),
    ],
)
def test_a_stacked_net_computes_what_its_members_compute(net, shape):
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(net())
    stacked = stack_nets(members)
    x = torch.randn(3, 5, *shape)
    expected = torch.stack([member(x[k]) for k, member in enumerate(members)])
    torch.testing.assert_close(stacked(x), expected, rtol=1e-5, atol=1e-6)
    for name, tensor in stacked.state_dict().items():  # member k's weights at index k
        assert torch.equal(tensor[1], members[1].state_dict()[name])


def test_a_net_of_other_layers_is_not_stacked():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    assert stackable(net) == "its layer 1 (BatchNorm1d)"


def test_each_member_takes_the_rows_in_its_own_runs_order():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    stacked = MemberBatches(x, y, batch_size=4, seeds=[5, 9])
    stacked.set_epoch(2)
    for k, seed in enumerate((5, 9)):
        alone = ShuffledBatches(x, y, batch_size=4, seed=seed)
        alone.set_epoch(2)
        for (xs, ys), (xa, ya) in zip(stacked, alone, strict=True):
            assert torch.equal(xs[k], xa) and torch.equal(ys[k], ya)


@pytest.mark.parametrize(
    "algorithm, shared, members",
    [
        ("SGD", {"nesterov": True, "dampening": 0.0},
         {"lr": [0.1, 0.01, 0.3], "momentum": [0.9, 0.3, 0.5], "weight_decay": [0.0, 0.01, 0.1]}),
        ("SGD", {}, {"lr": [0.1, 0.02, 0.3], "momentum": [0.9, 0.0, 0.5]}),
        ("Adam", {"betas": (0.8, 0.99)}, {"lr": [1e-3, 1e-2, 0.1], "weight_decay": [0.0, 0.1, 0.01]}),
        ("AdamW", {}, {"lr": [1e-3, 1e-2, 0.1], "weight_decay": [0.0, 0.1, 0.01]}),
        ("RMSprop", {"centered": True}, {"lr": [1e-3, 1e-2, 3e-2], "momentum": [0.0, 0.9, 0.5]}),
        ("RMSprop", {}, {"weight_decay": [0.0, 0.1, 0.01]}),
    ],
)  # fmt: skip
def test_the_member_optimizer_steps_as_torchs_does_for_each_member(algorithm, shared, members):
    from dlbasics.training.member_optimizer import MemberOptimizer

    torch.manual_seed(0)
    weights = torch.randn(3, 4, 5)
    stacked = torch.nn.Parameter(weights.clone())
    optimizer_class = getattr(torch.optim, algorithm)
    first = {name: values[0] for name, values in members.items()}  # the config's own values
    template = optimizer_class([torch.nn.Parameter(torch.zeros(1))], **shared, **first)
    vectorised = MemberOptimizer([stacked], algorithm, template.defaults, members)
    alone = [torch.nn.Parameter(weights[k].clone()) for k in range(3)]
    own = [
        optimizer_class([alone[k]], **shared, **{n: v[k] for n, v in members.items()},
                        foreach=False)
        for k in range(3)
    ]  # fmt: skip
    for _ in range(5):
        gradient = torch.randn(3, 4, 5)
        stacked.grad = gradient.clone()
        vectorised.step()
        for k in range(3):
            alone[k].grad = gradient[k].clone()
            own[k].step()
        for k in range(3):
            torch.testing.assert_close(stacked[k].detach(), alone[k].detach(), rtol=1e-5, atol=1e-6)
    for k in range(3):  # the member's slice of the state is its own optimizer's state
        for name, value in own[k].state[alone[k]].items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                torch.testing.assert_close(vectorised.state[stacked][name][k], value)


def test_ctrl_c_stops_every_member_with_a_checkpoint_each_resumes_from(fit, tmp_path):
    """A notebook's interrupt: the members stop at an epoch's end, each keeps its
    last.ckpt, the run is kept, and any member goes on as an ordinary run."""
    # the members' data.json are written just before training starts
    with interrupt_once(tmp_path, "outputs/train/runs/*/1/data.json"):
        with pytest.raises(dlbasics.RunInterrupted) as caught:
            fit("model=linreg", "data=linear", "data.n_samples=2000", "data.batch_size=8",
                "trainer.max_epochs=10000", *QUIET, "seeds=[0,1]")  # fmt: skip
    message = str(caught.value)
    assert message.startswith("Stopped by SIGINT after") and "resume=" in message
    run_dir = Path(message.split("python -m dlbasics.train resume=", 1)[1].split(" ")[0]).parent
    for member in ("0", "1"):
        assert (run_dir / member / "checkpoints" / "last.ckpt").is_file()
    done = len(dlbasics.load(run_dir / "1").history)
    assert done >= 1
    resumed = fit(f"resume={run_dir / '1'}", f"trainer.max_epochs={done + 1}")
    assert list(resumed.history.index) == list(range(1, done + 2))
