"""The material's hand-derived computations, written out and checked against PyTorch.

The course derives a few things by hand before letting PyTorch do them: the gradients of
linear regression, backpropagation through a small MLP, a convolution slid over an image,
the activation functions and the chain rule. This module transcribes each formula directly
into plain PyTorch tensor code (no autograd, no ``nn`` layers doing the work), with the
formula in the docstring, so ``help(dlbasics.manual)`` reads like the course.

Run ``python -m dlbasics.manual`` to see every hand-derived number next to PyTorch's own
(autograd, ``nn.Conv2d``, ``torch.softmax``, ...), then the course's three ways to
differentiate side by side (:mod:`dlbasics.course.differentiation`); ``python -m dlbasics.manual
checks`` or ``... differentiation`` shows one of the two. It exits with code 1 if any pair
differs by more than :data:`TOLERANCE`.

Importing the module computes nothing; only :func:`main` runs the checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbasics.nets import CNN, MLP

#: Largest absolute difference (in float64) that :func:`main` accepts between manual and PyTorch.
TOLERANCE = 1e-10

# ---------------------------------------------------------------------------------------------
# Linear regression
# ---------------------------------------------------------------------------------------------


def linreg_predict(x: Tensor, w: Tensor, b: Tensor | float) -> Tensor:
    """Prediction of linear regression: ŷ = x w + b.

    x has shape (N, F) (N samples, F features), w has shape (F,), b is a scalar;
    ŷ has shape (N,).
    """
    return x @ w + b


def linreg_loss(x: Tensor, y: Tensor, w: Tensor, b: Tensor | float) -> Tensor:
    """Mean squared error of linear regression: L = mean((ŷ − y)²) with ŷ = x w + b.

    The mean runs over the N samples; y has shape (N,). Returns a scalar tensor.
    """
    residual = linreg_predict(x, w, b) - y
    return (residual**2).mean()


def linreg_gradients(x: Tensor, y: Tensor, w: Tensor, b: Tensor | float) -> tuple[Tensor, Tensor]:
    """Gradients of L = mean((ŷ − y)²) for ŷ = x w + b, by hand.

        dL/dw = 2 · mean((ŷ − y) · x)    (mean over samples; one entry per feature, shape (F,))
        dL/db = 2 · mean(ŷ − y)          (a scalar)

    Each sample's residual ŷ − y scales its own input row x; averaging those rows gives the
    weight gradient.
    """
    residual = linreg_predict(x, w, b) - y  # shape (N,)
    grad_w = 2 * (residual[:, None] * x).mean(dim=0)
    grad_b = 2 * residual.mean()
    return grad_w, grad_b


# ---------------------------------------------------------------------------------------------
# Backpropagation through an MLP (ReLU hidden layers, linear output, MSE loss)
# ---------------------------------------------------------------------------------------------


def relu_derivative(z: Tensor) -> Tensor:
    """f′(z) for f = ReLU: 1 where z > 0, else 0 (PyTorch also takes 0 at z = 0)."""
    return (z > 0).to(z.dtype)


def mlp_parameters(mlp: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """The list [(W⁽¹⁾, b⁽¹⁾), ..., (W⁽ᴸ⁾, b⁽ᴸ⁾)] of a ReLU MLP such as :class:`dlbasics.nets.MLP`.

    Accepts the package's ``MLP`` (its ``layers``) or any ``nn.Sequential`` made of
    ``Flatten, Linear, ReLU, Linear, ReLU, ..., Linear``. W⁽ˡ⁾ has PyTorch's shape
    (outputs, inputs). The tensors are detached views of the module's own parameters.

    Raises ``ValueError`` for anything :func:`mlp_gradients` does not model: another
    activation, active dropout, or layers in another order.
    """
    sequence = mlp.layers if hasattr(mlp, "layers") else mlp
    kinds: list[str] = []
    linears: list[nn.Linear] = []
    for layer in sequence.children():
        if isinstance(layer, nn.Flatten):
            continue  # flattening only reshapes the input: a⁽⁰⁾ is the flattened sample
        if isinstance(layer, nn.Dropout) and (layer.p == 0 or not layer.training):
            continue  # dropout that drops nothing is the identity
        if isinstance(layer, nn.Linear):
            kinds.append("linear")
            linears.append(layer)
        elif isinstance(layer, nn.ReLU):
            kinds.append("relu")
        else:
            raise ValueError(
                f"mlp_parameters models Linear and ReLU layers only; found {layer!r} "
                "(use activation='relu' and dropout=0 or eval mode)"
            )
    expected = ["linear", "relu"] * (len(linears) - 1) + ["linear"]
    if not linears or kinds != expected:
        raise ValueError(f"expected Linear, ReLU, ..., Linear; got {', '.join(kinds) or 'nothing'}")
    return [(layer.weight.detach(), layer.bias.detach()) for layer in linears]


def mlp_forward(
    parameters: Sequence[tuple[Tensor, Tensor]], inputs: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """Forward pass, keeping what backpropagation needs.

        a⁽⁰⁾ = x (flattened),   z⁽ˡ⁾ = W⁽ˡ⁾ a⁽ˡ⁻¹⁾ + b⁽ˡ⁾,   a⁽ˡ⁾ = ReLU(z⁽ˡ⁾) for hidden layers,
        and the output layer is linear: ŷ = a⁽ᴸ⁾ = z⁽ᴸ⁾.

    The batch is stacked as rows, so in code z⁽ˡ⁾ = a⁽ˡ⁻¹⁾ (W⁽ˡ⁾)ᵀ + b⁽ˡ⁾ with shape
    (N, units). Returns (pre-activations [z⁽¹⁾, ..., z⁽ᴸ⁾], activations [a⁽⁰⁾, ..., a⁽ᴸ⁾]).
    """
    activation = inputs.flatten(start_dim=1)
    pre_activations: list[Tensor] = []
    activations = [activation]
    last = len(parameters) - 1
    for index, (weight, bias) in enumerate(parameters):
        z = activation @ weight.T + bias
        activation = z if index == last else relu(z)
        pre_activations.append(z)
        activations.append(activation)
    return pre_activations, activations


def mlp_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """J = mean over the batch and the outputs of (ŷ − y)², as ``nn.MSELoss(reduction="mean")``.

    ``target`` is reshaped to the prediction's shape (N, K), so a (N,) target of a one-output
    net is not silently broadcast to (N, N).
    """
    return ((prediction - target.reshape(prediction.shape)) ** 2).mean()


def mlp_gradients(
    parameters: Sequence[tuple[Tensor, Tensor]], inputs: Tensor, targets: Tensor
) -> list[tuple[Tensor, Tensor]]:
    """∂J/∂W⁽ˡ⁾ and ∂J/∂b⁽ˡ⁾ for every layer, by backpropagation written out by hand.

    Loss convention: J = mean over the N samples and K outputs of (ŷ − y)², exactly
    ``nn.MSELoss(reduction="mean")``. Its derivative with respect to ŷ is 2 (ŷ − y) / (N·K),
    and the output layer is linear (f′ = 1), so the output error term is

        δ⁽ᴸ⁾ = 2 (ŷ − y) / (N·K)

    and, going backwards through the hidden layers (f = ReLU),

        δ⁽ˡ⁾ = ((W⁽ˡ⁺¹⁾)ᵀ δ⁽ˡ⁺¹⁾) ⊙ f′(z⁽ˡ⁾)
        ∂J/∂W⁽ˡ⁾ = δ⁽ˡ⁾ (a⁽ˡ⁻¹⁾)ᵀ       summed over the batch
        ∂J/∂b⁽ˡ⁾ = δ⁽ˡ⁾                 summed over the batch

    With samples stored as rows (δ⁽ˡ⁾ has shape (N, units)), the same formulas read
    δ⁽ˡ⁾ = (δ⁽ˡ⁺¹⁾ W⁽ˡ⁺¹⁾) ⊙ f′(z⁽ˡ⁾) and ∂J/∂W⁽ˡ⁾ = (δ⁽ˡ⁾)ᵀ a⁽ˡ⁻¹⁾, where the matrix product
    does the sum over samples. Returns [(∂J/∂W⁽¹⁾, ∂J/∂b⁽¹⁾), ...], shaped like the parameters.
    Works for any depth and width, e.g. the course's 3-5-1 network.
    """
    pre_activations, activations = mlp_forward(parameters, inputs)
    prediction = activations[-1]
    delta = 2 * (prediction - targets.reshape(prediction.shape)) / prediction.numel()
    gradients: list[tuple[Tensor, Tensor]] = []
    for layer in reversed(range(len(parameters))):
        gradients.append((delta.T @ activations[layer], delta.sum(dim=0)))
        if layer > 0:
            weight = parameters[layer][0]
            delta = (delta @ weight) * relu_derivative(pre_activations[layer - 1])
    return gradients[::-1]


# ---------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output height (or width) of a convolution: ⌊(H − K + 2P) / S⌋ + 1.

    H is the input size, K the kernel size, P the zero padding on each side, S the stride.
    """
    return (size - kernel_size + 2 * padding) // stride + 1


def _same_padding(kernel_size: int) -> tuple[int, int]:
    """(before, after) zero padding that keeps the size at stride 1, split like PyTorch.

    K − 1 zeros are needed in total; with an even kernel the extra one goes after.
    """
    total = kernel_size - 1
    return total // 2, total - total // 2


def zero_pad(images: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Images (N, C, H, W) surrounded by rows and columns of zeros."""
    batch, channels, height, width = images.shape
    padded = images.new_zeros(batch, channels, height + top + bottom, width + left + right)
    padded[:, :, top : top + height, left : left + width] = images
    return padded


def conv2d(
    images: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int | str = 0,
) -> Tensor:
    """2-D convolution (cross-correlation, as in deep learning) by explicit loops.

        out[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v  x_pad[n, c, i·S + u, j·S + v] · W[o, c, u, v]

    images: (N, C, H, W); weight: (O, C, K_h, K_w); bias: (O,) or None. ``padding`` is the
    number of zeros added on every side, or ``"same"`` (stride 1 only) to keep H × W as
    ``nn.Conv2d(padding="same")`` does. The output has shape (N, O, H_out, W_out) with
    H_out = ⌊(H − K + 2P) / S⌋ + 1 (see :func:`conv_output_size`).

    The loops run over samples, output channels and output positions; at each position the
    filter is laid over the window and the element-wise products are summed (the Σ over
    c, u, v).
    """
    out_channels, _, kernel_h, kernel_w = weight.shape
    if padding == "same":
        if stride != 1:
            raise ValueError("padding='same' needs stride 1")
        padded = zero_pad(images, *_same_padding(kernel_h), *_same_padding(kernel_w))
    else:
        padded = zero_pad(images, padding, padding, padding, padding)
    # The zeros are already in `padded`, so the formula's 2P is 0 here.
    out_h = conv_output_size(padded.shape[2], kernel_h, stride)
    out_w = conv_output_size(padded.shape[3], kernel_w, stride)
    output = images.new_zeros(images.shape[0], out_channels, out_h, out_w)
    for n in range(images.shape[0]):
        for o in range(out_channels):
            for i in range(out_h):
                for j in range(out_w):
                    top, left = i * stride, j * stride
                    window = padded[n, :, top : top + kernel_h, left : left + kernel_w]
                    output[n, o, i, j] = (window * weight[o]).sum()
            if bias is not None:
                output[n, o] += bias[o]
    return output


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------


def relu(x: Tensor) -> Tensor:
    """ReLU(x) = max(0, x)."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def sigmoid(x: Tensor) -> Tensor:
    """σ(x) = 1 / (1 + e⁻ˣ).

    For x < 0 the same value is written e^x / (1 + e^x), so e to a large positive power is
    never taken: σ(−1000) is 0, not an overflow.
    """
    exp_minus_abs = torch.exp(-x.abs())  # e^(−|x|) ≤ 1 can not overflow
    return torch.where(x >= 0, 1 / (1 + exp_minus_abs), exp_minus_abs / (1 + exp_minus_abs))


def tanh(x: Tensor) -> Tensor:
    """tanh(x) = (eˣ − e⁻ˣ) / (eˣ + e⁻ˣ).

    Computed as sign(x) · (1 − e^(−2|x|)) / (1 + e^(−2|x|)) (the same fraction divided by
    e^|x|), so large |x| gives ±1 instead of ∞/∞; expm1 keeps small x accurate.
    """
    exp_term = torch.exp(-2 * x.abs())
    return torch.sign(x) * -torch.expm1(-2 * x.abs()) / (1 + exp_term)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """softmax(x)ᵢ = e^(xᵢ) / Σⱼ e^(xⱼ) along ``dim``.

    Subtracting max(x) first leaves the result unchanged (the factor e^(−max) cancels) but
    keeps every exponent ≤ 0, so e^1000 never has to be computed.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    exps = torch.exp(shifted)
    return exps / exps.sum(dim=dim, keepdim=True)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """LeakyReLU(x) = x if x > 0, else negative_slope · x."""
    return torch.where(x > 0, x, negative_slope * x)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """ELU(x) = x if x > 0, else α (eˣ − 1)."""
    # Only x ≤ 0 reaches the exponential, so large positive x can not overflow it.
    return torch.where(x > 0, x, alpha * torch.expm1(x.clamp(max=0)))


# ---------------------------------------------------------------------------------------------
# Chain rule
# ---------------------------------------------------------------------------------------------


def chain_rule_manual(x: float = 2.0) -> float:
    """dloss/dx for y = x², z = y + 3, loss = 2z, by the chain rule.

    dloss/dx = dloss/dz · dz/dy · dy/dx = 2 · 1 · 2x      (= 8 at x = 2)
    """
    dloss_dz = 2.0
    dz_dy = 1.0
    dy_dx = 2.0 * x
    return dloss_dz * dz_dy * dy_dx


def chain_rule_autograd(x: float = 2.0) -> float:
    """The same dloss/dx as :func:`chain_rule_manual`, computed by PyTorch's autograd."""
    x_tensor = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = x_tensor**2
    z = y + 3
    loss = 2 * z
    loss.backward()
    return x_tensor.grad.item()


# ---------------------------------------------------------------------------------------------
# python -m dlbasics.manual: every derivation next to PyTorch's number
# ---------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One hand-derived result and PyTorch's value for the same quantity."""

    name: str
    manual: Tensor
    pytorch: Tensor

    @property
    def max_abs_diff(self) -> float:
        if self.manual.shape != self.pytorch.shape:
            return float("inf")  # a wrong shape is a wrong result, whatever broadcasting says
        return (self.manual - self.pytorch).abs().max().item()

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= TOLERANCE


def _as_tensor(value: Tensor | float) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64).detach()


def _linreg_checks() -> list[Check]:
    # The course's exercise: x = [1, 2, 3], y = 2x, starting from w = 0, b = 0.
    x = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    y = torch.tensor([2.0, 4.0, 6.0], dtype=torch.float64)
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    loss = F.mse_loss(x @ w + b, y)
    loss.backward()
    grad_w, grad_b = linreg_gradients(x, y, w.detach(), b.detach())
    return [
        Check("linear regression loss", linreg_loss(x, y, w.detach(), b.detach()), loss.detach()),
        Check("linear regression dL/dw", grad_w, w.grad),
        Check("linear regression dL/db", grad_b, b.grad),
    ]


def _backprop_checks() -> list[Check]:
    checks = []
    for hidden_sizes, outputs in [((5,), 1), ((8, 6), 2)]:
        # 3-5-1 is the course's network; 3-8-6-2 shows that any depth and width work.
        net = MLP((3,), outputs, hidden_sizes).double()
        inputs = torch.randn(4, 3, dtype=torch.float64)
        targets = torch.randn(4, outputs, dtype=torch.float64)
        loss = nn.MSELoss()(net(inputs), targets)
        autograd = torch.autograd.grad(loss, list(net.parameters()))  # W1, b1, W2, b2, ...
        manual = [
            grad for pair in mlp_gradients(mlp_parameters(net), inputs, targets) for grad in pair
        ]
        sizes = "-".join(str(size) for size in (3, *hidden_sizes, outputs))
        names = [f"dJ/d{kind}{layer}" for layer in range(1, len(hidden_sizes) + 2) for kind in "Wb"]
        for name, by_hand, by_autograd in zip(names, manual, autograd, strict=True):
            checks.append(Check(f"backprop {sizes} {name}", by_hand, by_autograd))
    return checks


def _conv_checks() -> list[Check]:
    # The course's example: 2 RGB images of 4 x 4, 2 output channels, 3 x 3 kernel, padding 1.
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4) / 10
    layer = nn.Conv2d(3, 2, kernel_size=3, padding=1).double()
    strided = nn.Conv2d(3, 4, kernel_size=(3, 2), stride=2, padding=2).double()
    first_cnn_layer = CNN((3, 4, 4), 2, channels=(2, 4)).double().features[0]
    # Output sizes for several (H, K, S, P): formula next to nn.Conv2d's real output height.
    cases = [(4, 3, 1, 1), (5, 3, 2, 0), (7, 2, 3, 1), (28, 5, 1, 2), (32, 3, 2, 1)]
    formula = [conv_output_size(h, k, s, p) for h, k, s, p in cases]
    actual = [
        nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.zeros(1, 1, h, h)).shape[-1]
        for h, k, s, p in cases
    ]
    with torch.no_grad():
        return [
            Check(
                "conv2d 2xRGB 4x4, K3 P1",
                conv2d(images, layer.weight, layer.bias, 1, 1),
                layer(images),
            ),
            Check(
                "conv2d K3x2 S2 P2",
                conv2d(images, strided.weight, strided.bias, 2, 2),
                strided(images),
            ),
            Check(
                "conv2d = CNN.features[0]",
                conv2d(images, first_cnn_layer.weight, first_cnn_layer.bias, padding="same"),
                first_cnn_layer(images),
            ),
            Check("conv output size", _as_tensor(formula), _as_tensor(actual)),
        ]


def _activation_checks() -> list[Check]:
    # Ordinary values plus inputs large enough to overflow a naive exp (e^1000 = inf).
    x = torch.tensor(
        [
            [0.5, -2.0, 2.0, -0.5, 0.0],
            [-1000.0, -30.0, 1e-8, 30.0, 1000.0],
            [1000.0, 1001.0, 1002.0, 999.0, 0.0],
        ],
        dtype=torch.float64,
    )
    return [
        Check("relu", relu(x), torch.relu(x)),
        Check("sigmoid", sigmoid(x), torch.sigmoid(x)),
        Check("tanh", tanh(x), torch.tanh(x)),
        Check("softmax (rows)", softmax(x, dim=1), torch.softmax(x, dim=1)),
        Check("leaky_relu (slope 0.1)", leaky_relu(x, 0.1), F.leaky_relu(x, 0.1)),
        Check("elu (alpha 0.5)", elu(x, 0.5), F.elu(x, 0.5)),
    ]


def _chain_rule_checks() -> list[Check]:
    return [
        Check(
            "chain rule dloss/dx at x=2",
            _as_tensor(chain_rule_manual(2.0)),
            _as_tensor(chain_rule_autograd(2.0)),
        )
    ]


#: The groups of checks :func:`main` runs, in the order of the course.
CHECK_GROUPS: list[Callable[[], list[Check]]] = [
    _linreg_checks,
    _backprop_checks,
    _conv_checks,
    _activation_checks,
    _chain_rule_checks,
]


def _leading(values: Tensor, count: int = 3) -> str:
    """The first ``count`` numbers of a tensor, compactly, with '…' when there are more."""
    flat = values.detach().flatten()
    text = " ".join(f"{value:.4g}" for value in flat[:count].tolist())
    return text + (" …" if flat.numel() > count else "")


def run_checks() -> list[Check]:
    """Every hand-derived result next to PyTorch's, in float64 with a fixed seed."""
    # The nets and inputs are random: seed them so the printout is stable, inside fork_rng so
    # the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return [check for group in CHECK_GROUPS for check in group()]


#: Sections of ``python -m dlbasics.manual [section ...]`` (all of them by default).
SECTIONS = ("checks", "differentiation")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dlbasics.manual [checks] [differentiation]``: the hand derivations next
    to PyTorch's numbers, and the three ways to differentiate side by side (both by
    default). Returns 1 if a derivation differs or the methods disagree, 2 for an unknown
    section."""
    sections = list(argv or SECTIONS)
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        print(f"Error: unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
        return 2
    failed = False
    if "checks" in sections:
        failed |= print_checks() != 0
    if "differentiation" in sections:
        from dlbasics.course.differentiation import report

        if "checks" in sections:
            print()
        failed |= not report()
    return 1 if failed else 0


def print_checks() -> int:
    """Print each derivation's manual and PyTorch numbers; return 1 if any pair differs."""
    checks = run_checks()
    header = ("derivation", "manual", "PyTorch", "max |diff|", "")
    rows = [header] + [
        (
            check.name,
            _leading(check.manual),
            _leading(check.pytorch),
            f"{check.max_abs_diff:.1e}",
            "ok" if check.passed else "DIFFERS",
        )
        for check in checks
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    print(f"Hand-derived computations vs PyTorch (float64, tolerance {TOLERANCE:g})")
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    failed = [check.name for check in checks if not check.passed]
    if failed:
        print(f"{len(failed)} of {len(checks)} differ: {', '.join(failed)}")
        return 1
    print(f"all {len(checks)} agree")
    return 0
