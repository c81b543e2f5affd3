"""One optimizer step over stacked weights, with each member's own hyperparameters.

A ``seeds=`` run whose members also differ in ``optimizer.lr``, ``weight_decay`` or
``momentum`` (``members.lr=[...]``) cannot use one torch optimizer: torch takes one value per
parameter group, and a stacked weight holds every member. :class:`MemberOptimizer` does what
torch.optim's SGD, Adam, AdamW and RMSprop do (their single-tensor code, written out), with
those three values as one number per member, broadcast over the member's slice of each
weight. Its state uses torch's names (``step``, ``exp_avg``, ``momentum_buffer``, ...), so a
member's slice of it is the state of that member's own torch optimizer, which resumes it.
A test compares each algorithm, step by step, with torch's on separate members.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

# The values a member may have of its own, and the torch optimizers it is checked against.
PER_MEMBER = ("lr", "weight_decay", "momentum")
ALGORITHMS = ("SGD", "Adam", "AdamW", "RMSprop")


class MemberOptimizer(torch.optim.Optimizer):
    """torch.optim's ``algorithm`` over weights stacked ``[K, ...]``.

    Args:
        params: the stacked weights (their first dimension is the member).
        algorithm: ``"SGD"``, ``"Adam"``, ``"AdamW"`` or ``"RMSprop"``.
        defaults: the torch optimizer's settings (``torch.optim.Adam(...).defaults``), the
            values every member shares (betas, eps, nesterov, alpha, centered, ...).
        members: each member's own ``lr``, ``weight_decay`` or ``momentum`` (K values each);
            a value missing here is the one in ``defaults``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        algorithm: str,
        defaults: dict,
        members: dict[str, Sequence[float]],
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"{algorithm}: one of {', '.join(ALGORITHMS)}")
        unsupported = [k for k in ("amsgrad", "maximize") if defaults.get(k)]
        if unsupported:
            raise ValueError(f"{algorithm} with {unsupported[0]}=True")
        super().__init__(params, dict(defaults))
        self.algorithm = algorithm
        self.members = {name: [float(v) for v in values] for name, values in members.items()}
        self._values: dict[tuple[str, torch.device], torch.Tensor] = {}
        # Whether any member has momentum (decided once: no device read per step).
        self._momentum = any(
            self.member_value("momentum", k) != 0 for k in range(self.count)
        ) if "momentum" in defaults else False

    @property
    def count(self) -> int:
        """The number of members (of the first list of per-member values; 1 if none)."""
        return len(next(iter(self.members.values()), [0]))

    def member_value(self, name: str, index: int) -> float:
        """Member ``index``'s value of ``name`` (its own, or the shared one)."""
        if name in self.members:
            return self.members[name][index]
        return float(self.param_groups[0][name])

    def _per_member(self, name: str, like: torch.Tensor) -> torch.Tensor | float:
        """``name`` for each member, shaped to broadcast over stacked weights like ``like``;
        a plain number where the members share it."""
        group = self.param_groups[0]
        if name not in self.members:
            return group[name]
        key = (name, like.device)
        if key not in self._values:
            self._values[key] = torch.tensor(self.members[name], device=like.device)
        values = self._values[key]
        return values.view(-1, *[1] * (like.dim() - 1)).to(like.dtype)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        for param in (p for p in group["params"] if p.grad is not None):
            lr = self._per_member("lr", param)
            weight_decay = self._per_member("weight_decay", param)
            momentum = self._per_member("momentum", param) if self._momentum else None
            update = getattr(self, f"_{self.algorithm.lower()}")
            update(param, param.grad, self.state[param], group, lr, weight_decay, momentum)
        return loss

    # Each as torch's single-tensor implementation (torch/optim/<name>.py), with ``lr``,
    # ``weight_decay`` and ``momentum`` per member.

    def _sgd(self, param, grad, state, group, lr, weight_decay, momentum) -> None:
        grad = grad + weight_decay * param
        if momentum is not None:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.clone()
            else:
                buffer.mul_(momentum).add_((1 - group["dampening"]) * grad)
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param.sub_(lr * grad)

    def _adam(self, param, grad, state, group, lr, weight_decay, momentum) -> None:
        self._adam_step(param, grad + weight_decay * param, state, group, lr)

    def _adamw(self, param, grad, state, group, lr, weight_decay, momentum) -> None:
        param.mul_(1 - lr * weight_decay)
        self._adam_step(param, grad, state, group, lr)

    def _adam_step(self, param, grad, state, group, lr) -> None:
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        step = float(state["step"])
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        denominator = (state["exp_avg_sq"].sqrt() / bias_correction2_sqrt).add_(group["eps"])
        param.sub_((lr / bias_correction1) * state["exp_avg"] / denominator)

    def _rmsprop(self, param, grad, state, group, lr, weight_decay, momentum) -> None:
        alpha = group["alpha"]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["square_avg"] = torch.zeros_like(param)
            if momentum is not None:
                state["momentum_buffer"] = torch.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(param)
        state["step"] += 1
        grad = grad + weight_decay * param
        square_avg = state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"].lerp_(grad, 1 - alpha)
            average = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            average = square_avg.sqrt()
        average = average.add_(group["eps"])
        if momentum is not None:
            buffer = state["momentum_buffer"].mul_(momentum).add_(grad / average)
            param.sub_(lr * buffer)
        else:
            param.sub_(lr * grad / average)
