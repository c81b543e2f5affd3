"""The course's three ways to differentiate, side by side: symbolic, numerical, automatic.

* **Symbolic** (SymPy): exact, but the expression of a derivative swells as functions nest.
* **Numerical**, by finite differences: ``(f(x + h) - f(x)) / h`` (forward) or
  ``(f(x + h) - f(x - h)) / 2h`` (central). Easy, but inexact, one or two evaluations of
  ``f`` per input, and sensitive to ``h``: too large and the truncation error dominates, too
  small and rounding does, so the error falls and then rises again.
* **Automatic** (PyTorch's autograd): the operations are recorded on a tape and combined by
  the chain rule, exact to rounding, one backward pass for all inputs.

:func:`check_gradients` uses the second to check the third on any ``torch.nn.Module``.
``python -m dlbasics.manual differentiation`` prints the comparison (:func:`report`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

#: The chain-rule example: x = 2 -> y = x^2 -> z = y + 3 -> loss = 2z, so dloss/dx = 4x = 8.
CHAIN_POINT = 2.0
CHAIN_EXACT = 8.0
#: Steps h of the finite differences: 1e-1 ... 1e-12.
STEPS = tuple(10.0**-k for k in range(1, 13))
#: The course's linear-regression data (y = 2x), and a point (w, b) to differentiate at.
LINREG_X = (1, 2, 3)  # whole numbers: SymPy keeps exact fractions
LINREG_Y = (2, 4, 6)
LINREG_POINT = {"w": 0.5, "b": 0.5}


def chain_loss(x):
    """loss = 2z, z = y + 3, y = x²: works on numbers, NumPy scalars, tensors and symbols."""
    y = x**2
    z = y + 3
    return 2 * z


def linreg_loss(w, b, xs: Sequence[float] = LINREG_X, ys: Sequence[float] = LINREG_Y):
    """Mean squared error of ``y = w x + b`` on the course's data (numbers or symbols)."""
    return sum((w * x + b - y) ** 2 for x, y in zip(xs, ys, strict=True)) / len(xs)


# -- symbolic -------------------------------------------------------------------------------


@dataclass
class Symbolic:
    """A derivative found by SymPy: its (simplified) expression, its exact value, and its
    size in operations as ``sympy.diff`` writes it and after ``sympy.simplify``."""

    variable: str
    expression: str
    value: float
    size: int
    simplified_size: int


def symbolic_derivatives(function: Callable, point: dict[str, float]) -> list[Symbolic]:
    """d function / d v for each variable ``v`` of ``point``, exactly, with SymPy."""
    import sympy

    symbols = {name: sympy.Symbol(name) for name in point}
    expression = function(**symbols)
    results = []
    for name, symbol in symbols.items():
        derivative = sympy.diff(expression, symbol)
        simplified = sympy.simplify(derivative)
        results.append(
            Symbolic(
                variable=name,
                expression=str(simplified),
                value=float(derivative.subs({symbols[k]: v for k, v in point.items()})),
                size=int(sympy.count_ops(derivative)),
                simplified_size=int(sympy.count_ops(simplified)),
            )
        )
    return results


def swelling(
    depths: Sequence[int] = (1, 2, 3, 4, 5), simplify_up_to: int = 2
) -> list[tuple[int, int, int, int | None, int]]:
    """How the derivative of nested sigmoids ``σ(w σ(w … σ(w x)))`` grows with the depth.

    Per depth: operations in the function, in its derivative as SymPy writes it out, in
    the same derivative after ``sympy.simplify`` (``None`` beyond ``simplify_up_to``), and
    with common subexpressions shared (``sympy.cse``), which is what automatic
    differentiation keeps on its tape: each intermediate value once. Simplifying barely
    helps and soon costs too much: at depth 3 it takes 71 operations to 91 in about 4 s,
    at depth 4 it needs half a minute, so deeper rows are not simplified.
    """
    import sympy

    x, w = sympy.symbols("x w")
    rows = []
    function = x
    for depth in range(1, max(depths) + 1):
        function = 1 / (1 + sympy.exp(-w * function))
        if depth not in depths:
            continue
        derivative = sympy.diff(function, w)
        shared, reduced = sympy.cse(derivative)
        shared_ops = sum(sympy.count_ops(e) for _, e in shared) + sympy.count_ops(reduced)
        simplified = (
            int(sympy.count_ops(sympy.simplify(derivative))) if depth <= simplify_up_to else None
        )
        rows.append(
            (
                depth,
                int(sympy.count_ops(function)),
                int(sympy.count_ops(derivative)),
                simplified,
                int(shared_ops),
            )
        )
    return rows


# -- numerical ------------------------------------------------------------------------------


@dataclass
class FiniteDifference:
    """One finite-difference estimate of a gradient and its error against the exact value."""

    method: str  # "forward" or "central"
    dtype: str  # "float32" or "float64"
    step: float
    estimate: tuple[float, ...]  # one per input
    error: float  # the largest absolute error over the inputs


def finite_differences(
    function: Callable,
    point: float | Sequence[float],
    exact: float | Sequence[float],
    steps: Sequence[float] = STEPS,
    dtypes: Sequence[type] = (np.float32, np.float64),
) -> list[FiniteDifference]:
    """Forward and central differences of ``function(*point)`` for each step and dtype.

    ``point`` and ``exact`` are one number or one per input. All arithmetic is done in the
    dtype (NumPy scalars), so float32's rounding shows.
    """
    exact = np.atleast_1d(np.asarray(exact, dtype=np.float64))
    rows = []
    for dtype in dtypes:
        at = np.atleast_1d(np.asarray(point, dtype=dtype))
        for step in steps:
            for method in ("forward", "central"):
                estimate = numerical_gradient(lambda p: function(*p), at, step, method)
                error = float(np.max(np.abs(estimate.astype(np.float64) - exact)))
                rows.append(
                    FiniteDifference(method, dtype.__name__, step, tuple(estimate.tolist()), error)
                )
    return rows


def best_step(rows: Sequence[FiniteDifference], method: str, dtype: str) -> FiniteDifference:
    """The step with the smallest error for one method and dtype."""
    return min((r for r in rows if r.method == method and r.dtype == dtype), key=lambda r: r.error)


def numerical_gradient(
    function: Callable[[np.ndarray], float],
    point: np.ndarray,
    step: float = 1e-6,
    method: str = "central",
) -> np.ndarray:
    """Finite differences for every input of ``function``: ``central`` takes two
    evaluations per input, ``forward`` one per input plus one at ``point``. A float32
    ``point`` stays float32 (the step too), so that its rounding shows."""
    point = np.asarray(point)
    if not np.issubdtype(point.dtype, np.floating):
        point = point.astype(np.float64)
    step = point.dtype.type(step)
    at_point = function(point) if method == "forward" else None
    gradient = np.empty_like(point)
    for i in range(point.size):
        shift = np.zeros_like(point)
        shift.flat[i] = step
        if method == "forward":
            gradient.flat[i] = (function(point + shift) - at_point) / step
        else:
            gradient.flat[i] = (function(point + shift) - function(point - shift)) / (2 * step)
    return gradient


# -- automatic ------------------------------------------------------------------------------


def autograd_derivatives(function: Callable, point: dict[str, float]) -> dict[str, float]:
    """d function / d v for each variable of ``point`` by PyTorch's autograd (float64)."""
    inputs = {
        name: torch.tensor(value, dtype=torch.float64, requires_grad=True)
        for name, value in point.items()
    }
    function(**inputs).backward()
    return {name: tensor.grad.item() for name, tensor in inputs.items()}


# -- cost as the number of inputs grows -----------------------------------------------------


@dataclass
class Cost:
    """What computing a whole gradient of ``inputs`` numbers costs each method."""

    inputs: int
    forward_evaluations: int
    central_evaluations: int
    autograd_passes: str
    forward_seconds: float
    central_seconds: float
    autograd_seconds: float


def _best_time(run: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` runs, after one untimed warm-up run: the first
    run pays for allocations and caches, and other processes' load only slows runs down,
    so the fastest is the one that reflects the work."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def gradient_costs(
    sizes: Sequence[int] = (1, 10, 100, 1000), rows: int = 200, repeats: int = 3
) -> list[Cost]:
    """Evaluations (and time, best of ``repeats``) each method needs for the whole gradient
    of an MSE loss with ``sizes`` weights: forward differences ``n + 1``, central ``2n``,
    autograd one forward and one backward pass whatever ``n``."""
    costs = []
    generator = torch.Generator().manual_seed(0)
    for size in sizes:
        x = torch.randn(rows, size, generator=generator, dtype=torch.float64)
        y = torch.randn(rows, generator=generator, dtype=torch.float64)
        weights = torch.randn(size, generator=generator, dtype=torch.float64).numpy()
        calls = [0]

        def loss(w: np.ndarray, x=x, y=y, calls=calls) -> float:
            calls[0] += 1
            return float(((x @ torch.from_numpy(w) - y) ** 2).mean())

        measured = {}
        for method in ("forward", "central"):
            calls[0] = 0
            numerical_gradient(loss, weights, method=method)
            evaluations = calls[0]
            seconds = _best_time(
                lambda m=method, w=weights: numerical_gradient(loss, w, method=m), repeats
            )
            measured[method] = (evaluations, seconds)

        def backward(x=x, y=y, weights=weights) -> None:
            tracked = torch.from_numpy(weights).requires_grad_(True)
            ((x @ tracked - y) ** 2).mean().backward()

        costs.append(
            Cost(
                inputs=size,
                forward_evaluations=measured["forward"][0],
                central_evaluations=measured["central"][0],
                autograd_passes="1 forward + 1 backward",
                forward_seconds=measured["forward"][1],
                central_seconds=measured["central"][1],
                autograd_seconds=_best_time(backward, repeats),
            )
        )
    return costs


# -- a gradient check for any net -----------------------------------------------------------


@dataclass
class GradientCheck:
    """Autograd's gradient against central differences for a few parameters of a net."""

    max_relative_error: float
    tolerance: float
    entries: list[tuple[str, int, float, float, float]] = field(default_factory=list)
    # (parameter name, flat index, autograd, central difference, relative error)

    @property
    def passed(self) -> bool:
        return self.max_relative_error <= self.tolerance


def check_gradients(
    net: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    count: int = 8,
    step: float = 1e-6,
    tolerance: float = 1e-5,
    seed: int = 0,
    floor: float = 1e-4,
) -> GradientCheck:
    """Compare autograd with central differences on ``count`` random parameter entries.

    Works on a float64 copy of ``net`` in evaluation mode (dropout off), so the net itself
    is left as it was. ``loss`` defaults to cross-entropy for integer targets and MSE
    otherwise. The relative error of an entry is ``|autograd − numeric| / max(|autograd|,
    |numeric|, floor)``; the check passes when the largest is at most ``tolerance``. The
    floor is there because central differences at h = 1e-6 in float64 carry about 1e-10 of
    rounding noise: divided by a gradient of 1e-6, that noise alone would fail the check.
    """
    net = copy.deepcopy(net).double().eval()
    inputs = inputs.double()
    if loss is None:
        integer = not torch.is_floating_point(targets)
        loss = nn.functional.cross_entropy if integer else nn.functional.mse_loss
    targets = targets if not torch.is_floating_point(targets) else targets.double()
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    gradients = torch.autograd.grad(loss(net(inputs), targets), [p for _, p in named])

    sizes = torch.tensor([p.numel() for _, p in named])
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(int(sizes.sum()), (count,), generator=generator).tolist()
    offsets = torch.cumsum(sizes, 0).tolist()
    entries = []
    with torch.no_grad():
        for pick in picks:
            which = next(i for i, end in enumerate(offsets) if pick < end)
            index = pick - (offsets[which - 1] if which else 0)
            name, parameter = named[which]
            flat = parameter.view(-1)
            original = flat[index].item()

            def loss_at(value: np.ndarray, flat=flat, index=index) -> float:
                flat[index] = float(value[0])  # this one entry set, the net evaluated
                return loss(net(inputs), targets).item()

            numeric = float(numerical_gradient(loss_at, np.array([original]), step)[0])
            flat[index] = original
            analytic = gradients[which].reshape(-1)[index].item()
            error = abs(analytic - numeric) / max(abs(analytic), abs(numeric), floor)
            entries.append((name, index, analytic, numeric, error))
    return GradientCheck(max(e[-1] for e in entries), tolerance, entries)


# -- python -m dlbasics.manual differentiation ------------------------------------------------


def _print_differences(rows: Sequence[FiniteDifference], heading: str) -> dict:
    """The error table of :func:`finite_differences` by step, and the best step per column."""
    print(f"  finite differences: {heading}")
    columns = [(m, d) for d in ("float32", "float64") for m in ("forward", "central")]
    print("    " + "h".ljust(7) + "".join(f"{m} {d}".rjust(18) for m, d in columns))
    for step in STEPS:
        errors = [
            next(r.error for r in rows if (r.method, r.dtype, r.step) == (m, d, step))
            for m, d in columns
        ]
        print(f"    {step:<7.0e}" + "".join(f"{e:18.2e}" for e in errors))
    best = {column: best_step(rows, *column) for column in columns}
    for (method, dtype), row in best.items():
        print(f"    best h {method} {dtype}: {row.step:.0e} (error {row.error:.1e})")
    return best


def _print_symbolic(function: str, symbolic: Symbolic) -> None:
    print(
        f"  symbolic (SymPy): d{function}/d{symbolic.variable} = {symbolic.expression}"
        f" = {symbolic.value:.10g}  (operations: {symbolic.size} as differentiated,"
        f" {symbolic.simplified_size} after simplify)"
    )


def report() -> bool:
    """Print the three methods side by side; return whether they agree as they should."""
    ok = True
    print("Three ways to differentiate: x = 2 -> y = x^2 -> z = y + 3 -> loss = 2z")
    (symbolic,) = symbolic_derivatives(chain_loss, {"x": CHAIN_POINT})
    automatic = autograd_derivatives(chain_loss, {"x": CHAIN_POINT})["x"]
    _print_symbolic("loss", symbolic)
    print(f"  automatic (autograd): {automatic:g}")
    ok &= symbolic.value == automatic == CHAIN_EXACT

    best = _print_differences(
        finite_differences(chain_loss, CHAIN_POINT, CHAIN_EXACT), "|estimate - 8| for each step h"
    )
    print(
        "    Forward differences: the error falls with h (truncation), then rises again once\n"
        "    rounding takes over, much earlier in float32. Central differences are exact for\n"
        "    a quadratic such as this loss, so only their rounding error shows."
    )
    ok &= best[("central", "float64")].error < 1e-6

    print(
        "\nTwo inputs: the linear-regression loss L(w, b) on x = [1, 2, 3], y = 2x, at w = b = 0.5"
    )
    symbolic = symbolic_derivatives(linreg_loss, LINREG_POINT)
    automatic = autograd_derivatives(linreg_loss, LINREG_POINT)
    for s in symbolic:
        _print_symbolic("L", s)
        ok &= abs(s.value - automatic[s.variable]) < 1e-12
    print(
        "  automatic (autograd): " + ", ".join(f"dL/d{k} = {v:.10g}" for k, v in automatic.items())
    )
    exact = [s.value for s in symbolic]
    rows = finite_differences(linreg_loss, list(LINREG_POINT.values()), exact)
    best = _print_differences(rows, "largest |estimate - exact| over w and b for each step h")
    print(
        "    The same U as with one input. SymPy's diff already expands this polynomial, so\n"
        "    simplify has nothing left to remove; the nested sigmoids below do swell."
    )
    ok &= best[("forward", "float64")].error < 1e-6

    print("\nExpressions swell: d/dw of nested sigmoids σ(w σ(w … σ(w x))), in operations")
    print("  depth   function   derivative   simplified   with shared subexpressions")
    for depth, function_ops, derivative_ops, simplified_ops, shared_ops in swelling():
        simplified = "-" if simplified_ops is None else simplified_ops
        print(
            f"  {depth:<7} {function_ops:<10} {derivative_ops:<12} {simplified!s:<12} {shared_ops}"
        )
    print(
        "  sympy.simplify barely shrinks it and is not run past depth 2 (-): at depth 3 it\n"
        "  takes about 4 s and gives 91 operations instead of 71; at depth 4, half a minute."
    )

    print("\nCost of a whole gradient as the inputs grow (an MSE loss, 200 rows; best of 3 runs)")
    print("  inputs   forward diff.         central diff.         autograd")
    for cost in gradient_costs():
        print(
            f"  {cost.inputs:<8} {cost.forward_evaluations:>5} evals {cost.forward_seconds * 1e3:7.2f} ms"
            f"  {cost.central_evaluations:>5} evals {cost.central_seconds * 1e3:7.2f} ms"
            f"  {cost.autograd_passes} {cost.autograd_seconds * 1e3:6.2f} ms"
        )
    return bool(ok)
