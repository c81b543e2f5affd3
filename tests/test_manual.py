"""The hand-derived computations of dlbasics.manual equal PyTorch's (autograd, nn.Conv2d, ...).

Fixed examples from the course plus random shapes drawn by hypothesis, in float64 with a
tolerance of 1e-10 (and float32 with 1e-6).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbasics.course import manual
from dlbasics.nets import CNN, MLP

SRC = Path(__file__).resolve().parents[1] / "src"
FLOAT64 = torch.float64
# Random shapes are cheap but the loops in manual.conv2d are not: keep the runs short.
RANDOM = settings(max_examples=30, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def assert_same(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-10) -> None:
    """Same shape, same dtype, every entry within ``tolerance`` (absolute or relative)."""
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


def random(generator: torch.Generator, *shape: int, dtype=FLOAT64) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Linear regression
# ---------------------------------------------------------------------------------------------


def autograd_linreg(x, y, w, b):
    """Loss and (dL/dw, dL/db) from autograd through F.mse_loss."""
    w = w.clone().requires_grad_()
    b = b.clone().requires_grad_()
    loss = F.mse_loss(x @ w + b, y)
    return (loss.detach(), *torch.autograd.grad(loss, [w, b]))


def test_linreg_course_example():
    # x = [1, 2, 3], y = 2x, starting at w = 0, b = 0: every prediction is 0, so
    # L = (4 + 16 + 36) / 3, dL/dw = 2 · mean(−y · x) = −2 · 28 / 3, dL/db = 2 · mean(−y) = −8.
    x = torch.tensor([[1.0], [2.0], [3.0]], dtype=FLOAT64)
    y = torch.tensor([2.0, 4.0, 6.0], dtype=FLOAT64)
    w = torch.zeros(1, dtype=FLOAT64)
    b = torch.zeros((), dtype=FLOAT64)
    loss = manual.linreg_loss(x, y, w, b)
    grad_w, grad_b = manual.linreg_gradients(x, y, w, b)
    assert_same(loss, torch.tensor(56 / 3, dtype=FLOAT64))
    assert_same(grad_w, torch.tensor([-56 / 3], dtype=FLOAT64))
    assert_same(grad_b, torch.tensor(-8.0, dtype=FLOAT64))
    reference_loss, reference_w, reference_b = autograd_linreg(x, y, w, b)
    assert_same(loss, reference_loss)
    assert_same(grad_w, reference_w)
    assert_same(grad_b, reference_b)


def test_linreg_gradient_vanishes_at_the_exact_fit():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]], dtype=FLOAT64)
    w = torch.tensor([0.5, -2.0], dtype=FLOAT64)
    y = x @ w + 1.5
    grad_w, grad_b = manual.linreg_gradients(x, y, w, torch.tensor(1.5, dtype=FLOAT64))
    assert_same(grad_w, torch.zeros(2, dtype=FLOAT64))
    assert_same(grad_b, torch.tensor(0.0, dtype=FLOAT64))


@RANDOM
@given(samples=st.integers(1, 20), features=st.integers(1, 6), seed=seeds)
def test_linreg_matches_autograd(samples, features, seed):
    generator = torch.Generator().manual_seed(seed)
    x, y = random(generator, samples, features), random(generator, samples)
    w, b = random(generator, features), random(generator)
    reference_loss, reference_w, reference_b = autograd_linreg(x, y, w, b)
    assert_same(manual.linreg_loss(x, y, w, b), reference_loss)
    grad_w, grad_b = manual.linreg_gradients(x, y, w, b)
    assert_same(grad_w, reference_w)
    assert_same(grad_b, reference_b)


def test_linreg_float32():
    generator = torch.Generator().manual_seed(0)
    x, y = random(generator, 10, 3, dtype=torch.float32), random(generator, 10, dtype=torch.float32)
    w, b = random(generator, 3, dtype=torch.float32), random(generator, dtype=torch.float32)
    _, reference_w, reference_b = autograd_linreg(x, y, w, b)
    grad_w, grad_b = manual.linreg_gradients(x, y, w, b)
    assert_same(grad_w, reference_w, tolerance=1e-6)
    assert_same(grad_b, reference_b, tolerance=1e-6)


# ---------------------------------------------------------------------------------------------
# Backpropagation through the package's MLP
# ---------------------------------------------------------------------------------------------


def assert_backprop_matches_autograd(net: nn.Module, inputs, targets, tolerance=1e-10):
    """mlp_gradients on the net's weights equals autograd's gradient of every parameter."""
    loss = nn.MSELoss()(net(inputs), targets)
    autograd = torch.autograd.grad(loss, list(net.parameters()))  # W1, b1, W2, b2, ...
    by_hand = manual.mlp_gradients(manual.mlp_parameters(net), inputs, targets)
    by_hand = [grad for pair in by_hand for grad in pair]
    assert len(by_hand) == len(autograd)
    for mine, reference in zip(by_hand, autograd, strict=True):
        assert_same(mine, reference, tolerance)
    assert_same(manual.mlp_loss(net(inputs), targets), loss.detach(), tolerance)


def test_backprop_course_3_5_1_network():
    torch.manual_seed(0)
    net = MLP((3,), 1, hidden_sizes=(5,)).double()
    parameters = manual.mlp_parameters(net)
    assert [tuple(weight.shape) for weight, _ in parameters] == [(5, 3), (1, 5)]
    inputs = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], dtype=FLOAT64)
    targets = torch.tensor([[1.0], [0.0]], dtype=FLOAT64)
    assert_backprop_matches_autograd(net, inputs, targets)


def test_backprop_relu_derivative_is_zero_at_zero_like_pytorch():
    # A hidden unit with zero weights and bias has z = 0 for every sample: PyTorch takes
    # ReLU'(0) = 0, so no gradient flows into that unit's weights.
    torch.manual_seed(0)
    net = MLP((3,), 1, hidden_sizes=(5,)).double()
    with torch.no_grad():
        net.layers[1].weight[0] = 0.0
        net.layers[1].bias[0] = 0.0
    inputs = torch.randn(4, 3, dtype=FLOAT64)
    targets = torch.randn(4, 1, dtype=FLOAT64)
    assert_backprop_matches_autograd(net, inputs, targets)
    grad_w1, _ = manual.mlp_gradients(manual.mlp_parameters(net), inputs, targets)[0]
    assert_same(grad_w1[0], torch.zeros(3, dtype=FLOAT64))


@pytest.mark.parametrize(
    ("input_shape", "outputs", "hidden_sizes"),
    [
        ((3,), 1, ()),  # no hidden layer: linear regression
        ((3,), 1, (5,)),  # the course's 3-5-1 network
        ((4,), 3, (16, 8)),
        ((1, 4, 4), 10, (4, 4, 4, 4)),  # images are flattened first
    ],
)
def test_backprop_matches_autograd_on_package_mlp(input_shape, outputs, hidden_sizes):
    torch.manual_seed(1)
    net = MLP(input_shape, outputs, hidden_sizes).double()
    inputs = torch.randn(6, *input_shape, dtype=FLOAT64)
    targets = torch.randn(6, outputs, dtype=FLOAT64)
    assert_backprop_matches_autograd(net, inputs, targets)


@RANDOM
@given(
    batch=st.integers(1, 8),
    features=st.integers(1, 6),
    hidden_sizes=st.lists(st.integers(1, 8), max_size=3),
    outputs=st.integers(1, 4),
    seed=seeds,
)
def test_backprop_matches_autograd_on_random_shapes(batch, features, hidden_sizes, outputs, seed):
    torch.manual_seed(seed)
    net = MLP((features,), outputs, hidden_sizes).double()
    inputs = torch.randn(batch, features, dtype=FLOAT64)
    targets = torch.randn(batch, outputs, dtype=FLOAT64)
    assert_backprop_matches_autograd(net, inputs, targets)


def test_backprop_float32():
    torch.manual_seed(2)
    net = MLP((5,), 2, hidden_sizes=(7, 3))
    assert_backprop_matches_autograd(net, torch.randn(8, 5), torch.randn(8, 2), tolerance=1e-6)


def test_backprop_accepts_flat_targets_for_one_output():
    torch.manual_seed(3)
    net = MLP((3,), 1, hidden_sizes=(5,)).double()
    inputs, targets = torch.randn(4, 3, dtype=FLOAT64), torch.randn(4, 1, dtype=FLOAT64)
    parameters = manual.mlp_parameters(net)
    column = manual.mlp_gradients(parameters, inputs, targets)
    flat = manual.mlp_gradients(parameters, inputs, targets.flatten())
    for (weight_a, bias_a), (weight_b, bias_b) in zip(column, flat, strict=True):
        assert_same(weight_a, weight_b)
        assert_same(bias_a, bias_b)


def test_dropout_in_eval_mode_is_accepted():
    torch.manual_seed(4)
    net = MLP((3,), 2, hidden_sizes=(5, 4), dropout=0.5).double().eval()
    assert_backprop_matches_autograd(net, torch.randn(4, 3, dtype=FLOAT64), torch.randn(4, 2))


@pytest.mark.parametrize(
    "net",
    [
        MLP((3,), 1, hidden_sizes=(5,), activation="sigmoid"),
        MLP((3,), 1, hidden_sizes=(5,), dropout=0.5),  # training mode: dropout is active
        nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)),  # no activation between the layers
        nn.Sequential(nn.ReLU()),
    ],
)
def test_mlp_parameters_refuses_what_backprop_does_not_model(net):
    with pytest.raises(ValueError):
        manual.mlp_parameters(net)


# ---------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------


def course_images(dtype=FLOAT64) -> torch.Tensor:
    """The course's example: 2 RGB images of 4 x 4."""
    return torch.arange(2 * 3 * 4 * 4, dtype=dtype).reshape(2, 3, 4, 4) / 10


@pytest.mark.parametrize(("dtype", "tolerance"), [(FLOAT64, 1e-10), (torch.float32, 1e-6)])
def test_conv_course_example(dtype, tolerance):
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 2, kernel_size=3, padding=1).to(dtype)
    images = course_images(dtype)
    with torch.no_grad():
        output = manual.conv2d(images, layer.weight, layer.bias, stride=1, padding=1)
        assert output.shape == (2, 2, 4, 4)
        assert_same(output, layer(images), tolerance)


def test_conv_with_ones_counts_the_window_inside_the_image():
    # All-ones images and filters: each output is the number of non-padding pixels under the
    # 3 x 3 window times 3 channels: 4 · 3 in a corner, 6 · 3 on an edge, 9 · 3 inside.
    images = torch.ones(1, 3, 4, 4, dtype=FLOAT64)
    weight = torch.ones(1, 3, 3, 3, dtype=FLOAT64)
    expected = 3 * torch.tensor(
        [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]], dtype=FLOAT64
    )
    assert_same(manual.conv2d(images, weight, padding=1)[0, 0], expected)


@RANDOM
@given(
    batch=st.integers(1, 2),
    in_channels=st.integers(1, 3),
    out_channels=st.integers(1, 3),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    kernel_h=st.integers(1, 4),
    kernel_w=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    bias=st.booleans(),
    seed=seeds,
)
def test_conv_matches_nn_conv2d_on_random_shapes(
    batch, in_channels, out_channels, height, width, kernel_h, kernel_w, stride, padding, bias, seed
):
    # The kernel must fit inside the padded image.
    kernel_h = min(kernel_h, height + 2 * padding)
    kernel_w = min(kernel_w, width + 2 * padding)
    torch.manual_seed(seed)
    layer = nn.Conv2d(
        in_channels, out_channels, (kernel_h, kernel_w), stride=stride, padding=padding, bias=bias
    ).double()
    images = torch.randn(batch, in_channels, height, width, dtype=FLOAT64)
    with torch.no_grad():
        output = manual.conv2d(images, layer.weight, layer.bias, stride=stride, padding=padding)
        assert_same(output, layer(images))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5])
def test_conv_matches_first_layer_of_package_cnn(kernel_size):
    torch.manual_seed(kernel_size)
    first_layer = CNN((3, 6, 5), 2, channels=(4, 8), kernel_size=kernel_size).double().features[0]
    assert isinstance(first_layer, nn.Conv2d)
    images = torch.randn(2, 3, 6, 5, dtype=FLOAT64)
    with torch.no_grad():
        output = manual.conv2d(images, first_layer.weight, first_layer.bias, padding="same")
        assert output.shape == (2, 4, 6, 5)
        assert_same(output, first_layer(images))


def test_conv_matches_package_cnn_on_course_example():
    torch.manual_seed(5)
    first_layer = CNN((3, 4, 4), 2, channels=(2,)).double().features[0]
    images = course_images()
    with torch.no_grad():
        assert_same(
            manual.conv2d(images, first_layer.weight, first_layer.bias, padding=1),
            first_layer(images),
        )


def test_same_padding_needs_stride_one():
    with pytest.raises(ValueError, match="stride 1"):
        manual.conv2d(
            course_images(), torch.ones(2, 3, 3, 3, dtype=FLOAT64), stride=2, padding="same"
        )


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "expected"),
    [(4, 3, 1, 1, 4), (4, 3, 1, 0, 2), (5, 3, 2, 0, 2), (7, 2, 3, 1, 3), (32, 3, 2, 1, 16)],
)
def test_conv_output_size_examples(size, kernel, stride, padding, expected):
    assert manual.conv_output_size(size, kernel, stride, padding) == expected
    layer = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
    assert layer(torch.zeros(1, 1, size, size)).shape[-1] == expected


@RANDOM
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 5),
    padding=st.integers(0, 3),
)
def test_conv_output_size_matches_nn_conv2d(height, width, kernel, stride, padding):
    kernel = min(kernel, height + 2 * padding, width + 2 * padding)
    layer = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
    _, _, out_h, out_w = layer(torch.zeros(1, 1, height, width)).shape
    assert manual.conv_output_size(height, kernel, stride, padding) == out_h
    assert manual.conv_output_size(width, kernel, stride, padding) == out_w


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (manual.relu, torch.relu),
    "sigmoid": (manual.sigmoid, torch.sigmoid),
    "tanh": (manual.tanh, torch.tanh),
    "softmax": (manual.softmax, lambda x: torch.softmax(x, dim=-1)),
    "leaky_relu": (manual.leaky_relu, F.leaky_relu),
    "elu": (manual.elu, F.elu),
}
EXTREMES = torch.tensor(
    [-1000.0, -710.0, -100.0, -30.0, -1e-12, 0.0, 1e-12, 30.0, 100.0, 710.0, 1000.0],
    dtype=FLOAT64,
)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_torch_on_extreme_inputs(name):
    mine, reference = ACTIVATIONS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        output = mine(EXTREMES)
    assert torch.isfinite(output).all()
    assert_same(output, reference(EXTREMES))


@pytest.mark.parametrize("name", ACTIVATIONS)
@RANDOM
@given(values=st.lists(st.floats(-50, 50), min_size=1, max_size=30))
def test_activation_matches_torch_on_random_inputs(name, values):
    mine, reference = ACTIVATIONS[name]
    x = torch.tensor(values, dtype=FLOAT64)
    assert_same(mine(x), reference(x))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_float32(name):
    mine, reference = ACTIVATIONS[name]
    x = torch.linspace(-20, 20, 101)
    assert_same(mine(x), reference(x), tolerance=1e-6)


def test_sigmoid_and_tanh_saturate_without_nan():
    x = torch.tensor([-1000.0, 1000.0], dtype=FLOAT64)
    assert manual.sigmoid(x).tolist() == [0.0, 1.0]
    assert manual.tanh(x).tolist() == [-1.0, 1.0]


@RANDOM
@given(
    rows=st.integers(1, 5),
    columns=st.integers(1, 6),
    dim=st.sampled_from([0, 1, -1]),
    scale=st.sampled_from([1.0, 100.0, 1000.0]),
    seed=seeds,
)
def test_softmax_matches_torch_along_any_dim(rows, columns, dim, scale, seed):
    x = scale * random(torch.Generator().manual_seed(seed), rows, columns)
    output = manual.softmax(x, dim=dim)
    assert_same(output, torch.softmax(x, dim=dim))
    assert_same(output.sum(dim=dim), torch.ones_like(output.sum(dim=dim)))


def test_softmax_survives_inputs_that_overflow_the_naive_formula():
    x = torch.tensor([1000.0, 1001.0, 1002.0], dtype=FLOAT64)
    naive = torch.exp(x) / torch.exp(x).sum()
    assert torch.isnan(naive).all()  # the input really overflows e^x
    assert_same(manual.softmax(x), torch.softmax(x, dim=0))


@RANDOM
@given(
    values=st.lists(st.floats(-100, 100), min_size=1, max_size=20),
    slope=st.floats(0, 1),
    alpha=st.floats(0.01, 5),
)
def test_leaky_relu_and_elu_parameters(values, slope, alpha):
    x = torch.tensor(values, dtype=FLOAT64)
    assert_same(manual.leaky_relu(x, slope), F.leaky_relu(x, slope))
    assert_same(manual.elu(x, alpha), F.elu(x, alpha))


# ---------------------------------------------------------------------------------------------
# Chain rule
# ---------------------------------------------------------------------------------------------


def test_chain_rule_course_example():
    # x = 2, y = x², z = y + 3, loss = 2z: dloss/dx = 2 · 1 · 2x = 8.
    assert manual.chain_rule_manual(2.0) == 8.0
    assert manual.chain_rule_autograd(2.0) == 8.0


@RANDOM
@given(x=st.floats(-1e3, 1e3))
def test_chain_rule_matches_autograd(x):
    assert manual.chain_rule_manual(x) == pytest.approx(manual.chain_rule_autograd(x), rel=1e-12)
    assert manual.chain_rule_manual(x) == pytest.approx(4 * x, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# python -m dlbasics.manual
# ---------------------------------------------------------------------------------------------

DERIVATION_NAMES = [
    "linear regression",
    "backprop 3-5-1",
    "conv2d",
    "conv output size",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "leaky_relu",
    "elu",
    "chain rule",
]


def test_command_line_prints_every_derivation_and_exits_zero():
    paths = [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    result = subprocess.run(
        [sys.executable, "-m", "dlbasics.manual"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in DERIVATION_NAMES:
        assert name in result.stdout, name
    assert "DIFFERS" not in result.stdout


def test_main_returns_one_when_a_derivation_is_wrong(monkeypatch, capsys):
    def naive_softmax(x, dim=-1):  # overflows to nan on the inputs main() uses
        return torch.exp(x) / torch.exp(x).sum(dim=dim, keepdim=True)

    monkeypatch.setattr(manual, "softmax", naive_softmax)
    assert manual.main(["checks"]) == 1
    output = capsys.readouterr().out
    assert "DIFFERS" in output and "softmax" in output.splitlines()[-1]
