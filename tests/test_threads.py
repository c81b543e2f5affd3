"""torch's threads chosen from the work of a step (trainer.threads), and fused optimizers."""

from __future__ import annotations

import pytest
import torch

from dlbasics import ConfigError
from dlbasics.nets import CNN, MLP, LinearRegression
from dlbasics.training import threads as threads_module
from dlbasics.training.module import fused_kernel
from dlbasics.training.threads import FLOPS_FOR_MORE_THREADS, choose_threads, flops_per_step


class Data:
    """What choose_threads reads of a datamodule."""

    def __init__(self, input_shape, rows, batch_size):
        self.input_shape = input_shape
        self.batch_size = batch_size
        self.splits = {"train": (torch.zeros(rows, *input_shape), torch.zeros(rows))}


def test_the_work_of_a_step_is_counted_without_computing_it():
    # Linear(2 -> 1) on 10 rows: 2 * 10 * 2 * 1 multiply-adds forward, times 3 with backward.
    assert flops_per_step(LinearRegression((2,), 1), (2,), 10) == 3 * 40
    net = MLP((784,), 10, [1024, 1024])
    before = [p.clone() for p in net.parameters()]
    flops = flops_per_step(net, (784,), 256)
    assert flops == pytest.approx(3 * 2 * 256 * (784 * 1024 + 1024 * 1024 + 1024 * 10))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


@pytest.fixture
def quiet_machine(monkeypatch):
    monkeypatch.setattr(threads_module, "busy_elsewhere", lambda: 0)
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(threads)


def test_auto_takes_one_thread_for_small_nets_and_the_cores_for_large_ones(quiet_machine):
    small, why = choose_threads("auto", MLP((2,), 2, [64, 64]), Data((2,), 8000, 64), False)
    assert small == 1 and "below" in why
    big = CNN((3, 32, 32), 10, channels=[32, 64], hidden=128)
    assert flops_per_step(big, (3, 32, 32), 128) > FLOPS_FOR_MORE_THREADS
    assert choose_threads("auto", big, Data((3, 32, 32), 1000, 128), False)[0] == 4
    # A full batch counts every training row.
    assert choose_threads("auto", big, Data((3, 32, 32), 1000, None), False)[0] == 4
    # On a GPU the arithmetic is not on the CPU's threads.
    assert choose_threads("auto", big, Data((3, 32, 32), 1000, 128), True)[0] == 1


def test_auto_leaves_busy_cores_and_never_exceeds_what_torch_was_given(quiet_machine, monkeypatch):
    big, data = MLP((784,), 10, [1024, 1024]), Data((784,), 1000, 256)
    monkeypatch.setattr(threads_module, "busy_elsewhere", lambda: 3)
    assert choose_threads("auto", big, data, False)[0] == 1
    monkeypatch.setattr(threads_module, "busy_elsewhere", lambda: 1)
    assert choose_threads("auto", big, data, False)[0] == 3
    torch.set_num_threads(2)  # OMP_NUM_THREADS, or a parallel job's share of the cores
    assert choose_threads("auto", big, data, False)[0] == 2


def test_a_number_is_taken_as_given(quiet_machine):
    assert choose_threads(3, MLP((2,), 2, [8]), Data((2,), 10, 5), False) == (3, "trainer.threads")


def test_busy_elsewhere_sees_a_busy_process():
    import subprocess
    import sys
    import time

    # At least the spinner's core (another test process beside may add its own).
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert threads_module.busy_elsewhere() >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_a_run_uses_the_threads_asked_for_and_gives_them_back(fit, tmp_path):
    before = torch.get_num_threads()
    run = fit("experiment=linreg_tiny", "trainer.threads=2", "trainer.max_epochs=2", "figures=none")
    assert "torch threads: 2 (trainer.threads)" in (run.dir / "train.log").read_text()
    assert torch.get_num_threads() == before  # a notebook's kernel keeps its own setting
    run = fit("experiment=linreg_tiny", "trainer.max_epochs=2", "figures=none")
    assert "torch threads: 1 (auto: " in (run.dir / "train.log").read_text()


@pytest.mark.parametrize("value", ["0", "many", "1.5"])
def test_a_bad_thread_count_is_one_line(fit, value):
    from conftest import fit_error

    message = fit_error(fit, "experiment=linreg_tiny", f"trainer.threads={value}")
    assert message.startswith(f"trainer.threads={value}") and "auto" in message


def test_optimizers_with_a_fused_kernel_use_it_unless_the_config_says(make_config):
    from hydra.utils import instantiate

    net = MLP((2,), 2, [8])
    for name, fused in [("adam", True), ("adamw", True), ("sgd", True), ("rmsprop", False)]:
        make = instantiate(make_config(f"optimizer={name}").optimizer)
        assert fused_kernel(make, net) == ({"fused": True} if fused else {}), name
    make = instantiate(make_config("optimizer=adam", "+optimizer.fused=false").optimizer)
    assert fused_kernel(make, net) == {}


def test_the_fused_step_is_the_default_step_up_to_rounding():
    torch.manual_seed(0)
    x, y = torch.randn(256, 2), torch.randint(0, 2, (256,))
    results = []
    for fused in (None, True):
        torch.manual_seed(1)
        net = MLP((2,), 2, [64, 64])
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, fused=fused)
        for start in range(0, 256 * 20, 64):
            rows = slice(start % 256, start % 256 + 64)
            loss = torch.nn.functional.cross_entropy(net(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results.append(torch.cat([p.detach().ravel() for p in net.parameters()]))
    assert torch.allclose(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_a_bad_thread_setting_is_refused_in_python_too():
    with pytest.raises(ConfigError, match="trainer.threads=0"):
        choose_threads(0, MLP((2,), 2, [8]), Data((2,), 10, 5), False)


def test_no_fused_kernel_where_torch_or_lightning_would_refuse_it(make_config):
    from types import SimpleNamespace

    from hydra.utils import instantiate

    net = MLP((2,), 2, [8])
    for chosen in ("+optimizer.foreach=true", "+optimizer.differentiable=true"):
        make = instantiate(make_config("optimizer=adam", chosen).optimizer)
        assert fused_kernel(make, net) == {}, chosen
        make(net.parameters())  # and torch builds it as configured
    # Mixed precision: Lightning cannot clip a fused optimizer's gradients.
    make = instantiate(make_config("optimizer=adam").optimizer)
    mixed = SimpleNamespace(
        trainer=SimpleNamespace(precision="bf16-mixed"), parameters=net.parameters
    )
    assert fused_kernel(make, mixed) == {}
