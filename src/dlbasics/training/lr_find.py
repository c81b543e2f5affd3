"""Choosing a learning rate: a range test on the run's own model, data and optimizer.

``python -m dlbasics.lr_find experiment=mlp_moons`` (any overrides a run takes) and
``dlbasics.lr_find("experiment=mlp_moons")`` train a copy of the run's model for
``lr_find.num_steps`` optimizer steps (100) while the learning rate grows exponentially from
``lr_find.min_lr`` (1e-6) to ``lr_find.max_lr`` (1), stopping early once the loss diverges.
The loss is smoothed with an exponential moving average (β = 0.98, bias-corrected, as fastai
smooths it) and three learning rates are read off the curve:

* ``steepest``: where the smoothed loss falls fastest, its gradient taken against
  ``log10(lr)`` (the x axis of the figure; Lightning's ``suggestion`` takes it against
  ``lr``, which favours the smallest learning rates);
* ``valley`` (recommended, fastai's default): fastai's rule from
  ``fastai/callback/schedule.py``: the longest valley is the longest decreasing
  subsequence of the smoothed loss; from its start (its end index minus its length) the
  point ``int(span / 3) + int(span / 6)`` steps on, about halfway along it;
* ``minimum/10``: the learning rate of the lowest smoothed loss, divided by 10.

As in fastai, the suggestions read the curve without its first ``num_steps // 10`` losses
and its last 5 (and nothing after a NaN). The run itself is untouched: the test builds its
own module (the run's seed, so the run's initial weights), trains it and throws it away;
``<log dir>/<task_name>/lr_find/<date>_<time>_<pid>/`` gets ``lr_find.png``, the curve as
``lr_find.csv`` and the suggestions as ``lr_find.json``.

Why not Lightning's ``Tuner.lr_find``: :class:`~dlbasics.training.module.SupervisedModule` optimises
manually (``automatic_optimization = False``), and under manual optimisation Lightning
never steps the scheduler the tuner slips in, so the learning rate stays at ``min_lr`` for
every step; its ``training_step`` returns no loss (losses stay on the device), so the
tuner's callback records NaN for every step and its suggestion is None (tried with
Lightning 2.x: 100 steps at lr 1e-6, all NaN). Its suggestion rule is also the gradient
against ``lr``, and it has no valley. So :func:`range_test` is a plain loop over the run's
own datamodule (its batches, in the run's per-epoch order), net, loss, optimizer and
gradient clipping.

The test takes ``num_steps`` steps whatever the size of an epoch: within one epoch where
an epoch has that many minibatches (``mlp_moons``: 100 of 110), else passing over the
training split again in the next epoch's order, as fastai does (a full batch of tiny
data repeats the same batch, which is full-batch gradient descent, still a valid test).
The run's scheduler is not used (it is stepped per epoch; the test sets the learning rate
of every step itself): the suggestion is the run's starting ``optimizer.lr``.
"""

from __future__ import annotations

import html
import json
import math
import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dlbasics.errors import ConfigError, DataError, DlbasicsError

BETA = 0.98  # the moving average's weight of the past, as fastai and Lightning smooth
STOP_FACTOR = 4.0  # diverged: the smoothed loss above 4x its lowest (fastai, Lightning)
SKIP_END = 5  # losses left out at the end of the curve (fastai's lr_find)
MIN_POINTS = 10  # losses a suggestion needs once the ends are left out
FELL = 0.05  # a curve whose smoothed loss never falls 5 % below its start "never falls"
RECOMMENDED = "valley"  # fastai's default suggestion
DEFAULTS = {"min_lr": 1e-6, "max_lr": 1.0, "num_steps": 100}
# The fewest steps that leave MIN_POINTS losses after num_steps // 10 and SKIP_END.
MIN_STEPS = next(n for n in range(1, 1000) if n - n // 10 - SKIP_END >= MIN_POINTS)

USAGE = f"""
dlbasics.lr_find: a learning-rate range test on a run's own model, data and optimizer.

Usage: python -m dlbasics.lr_find [--config-dir DIR] [group=option ...] [key=value ...]
  e.g. python -m dlbasics.lr_find experiment=mlp_moons
       python -m dlbasics.lr_find model=mlp data=csv data.path=x.csv data.target=y optimizer=adam

Takes the overrides of python -m dlbasics.train, and these keys (conf/train.yaml):
  lr_find.min_lr=1e-6     the first learning rate tried
  lr_find.max_lr=1        the last one (the test stops earlier if the loss diverges)
  lr_find.num_steps=100   optimizer steps, the learning rate growing exponentially
                          (at least {MIN_STEPS}; more epochs than one where an epoch is shorter)

Prints three suggestions (steepest, valley, minimum/10), the recommended one (valley, as
fastai) and the train command with optimizer.lr set to it. Writes lr_find.png, lr_find.csv
and lr_find.json to outputs/<task_name>/lr_find/<date>_<time>_<pid>/.
In Python: dlbasics.lr_find("experiment=mlp_moons") returns them (.curve, .suggestions,
.recommended, .figure, .command).
"""


class RangeTestFailed(DlbasicsError):
    """The range test ran but its curve gives no learning rate (the loss never fell, or
    diverged from the start); the message says which setting to change."""

    exit_code = 1


# -- the curve and its suggestions (plain NumPy, tested on known curves) -------------------


@dataclass(frozen=True)
class Suggestion:
    """One suggested learning rate: its ``name``, the ``lr`` (two significant digits, as
    printed), the smoothed ``loss`` at that lr, and ``how`` it was found, in words."""

    name: str
    lr: float
    loss: float
    how: str


def exponential_lrs(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """``steps`` learning rates from ``min_lr`` to ``max_lr`` (both included), evenly
    spaced in ``log10(lr)``: step ``i`` uses ``min_lr * (max_lr / min_lr) ** (i / (steps - 1))``."""
    return np.geomspace(min_lr, max_lr, steps)


class Smoother:
    """The bias-corrected exponential moving average fastai and Lightning smooth with:
    ``avg = β·avg + (1 − β)·loss``, reported as ``avg / (1 − β^n)`` after ``n`` losses."""

    def __init__(self, beta: float = BETA) -> None:
        self.beta, self.average, self.count = beta, 0.0, 0

    def add(self, loss: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * loss
        return self.average / (1 - self.beta**self.count)


def smooth(losses: Sequence[float], beta: float = BETA) -> np.ndarray:
    """:class:`Smoother` over a whole curve."""
    smoother = Smoother(beta)
    return np.array([smoother.add(float(loss)) for loss in losses])


def judged_window(recorded: int, num_steps: int, smoothed: np.ndarray) -> slice:
    """The losses the suggestions read, as fastai's ``lr_find`` leaves them: without the
    first ``num_steps // 10`` and the last :data:`SKIP_END`, and nothing from a NaN on."""
    end = recorded - SKIP_END
    bad = np.flatnonzero(~np.isfinite(smoothed[:recorded]))
    if len(bad):
        end = min(end, int(bad[0]))
    return slice(num_steps // 10, max(num_steps // 10, end))


def steepest(lrs: np.ndarray, smoothed: np.ndarray) -> Suggestion:
    """The lr where the smoothed loss falls fastest against ``log10(lr)``: the lowest of
    ``numpy.gradient(smoothed, log10(lr))`` (central differences, one-sided at the ends)."""
    slope = np.gradient(smoothed, np.log10(lrs))
    index = int(np.argmin(slope))
    return Suggestion(
        "steepest",
        _rounded(lrs[index]),
        float(smoothed[index]),
        f"where the smoothed loss falls fastest against log10(lr) "
        f"({slope[index]:.3g} per tenfold lr)",
    )


def valley(lrs: np.ndarray, smoothed: np.ndarray) -> Suggestion:
    """fastai's ``valley`` (``fastai/callback/schedule.py``), rule for rule: ``lds[i]`` is
    the length of the longest strictly decreasing subsequence of the smoothed loss ending at
    ``i``; the valley ends at the first ``i`` of the greatest length and starts at that
    index minus the length; the suggestion is ``start + int(span / 3) + int(span / 6)``,
    about halfway along (a start of −1, which fastai's arithmetic allows, is kept; the index
    is only kept within the curve, where fastai's could wrap to the last point)."""
    n = len(smoothed)
    lds = np.ones(n, dtype=int)
    for i in range(1, n):
        higher = smoothed[:i] > smoothed[i]
        if higher.any():
            lds[i] = 1 + int(lds[:i][higher].max())
    end = int(np.argmax(lds))  # the first index of the greatest length, as fastai's loop
    start = end - int(lds[end])
    span = (end - start) / 3
    index = min(max(start + int(span) + int(span / 2), 0), n - 1)
    return Suggestion(
        "valley",
        _rounded(lrs[index]),
        float(smoothed[index]),
        f"fastai's valley: halfway along the longest run of ever lower smoothed losses "
        f"(lr {lrs[max(start, 0)]:.2g} to {lrs[end]:.2g})",
    )


def minimum_tenth(lrs: np.ndarray, smoothed: np.ndarray) -> Suggestion:
    """A tenth of the lr of the lowest smoothed loss (fastai's ``minimum``); its loss is
    the smoothed curve's at that tenth, read off in ``log10(lr)``."""
    index = int(np.argmin(smoothed))
    lr = _rounded(lrs[index] / 10)
    at = float(np.interp(np.log10(lr), np.log10(lrs), smoothed))
    return Suggestion(
        "minimum/10",
        lr,
        at,
        f"a tenth of lr {lrs[index]:.2g}, where the smoothed loss is lowest "
        f"({smoothed[index]:.3g})",
    )


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> dict[str, Suggestion]:
    """The three suggestions for a judged curve (see :func:`judged_window`), by name."""
    lrs, smoothed = np.asarray(lrs, float), np.asarray(smoothed, float)
    found = (steepest(lrs, smoothed), valley(lrs, smoothed), minimum_tenth(lrs, smoothed))
    return {suggestion.name: suggestion for suggestion in found}


def judge(
    lrs: np.ndarray, losses: np.ndarray, settings: dict, stopped: str | None
) -> tuple[dict[str, Suggestion], slice]:
    """The suggestions of a recorded curve, or one line saying why it gives none and what
    to change: it diverged from the start, or never fell (rose: too large a ``min_lr``;
    flat: too small a ``max_lr``). ``stopped``: why the test ended early, if it did."""
    smoothed = smooth(losses)
    window = judged_window(len(losses), settings["num_steps"], smoothed)
    count = window.stop - window.start
    min_lr, max_lr = settings["min_lr"], settings["max_lr"]
    smaller = f"lr_find.min_lr={min_lr / 100:.2g}"
    if count < MIN_POINTS:
        if stopped is None:  # num_steps is checked before training: not reached from lr_find
            raise ConfigError(_too_few_steps(settings["num_steps"]))
        raise RangeTestFailed(
            f"the loss diverged from the start: after {len(losses)} steps (lr {min_lr:.3g} "
            f"to {lrs[len(losses) - 1]:.3g}) {stopped}, leaving {max(count, 0)} of the "
            f"{MIN_POINTS} losses a suggestion needs; the learning rates were too large "
            f"from the first one on: set a smaller lr_find.min_lr (e.g. {smaller})"
        )
    judged = smoothed[window]
    first, lowest = float(judged[0]), float(judged.min())
    if not lowest < (1 - FELL) * first:
        if stopped is not None or judged[-1] > (1 + FELL) * first:
            raise RangeTestFailed(
                f"the loss never fell: the smoothed loss rose from {first:.3g} at lr "
                f"{lrs[window.start]:.2g} on"
                + (f" and {stopped}" if stopped else f" to {judged[-1]:.3g}")
                + f"; the learning rates were too large from the first one on: set a "
                f"smaller lr_find.min_lr (e.g. {smaller})"
            )
        raise RangeTestFailed(
            f"the loss never fell: between lr {lrs[window.start]:.2g} and "
            f"{lrs[window.stop - 1]:.2g} the smoothed loss stayed within {FELL:.0%} of "
            f"{first:.3g} (lowest {lowest:.3g}); the learning rates were too small to learn "
            f"in {settings['num_steps']} steps: set a larger lr_find.max_lr (e.g. "
            f"lr_find.max_lr={max_lr * 100:g}), or check that the model can learn these data"
        )
    return suggest(lrs[window], judged), window


def _too_few_steps(num_steps) -> str:
    return (
        f"lr_find.num_steps={num_steps}: too few steps for a range test; the suggestions "
        f"leave out the first 10 % and the last {SKIP_END} losses (as fastai does) and need "
        f"{MIN_POINTS} more, so at least {MIN_STEPS} steps: set lr_find.num_steps=100 "
        "(a smaller data.batch_size gives more, differing steps per epoch)"
    )


def _rounded(lr: float) -> float:
    """Two significant digits: what a range test can tell apart, and what is printed."""
    return float(f"{float(lr):.2g}")


def lr_text(lr: float) -> str:
    """A learning rate as an override's value: ``0.0035``, ``3.5e-05``."""
    return f"{lr:.2g}"


# -- the range test ------------------------------------------------------------------------


@dataclass
class RangeTest:
    """What :func:`range_test` recorded: the lr and raw loss of every step taken, why it
    stopped early (None: it took every step), its time and the epochs it passed over."""

    lrs: np.ndarray
    losses: np.ndarray
    stopped: str | None
    seconds: float
    epochs: float


def range_test(module, datamodule, settings: dict, device=None) -> RangeTest:
    """Train ``module`` for ``settings["num_steps"]`` steps at exponentially growing
    learning rates and record each step's loss; stop when the smoothed loss passes
    :data:`STOP_FACTOR` times its lowest, or the loss is NaN or infinite.

    The step is the run's own (as :meth:`SupervisedModule.training_step` takes it): its
    net and loss on the datamodule's training batches in the run's per-epoch order, its
    optimizer (built fresh from the module's config, with the same fused kernel, the
    learning rate set before every step) and its gradient clipping. ``module``'s weights and mode are put back afterwards, whatever happens:
    the test leaves no trained weights behind.
    """
    import torch
    from hydra.utils import instantiate

    from dlbasics.training.module import fused_kernel

    device = torch.device(device or "cpu")
    lrs = exponential_lrs(settings["min_lr"], settings["max_lr"], settings["num_steps"])
    saved = {name: value.detach().clone() for name, value in module.state_dict().items()}
    was_training, was_on = module.training, next(module.parameters()).device
    make_optimizer = instantiate(module.hparams.optimizer)
    optimizer = make_optimizer(module.parameters(), **fused_kernel(make_optimizer, module))
    clip = module.hparams.get("gradient_clip_val")
    taken, losses, stopped = [], [], None
    smoother, lowest = Smoother(), math.inf
    started = time.perf_counter()
    epoch, steps_per_epoch = 0, None
    try:
        module.to(device).train()
        while stopped is None and len(losses) < len(lrs):
            loader = datamodule.train_dataloader()
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)  # the run's order of this epoch's rows
            steps_this_epoch = 0
            for x, y in loader:
                if len(losses) == len(lrs):
                    break
                steps_this_epoch += 1
                lr = float(lrs[len(losses)])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = x.to(device), y.to(device)
                loss = module.loss_fn(module.net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                optimizer.step()
                value = float(loss.detach())
                taken.append(lr)
                losses.append(value)
                if not math.isfinite(value):
                    stopped = f"the loss became {value} at lr {lr:.3g}"
                    break
                smoothed = smoother.add(value)
                lowest = min(lowest, smoothed)
                if smoothed > STOP_FACTOR * lowest:
                    stopped = (
                        f"the smoothed loss passed {STOP_FACTOR:g}x its lowest "
                        f"({lowest:.3g} -> {smoothed:.3g}) at lr {lr:.3g}"
                    )
                    break
            if steps_this_epoch == 0:
                raise DataError("lr_find: the training split served no batches")
            if steps_per_epoch is None:
                steps_per_epoch = len(loader) if hasattr(loader, "__len__") else steps_this_epoch
            epoch += 1
    finally:
        module.load_state_dict(saved)
        module.to(was_on).train(was_training)
        module.zero_grad(set_to_none=True)
    return RangeTest(
        np.array(taken),
        np.array(losses),
        stopped,
        time.perf_counter() - started,
        len(losses) / steps_per_epoch if steps_per_epoch else 0.0,
    )


def device_for(cfg):
    """Where the run would train: a CUDA GPU for ``trainer.accelerator`` gpu/cuda/auto
    when one is visible (as :mod:`dlbasics.training.size` decides), an Apple GPU for mps, else the
    CPU. The test runs in this process on one device (the first GPU)."""
    import torch

    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    mps = getattr(torch.backends, "mps", None)
    if accelerator in ("mps", "auto") and mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# -- what lr_find returns ------------------------------------------------------------------


class LrFinding:
    """A finished range test: ``curve`` (a DataFrame: ``lr``, ``loss``, ``smoothed_loss``
    and ``judged``, whether the suggestions read that step), ``suggestions`` (by name:
    ``steepest``, ``valley``, ``minimum/10``), ``recommended`` (valley's lr),
    ``figure`` (shows inline), ``command`` (the train command with that lr), ``overrides``
    (the same for :func:`dlbasics.fit`) and ``dir`` (where its files are)."""

    def __init__(
        self,
        directory: Path,
        curve,
        suggestions: dict[str, Suggestion],
        command: str,
        overrides: list[str],
        test: RangeTest,
        settings: dict,
    ) -> None:
        from dlbasics.using.run import Figure

        self.dir = directory
        self.curve = curve
        self.suggestions = suggestions
        self.recommended: float = suggestions[RECOMMENDED].lr
        self.command = command
        self.overrides = overrides
        self.stopped = test.stopped
        self.seconds = test.seconds
        self.settings = settings
        self.figure = Figure(directory / "lr_find.png")

    def lines(self) -> list[str]:
        """What the command line prints at the end: one line per suggestion, the
        recommended one and the command."""
        width = max(len(name) for name in self.suggestions)
        lines = [
            f"  {s.name:<{width}}  lr={lr_text(s.lr):<8} {s.how}"
            for s in self.suggestions.values()
        ]
        lines.append(
            f"Recommended: {RECOMMENDED} (fastai's default), optimizer.lr={lr_text(self.recommended)}"
        )
        lines.append(f"Train with: {self.command}")
        return lines

    def __repr__(self) -> str:
        return f"LrFinding({str(self.dir)!r}, recommended={lr_text(self.recommended)})"

    def _repr_html_(self) -> str:
        import base64

        rows = "".join(
            f"<tr><td>{html.escape(s.name)}{' ✔' if s.name == RECOMMENDED else ''}</td>"
            f"<td>{lr_text(s.lr)}</td><td>{html.escape(s.how)}</td></tr>"
            for s in self.suggestions.values()
        )
        picture = base64.b64encode(self.figure._repr_png_()).decode("ascii")
        return (
            f"<p><b>lr_find</b> <code>{html.escape(str(self.dir))}</code></p>"
            "<table><tr><th>suggestion</th><th>lr</th><th>how it is found</th></tr>"
            f"{rows}</table>"
            f'<img src="data:image/png;base64,{picture}" alt="loss against learning rate">'
            f"<p>Recommended: {RECOMMENDED}, optimizer.lr={lr_text(self.recommended)}. "
            f"Train with: <code>{html.escape(self.command)}</code></p>"
        )


def lr_find_figure(curve, suggestions: dict[str, Suggestion], title: str = ""):
    """Loss against learning rate (log axis): each step's loss, the smoothed curve, the
    part the suggestions read, and each suggestion marked and named."""
    from dlbasics.figures.draw import new_figure

    figure = new_figure(size=(6.4, 4.4))
    axes = figure.add_subplot()
    lr, smoothed = curve["lr"].to_numpy(), curve["smoothed_loss"].to_numpy()
    judged = curve["judged"].to_numpy()
    axes.plot(lr, curve["loss"], color="tab:gray", lw=0.8, alpha=0.45, label="loss of each step")
    axes.plot(lr, smoothed, color="tab:blue", lw=1.2, alpha=0.5)
    axes.plot(
        np.where(judged, lr, np.nan),
        np.where(judged, smoothed, np.nan),
        color="tab:blue",
        lw=2.2,
        label=f"smoothed (EMA, β={BETA}); bold: read",
    )
    colours = {"steepest": "tab:orange", "valley": "tab:green", "minimum/10": "tab:red"}
    markers = {"steepest": "v", "valley": "o", "minimum/10": "s"}
    for s in suggestions.values():
        colour = colours.get(s.name, "black")
        axes.axvline(s.lr, color=colour, ls="--", lw=1, alpha=0.8)
        label = f"{s.name}: {lr_text(s.lr)}" + (" (recommended)" if s.name == RECOMMENDED else "")
        axes.plot(s.lr, s.loss, markers.get(s.name, "o"), color=colour, ms=9, label=label, zorder=5)
    # From the lowest loss of any step to a little above where the curve starts; the
    # losses of a diverging end are cut off at the top.
    raw = curve["loss"].to_numpy()
    finite = np.isfinite(smoothed) & np.isfinite(raw)
    if finite.any():
        low = float(min(raw[finite].min(), smoothed[finite].min()))
        high = float(smoothed[finite][: max(1, int(finite.sum()) // 2)].max())
        pad = 0.06 * (high - low or abs(high) or 1.0)
        axes.set_ylim(low - pad, high + 3 * pad)
    axes.set_xscale("log")
    axes.set(xlabel="learning rate (log scale)", ylabel="training loss", title=title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return figure


# -- lr_find -------------------------------------------------------------------------------


def lr_find(
    *overrides: str,
    root_dir: str | Path | None = None,
    config_dir: str | Path | Sequence[str | Path] | None = None,
    **unknown,
) -> LrFinding:
    """A learning-rate range test of the run ``overrides`` describe (the words of
    ``python -m dlbasics.train``), printed and returned as an :class:`LrFinding`.

    ``root_dir``: where ``outputs/`` goes (default: the current directory); ``config_dir``:
    your own config folders, as for :func:`dlbasics.fit`. A mistake, or a curve that gives
    no learning rate, raises a :class:`~dlbasics.errors.DlbasicsError` whose message is the
    line the command line prints.
    """
    from dlbasics.api import _check_call, _config_dirs, _root, importable_from_cwd

    words = _check_call("lr_find", overrides, unknown)
    config_dirs = _config_dirs(config_dir)
    composed = [*([f"paths.root_dir={_root(root_dir)}"] if root_dir is not None else []), *words]
    with importable_from_cwd():
        return _lr_find(words, composed, config_dirs)


def _lr_find(words: list[str], composed: list[str], config_dirs: list[str]) -> LrFinding:
    from dlbasics.config.checks import compose_config, parse_overrides, with_search_path
    from dlbasics.config.prechecks import check_command_line

    for word, override in zip(words, parse_overrides(words), strict=True):
        if override.is_sweep_override():
            raise ConfigError(f"{word}: several values make a sweep; lr_find tests one run")
        if word.partition("=")[0].lstrip("+~") in ("resume", "ckpt_path"):
            raise ConfigError(
                f"{word}: lr_find tests a new run from its initial weights; leave it out"
            )
    check_command_line(composed, config_dirs, multirun=False)
    cfg = compose_config(with_search_path(composed, config_dirs))
    settings = check_settings(cfg)

    from dlbasics.api import _process_settings_kept

    with _process_settings_kept(), _random_state_kept():
        test, datamodule, module = _run_test(cfg, settings)
    suggestions, window = judge(test.lrs, test.losses, settings, test.stopped)
    directory = _output_dir(cfg)
    command, train_words = train_command(words, config_dirs, suggestions[RECOMMENDED].lr)
    found = _save(directory, test, window, suggestions, command, train_words, settings, module)
    _say_done(found, test)
    return found


def check_settings(cfg) -> dict:
    """``lr_find.min_lr``, ``max_lr`` and ``num_steps``, checked (one line naming the key)."""
    given = {**DEFAULTS, **(cfg.get("lr_find") or {})}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"lr_find.{unknown[0]}: no such key; lr_find takes "
            + ", ".join(f"lr_find.{key}" for key in DEFAULTS)
        )
    for key in ("min_lr", "max_lr"):
        value = given[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"lr_find.{key}={value}: must be a number above 0 (e.g. 1e-6)")
    if not given["max_lr"] > given["min_lr"]:
        raise ConfigError(
            f"lr_find.max_lr={given['max_lr']} must be above lr_find.min_lr={given['min_lr']} "
            "(e.g. lr_find.min_lr=1e-6 lr_find.max_lr=1)"
        )
    steps = given["num_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ConfigError(f"lr_find.num_steps={steps}: must be a whole number (e.g. 100)")
    if steps < MIN_STEPS:
        raise ConfigError(_too_few_steps(steps))
    return {"min_lr": float(given["min_lr"]), "max_lr": float(given["max_lr"]), "num_steps": steps}


def _run_test(cfg, settings: dict):
    """Seed, data, model as :func:`dlbasics.training.train.train` makes them, then the test."""
    import lightning.pytorch as pl
    import torch

    from dlbasics.training.builders import build
    from dlbasics.training.threads import choose_threads
    from dlbasics.training.train import build_module, set_matmul_precision

    pl.seed_everything(cfg.seed, verbose=False)  # the run's own initial weights
    set_matmul_precision(cfg)
    datamodule = build(cfg.data, "data")
    datamodule.setup()
    module = build_module(cfg, datamodule)
    device = device_for(cfg)
    # The run's own thread choice (trainer.threads), so the steps cost what the run's do.
    threads, _ = choose_threads(
        cfg.trainer.get("threads", "auto"), module.net, datamodule, device.type == "cuda"
    )
    torch.set_num_threads(threads)
    rows = datamodule.rows()["train"]
    batch = datamodule.batch_size or rows
    net = type(module.net).__name__
    optimizer = str(module.hparams.optimizer.get("_target_", "?")).rsplit(".", 1)[-1]
    print(
        f"Range test: {settings['num_steps']} steps of {net} with {optimizer}, lr "
        f"{settings['min_lr']:g} to {settings['max_lr']:g} (exponential), on "
        f"{rows} training rows in batches of {batch}"
        + (" (full batch)" if not datamodule.batch_size else "")
        + (f", on {device}" if device.type != "cpu" else ""),
        flush=True,
    )
    return range_test(module, datamodule, settings, device), datamodule, module


def _say_done(found: LrFinding, test: RangeTest) -> None:
    epochs = f"{test.epochs:.2f}" if test.epochs < 10 else f"{test.epochs:.0f}"
    ending = f"stopped after {len(test.losses)} steps: {test.stopped}" if test.stopped else (
        f"{len(test.losses)} steps"
    )
    print(
        f"Range test done in {test.seconds:.1f} s ({ending}; {epochs} epochs). "
        f"Suggestions, from the smoothed loss:"
    )
    for line in found.lines():
        print(line)
    print(f"Figure: {_shown(found.figure.path)} (curve: lr_find.csv beside it)", flush=True)


def train_command(words: list[str], config_dirs: list[str], lr: float) -> tuple[str, list[str]]:
    """``python -m dlbasics.train <overrides> optimizer.lr=<lr>`` and its overrides: the
    user's own, without ``lr_find.*`` or an earlier ``optimizer.lr``."""
    kept = [
        word
        for word in words
        if not word.partition("=")[0].lstrip("+~").startswith("lr_find.")
        and word.partition("=")[0].lstrip("+~") != "optimizer.lr"
    ]
    overrides = [*kept, f"optimizer.lr={lr_text(lr)}"]
    flags = [part for folder in config_dirs for part in ("--config-dir", folder)]
    command = " ".join(["python -m dlbasics.train", *map(shlex.quote, [*flags, *overrides])])
    return command, overrides


def _output_dir(cfg) -> Path:
    """``<paths.log_dir>/<task_name>/lr_find/<date>_<time>_<pid>``, beside the task's
    ``runs/`` and ``multiruns/`` (``-2``, ``-3``, ... after it if taken)."""
    from dlbasics.api import _free_name
    from dlbasics.config.tree import _stamped

    parent = Path(str(cfg.paths.log_dir)).expanduser() / str(cfg.task_name) / "lr_find"
    name = _stamped(str(parent.resolve()))
    return Path(_free_name(name) if Path(name).exists() else name)


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it lies inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _save(directory, test, window, suggestions, command, train_words, settings, module):
    """The curve (``lr_find.csv``), the figure (``lr_find.png``) and the suggestions
    (``lr_find.json``), each written to a temporary name and renamed."""
    import pandas as pd

    curve = pd.DataFrame(
        {"lr": test.lrs, "loss": test.losses, "smoothed_loss": smooth(test.losses)}
    )
    curve.index.name = "step"
    curve["judged"] = (curve.index >= window.start) & (curve.index < window.stop)
    directory.mkdir(parents=True, exist_ok=True)
    net = type(module.net).__name__
    figure = lr_find_figure(curve, suggestions, title=f"lr_find: {net}, {len(curve)} steps")
    _written(directory / "lr_find.csv", lambda path: curve.to_csv(path))
    _written(directory / "lr_find.png", lambda path: figure.savefig(path, format="png"))
    record = {
        "settings": settings,
        "steps": len(curve),
        "stopped": test.stopped,
        "seconds": round(test.seconds, 3),
        "suggestions": {name: asdict(s) for name, s in suggestions.items()},
        "recommended": {"name": RECOMMENDED, "lr": suggestions[RECOMMENDED].lr},
        "command": command,
        "overrides": train_words,
    }
    _written(directory / "lr_find.json", lambda path: path.write_text(json.dumps(record, indent=2) + "\n"))
    return LrFinding(directory, curve, suggestions, command, train_words, test, settings)


def _written(path: Path, write) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    write(staging)
    os.replace(staging, path)


class _random_state_kept:
    """The process's random state (Python, NumPy, torch) and ``PL_GLOBAL_SEED`` as they
    were: seeding the test's model must not change what a notebook draws next."""

    def __enter__(self):
        from lightning.pytorch.utilities.seed import isolate_rng

        self._seed = os.environ.get("PL_GLOBAL_SEED")
        self._isolated = isolate_rng()
        self._isolated.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._isolated.__exit__(*exc)
        if self._seed is None:
            os.environ.pop("PL_GLOBAL_SEED", None)
        else:
            os.environ["PL_GLOBAL_SEED"] = self._seed


# -- the command line ----------------------------------------------------------------------


def main(argv: list[str]) -> None:
    """``python -m dlbasics.lr_find [--config-dir DIR] [overrides]``."""
    words, config_dirs = [], []
    rest = iter(argv)
    for word in rest:
        flag, _, value = word.partition("=")
        if flag in ("--config-dir", "-cd"):
            config_dirs.append(value or next(rest, ""))
        elif word.startswith("-"):
            raise ConfigError(
                f"lr_find: {word} is not taken; it takes the overrides of a run, "
                "--config-dir DIR and --help"
            )
        else:
            words.append(word)
    lr_find(*words, config_dir=config_dirs or None)


def cli(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m dlbasics.lr_find`` and ``dlbasics-lr-find``: ``--help``,
    one-line errors (exit 2 for a setting, 1 for a curve that gives no lr), Ctrl-C."""
    from dlbasics.cli.commands import run

    run(main, USAGE, argv)
