"""The three ways to differentiate: the numbers the course's lesson rests on, and a gradient
check that passes on the package's nets and fails on a wrong gradient."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from dlbasics.course import differentiation as d
from dlbasics.course.manual import main
from dlbasics.nets import CNN, MLP, LinearRegression


def test_symbolic_and_autograd_agree_exactly_on_the_chain_rule_example():
    (symbolic,) = d.symbolic_derivatives(d.chain_loss, {"x": 2.0})
    automatic = d.autograd_derivatives(d.chain_loss, {"x": 2.0})["x"]
    assert symbolic.expression == "4*x"
    assert symbolic.size == symbolic.simplified_size == 1
    assert symbolic.value == automatic == d.CHAIN_EXACT == 8.0


def test_two_inputs_symbolic_autograd_and_central_differences_agree():
    symbolic = {s.variable: s.value for s in d.symbolic_derivatives(d.linreg_loss, d.LINREG_POINT)}
    automatic = d.autograd_derivatives(d.linreg_loss, d.LINREG_POINT)
    # By hand: dL/dw = 2/3 Σ (w x + b − y) x = −12, dL/db = 2/3 Σ (w x + b − y) = −5.
    assert symbolic == pytest.approx({"w": -12.0, "b": -5.0}, abs=1e-12)
    assert automatic == pytest.approx(symbolic, abs=1e-12)
    numeric = d.numerical_gradient(lambda p: d.linreg_loss(p[0], p[1]), np.array([0.5, 0.5]))
    assert numeric == pytest.approx([-12.0, -5.0], abs=1e-6)


def test_two_inputs_finite_differences_have_the_same_u_shape():
    symbolic = d.symbolic_derivatives(d.linreg_loss, d.LINREG_POINT)
    assert [(s.size, s.simplified_size) for s in symbolic] == [(6, 6), (4, 4)]
    rows = d.finite_differences(d.linreg_loss, [0.5, 0.5], [s.value for s in symbolic])
    assert all(len(r.estimate) == 2 for r in rows)  # the error is the largest over w and b
    for dtype in ("float32", "float64"):
        best = d.best_step(rows, "forward", dtype)
        at = {r.step: r.error for r in rows if (r.method, r.dtype) == ("forward", dtype)}
        assert at[1e-1] > best.error < at[1e-12]
    assert d.best_step(rows, "forward", "float64").error < 1e-6
    assert d.best_step(rows, "central", "float64").error < 1e-6


def test_finite_difference_error_falls_then_rises_with_the_step():
    rows = d.finite_differences(d.chain_loss, 2.0, 8.0)
    for dtype in ("float32", "float64"):
        best = d.best_step(rows, "forward", dtype)
        at = {r.step: r.error for r in rows if (r.method, r.dtype) == ("forward", dtype)}
        assert at[1e-1] > best.error < at[1e-12]  # a real U: both ends worse than the best
    best64 = d.best_step(rows, "forward", "float64")
    assert best64.error < 1e-6 and 1e-10 <= best64.step <= 1e-6
    # float32 rounds far earlier: its best forward step is larger and its error much worse.
    best32 = d.best_step(rows, "forward", "float32")
    assert best32.step > best64.step and best32.error > 100 * best64.error
    assert d.best_step(rows, "central", "float64").error < 1e-6


def test_derivatives_swell_and_sharing_subexpressions_keeps_them_small():
    rows = d.swelling((1, 2, 3, 5))
    derivative = [r[2] for r in rows]
    simplified = [r[3] for r in rows]
    shared = [r[4] for r in rows]
    assert derivative == sorted(derivative) and derivative[-1] > 10 * derivative[0]
    # simplify is run only where it is cheap (depths 1-2), and shrinks the derivative a little.
    assert simplified[2:] == [None, None]
    assert all(s < full for s, full in zip(simplified[:2], derivative, strict=False))
    assert all(s < full for s, full in zip(shared, derivative, strict=True))
    assert shared[-1] < derivative[-1] / 3


def test_finite_differences_cost_grows_with_the_inputs_autograd_does_not():
    costs = d.gradient_costs((1, 10, 100), rows=20)
    assert [c.forward_evaluations for c in costs] == [2, 11, 101]
    assert [c.central_evaluations for c in costs] == [2, 20, 200]


NETS = {  # built inside the test, after seeding, so every run checks the same numbers
    "linreg": lambda: (LinearRegression([3]), torch.randn(16, 3), torch.randn(16, 1)),
    "mlp": lambda: (
        MLP([4], 3, hidden_sizes=[8, 8], activation="tanh"),
        torch.randn(16, 4),
        torch.randint(3, (16,)),
    ),
    "cnn": lambda: (
        CNN([1, 8, 8], 10, channels=[4, 8], hidden=16),
        torch.rand(6, 1, 8, 8),
        torch.randint(10, (6,)),
    ),
}


@pytest.mark.parametrize("kind", NETS)
def test_gradient_check_passes_on_the_packages_nets(kind):
    torch.manual_seed(0)
    net, inputs, targets = NETS[kind]()
    check = d.check_gradients(net, inputs, targets, count=10)
    # 100 seeds tried here: the largest relative error was 3.7e-6 (cnn), 1.8e-6 (mlp),
    # 5e-8 (linreg), against the default tolerance of 1e-5.
    assert check.passed, check.entries
    assert len(check.entries) == 10
    assert next(net.parameters()).dtype == torch.float32  # the user's net is left as it was


class _DoubledGradient(torch.autograd.Function):
    """tanh whose backward is twice the true derivative: a deliberately wrong gradient."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return 2 * grad * (1 - y**2)


def test_gradient_check_fails_on_a_wrong_gradient():
    torch.manual_seed(0)

    class WrongTanh(nn.Module):
        def forward(self, x):
            return _DoubledGradient.apply(x)

    net = nn.Sequential(nn.Linear(3, 4), WrongTanh(), nn.Linear(4, 1))
    check = d.check_gradients(net, torch.randn(8, 3), torch.randn(8, 1), count=10)
    assert not check.passed
    # The first layer's gradients pass through the wrong backward: off by a factor of 2.
    first = [e for e in check.entries if e[0].startswith("0.")]
    assert first and all(e[2] == pytest.approx(2 * e[3], rel=1e-4) for e in first)


@pytest.mark.slow
def test_manual_differentiation_section_prints_the_three_methods(capsys):
    assert main(["differentiation"]) == 0
    out = capsys.readouterr().out
    assert "dloss/dx = 4*x = 8" in out and "best h forward float64: 1e-08" in out
    assert "largest |estimate - exact| over w and b" in out
    assert "dL/dw = 4*b + 28*w/3 - 56/3 = -12" in out
    assert "Hand-derived computations" not in out  # only the section asked for


def test_manual_refuses_an_unknown_section(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dlbasics.manual", "differentation"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "unknown section 'differentation'" in result.stdout
