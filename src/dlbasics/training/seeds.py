"""``seeds=[0,1,2,3,4]``: K runs that differ only in their seed, trained as one vectorised run.

A seed sweep (``-m seed=0,1,2,3,4``) pays K whole runs, although the course's nets are
launch-bound and K stacked copies cost little more per step than one
(:mod:`dlbasics.training.stacked`). Here the K *members* are trained in one process, one
loop, one optimizer over stacked weights:

* member ``k`` starts from the weights its own run with seed ``seeds[k]`` starts from
  (built the same way, under that seed) and takes its training rows in that run's order
  (:class:`~dlbasics.training.batches.MemberBatches`); each member's loss is its own mean,
  the members' losses are summed, so each gradient is the member's own. The optimizers
  dlbasics offers (SGD, Adam, AdamW, RMSprop) act on each weight on its own, so each member
  takes its own run's steps, up to float rounding. Dropout draws its masks from one random
  stream for all members, so with dropout a member ends near, not at, its own run.
* every member is a complete run directory, ``<run dir>/<k>/``, as a job of a multirun is:
  ``.hydra/`` with that member's ``seed``, its checkpoints, ``history.csv``, TensorBoard
  events, figures and metrics. TensorBoard, ``evaluate``/``predict``/``export``, ``resume=``
  and ``dlbasics.load`` treat each as an ordinary run; the seeds run itself is summarised
  as a sweep (:func:`dlbasics.search.sweeps.summarize`: each metric's mean and standard
  deviation), which ``dlbasics.load_sweep`` reads.

Members may also differ in their optimizer's ``lr``, ``weight_decay`` or ``momentum``
(``members.lr=[...]``, every value with every seed, :mod:`dlbasics.config.members`); their
steps are then :class:`~dlbasics.training.member_optimizer.MemberOptimizer`'s.

The members' own callbacks (best and last checkpoints, best epoch, history, figures) are
dlbasics' ordinary ones. :class:`Members` calls their hooks with a :class:`MemberTrainer`,
which shows them the member's metrics, loggers and checkpoints in place of the seeds run's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F

from dlbasics.config.members import (
    member_config,
    member_record,
    member_settings,
    varied,
    write_member_hydra_dir,
)
from dlbasics.errors import ConfigError, TrainingDiverged
from dlbasics.training.batches import Batch, Chunk
from dlbasics.training.module import SupervisedModule
from dlbasics.training.stacked import stack_nets, view_member

log = logging.getLogger("dlbasics")


class SeedsModule(SupervisedModule):
    """:class:`~dlbasics.training.module.SupervisedModule` over K stacked members.

    Its hyperparameters are one member's, so a member's checkpoint is an ordinary one.
    Per epoch it keeps each member's metrics in :attr:`member_metrics` and logs their mean
    with ``self.log_dict`` (what the progress bar shows).
    """

    trains_chunks = True  # its training_step takes the fast path's chunks too

    def __init__(
        self,
        nets: list[torch.nn.Module],
        seeds: list[int],
        member_values: dict[str, list[float]] | None = None,
        **hparams: Any,
    ) -> None:
        super().__init__(**hparams)
        self.member_seeds = list(seeds)  # the datamodule serves each member its own order
        # optimizer.<key> of each member where they differ (members.lr=[...]), else {}
        self.member_values = dict(member_values or {})
        self.net = stack_nets(nets)
        self.member_metrics: list[dict[str, torch.Tensor]] = [{} for _ in seeds]

    def configure_optimizers(self) -> Any:
        """The run's optimizer over the stacked weights (fused where torch has a kernel);
        where members differ in its values, :class:`MemberOptimizer` with each one's own."""
        if not self.member_values:
            return super().configure_optimizers()
        from hydra.utils import instantiate

        from dlbasics.training.member_optimizer import MemberOptimizer

        template = instantiate(self.hparams.optimizer)(self.parameters())  # its settings
        return MemberOptimizer(
            self.parameters(), type(template).__name__, template.defaults, self.member_values
        )

    def member_learning_rate(self, index: int) -> float:
        """Member ``index``'s learning rate now."""
        optimizer = self.optimizers().optimizer
        if hasattr(optimizer, "member_value"):
            return optimizer.member_value("lr", index)
        return optimizer.param_groups[0]["lr"]

    @property
    def members(self) -> int:
        return len(self.member_seeds)

    @property
    def example_input_array(self) -> torch.Tensor:
        return torch.zeros(self.members, 1, *self.hparams.input_shape, device=self.device)

    def _member_losses(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each member's mean loss, ``[K]``: what its own run would minimise."""
        if self.task == "classification":
            losses = F.cross_entropy(prediction.flatten(0, 1), target.flatten(), reduction="none")
            return losses.view(self.members, -1).mean(dim=1)
        return F.mse_loss(prediction, target, reduction="none").flatten(1).mean(dim=1)

    def training_step(self, batch: Batch | Chunk, batch_idx: int) -> None:
        if isinstance(batch, Chunk):
            return self.train_on_chunk(batch, batch_idx)
        x, y = batch  # [K, rows, ...]
        optimizer = self.optimizers()
        prediction = self.net(x)
        losses = self._member_losses(prediction, y)
        optimizer.zero_grad(set_to_none=True)
        # The sum's gradient for each member's weights is that member's own.
        self.manual_backward(losses.sum())
        if self.hparams.gradient_clip_val:
            self._clip_each_member(self.hparams.gradient_clip_val)
        optimizer.step()
        self._step_losses.append(losses.detach())
        self._step_outputs.append((prediction.detach(), y))
        self._step_rows.append(x.shape[1])
        return None

    def _clip_each_member(self, max_norm: float) -> None:
        """``clip_grad_norm_`` of each member's own gradients, as its own run clips them."""
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        norms = torch.stack([g.flatten(1).double().square().sum(dim=1) for g in grads])
        scale = (max_norm / (norms.sum(dim=0).sqrt() + 1e-6)).clamp(max=1.0).float()
        for grad in grads:
            grad.mul_(scale.view(-1, *[1] * (grad.dim() - 1)))

    def on_train_epoch_end(self) -> None:
        losses = torch.stack(self._step_losses).double()  # [steps, K]
        rows = torch.tensor(self._step_rows, dtype=losses.dtype, device=losses.device)
        predictions = torch.cat([p for p, _ in self._step_outputs], dim=1)
        targets = torch.cat([t for _, t in self._step_outputs], dim=1)
        self._step_outputs = []
        scores = torch.stack(
            [self._score(predictions[k], targets[k]).double().reshape(-1) for k in range(self.members)]
        )
        totals = torch.cat([(losses * rows[:, None]).sum(dim=0)[:, None], scores], dim=1).cpu()
        count = int(rows.sum())
        for k, seed in enumerate(self.member_seeds):
            learning_rate = self.member_learning_rate(k)
            if not math.isfinite(float(totals[k, 0])):
                try:
                    self._diverged(losses[:, k].cpu(), learning_rate)
                except TrainingDiverged as error:
                    raise TrainingDiverged(f"member {k} (seed {seed}): {error}") from None
            score = totals[k, 1] if self.task == "classification" else totals[k, 1:]
            self.member_metrics[k].update(
                {
                    "train/loss": totals[k, 0] / count,
                    **self._train_metrics(score, count),
                    "train/lr": torch.tensor(learning_rate),
                }
            )
        self._log_epoch(self._mean("train/"))
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # ReduceLROnPlateau is refused (one member's plateau)
            scheduler.step()

    def _mean(self, prefix: str) -> dict[str, torch.Tensor]:
        """The members' mean of each metric starting with ``prefix``."""
        names = [name for name in self.member_metrics[0] if name.startswith(prefix)]
        return {
            name: torch.stack([m[name].double() for m in self.member_metrics]).mean()
            for name in names
        }

    # -- evaluation: every member on the same rows ---------------------------------------

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        self._evaluated.append((self.net(x.expand(self.members, *x.shape)), y))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # Lightning drops the sanity check's metrics
            self._evaluated = []
        else:
            self._score_members("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._score_members("test")

    def _score_members(self, stage: str) -> None:
        if not self._evaluated:
            return
        predictions = torch.cat([p for p, _ in self._evaluated], dim=1)
        targets = torch.cat([t for _, t in self._evaluated])
        self._evaluated = []
        per_member = [self.evaluation_metrics(predictions[k], targets) for k in range(self.members)]
        values = torch.stack(
            [torch.stack([v.detach().double() for v in m.values()]) for m in per_member]
        ).cpu()  # one wait
        for k, metrics in enumerate(per_member):
            self.member_metrics[k].update(
                {f"{stage}/{name}": values[k, i] for i, name in enumerate(metrics)}
            )
        self._log_epoch(self._mean(f"{stage}/"))

    def load_members(self, states: list[dict[str, torch.Tensor] | None]) -> None:
        """Put each member's weights (a member's ``state_dict`` without ``net.``, or None to
        keep its current ones) into the stacked net."""
        with torch.no_grad():
            for name, tensor in self.net.state_dict().items():
                for k, state in enumerate(states):
                    if state is not None:
                        tensor[k].copy_(state[name])


# -- each member's own run directory ------------------------------------------------------


@dataclass
class Member:
    """One member of a seeds run: its seed, run directory, config and what writes it."""

    index: int
    settings: dict  # its seed, and its own optimizer values (members.lr=[...])
    dir: Path
    config: DictConfig
    module: SupervisedModule  # its weights are views of the stacked ones while training
    callbacks: list[pl.Callback] = field(default_factory=list)
    loggers: list = field(default_factory=list)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # as the module measured

    @property
    def seed(self) -> int:
        return int(self.settings["seed"])


class KeptInMemory(TorchCheckpointIO):
    """The seeds run's checkpoint is not written: each member's files are made from it."""

    def __init__(self) -> None:
        self.checkpoint: dict[str, Any] | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options=None) -> None:
        self.checkpoint = checkpoint


def member_checkpoint(checkpoint: dict[str, Any], index: int) -> dict[str, Any]:
    """Member ``index``'s part of the seeds run's checkpoint: its weights and optimizer
    state (the ``index``-th slice of every stacked tensor), the loops and schedulers as
    they are (every member took the same steps), no callback states yet."""
    member = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "callbacks")}
    member["state_dict"] = {n: t[index].clone() for n, t in checkpoint["state_dict"].items()}
    member["optimizer_states"] = [
        {
            "state": {
                key: {
                    name: value[index].clone()
                    if isinstance(value, torch.Tensor) and value.dim() > 0
                    else value
                    for name, value in state.items()
                }
                for key, state in optimizer["state"].items()
            },
            "param_groups": [dict(group) for group in optimizer["param_groups"]],
        }
        for optimizer in checkpoint.get("optimizer_states", [])
    ]
    member["callbacks"] = {}
    return member


class MemberTrainer:
    """What one member's callbacks see of the seeds run's trainer.

    Everything is the seeds run's trainer (epoch, device, datamodule, limits), except what
    is the member's own: ``callback_metrics``, ``loggers``, ``callbacks`` (its own first,
    then the run's), the checkpoint tested (``ckpt_path``) and ``save_checkpoint``, which
    writes the member's part of the run's checkpoint (:func:`member_checkpoint`) with the
    states of the member's own callbacks.
    """

    def __init__(self, trainer: pl.Trainer, member: Member, io: KeptInMemory) -> None:
        self._trainer, self._member, self._io = trainer, member, io
        self.ckpt_path: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        return self._member.metrics

    @property
    def loggers(self) -> list:
        return self._member.loggers

    @property
    def logger(self):
        return self._member.loggers[0] if self._member.loggers else None

    @property
    def callbacks(self) -> list[pl.Callback]:
        return [*self._member.callbacks, *self._trainer.callbacks]

    @property
    def lightning_module(self) -> SupervisedModule:
        return self._member.module

    def save_checkpoint(self, filepath: Any, weights_only: bool = False, storage_options=None):
        self._trainer.save_checkpoint(filepath, weights_only=weights_only)  # kept in memory
        checkpoint = member_checkpoint(self._io.checkpoint, self._member.index)
        # The member's own module and optimizer settings (its lr, where members differ).
        checkpoint["hyper_parameters"] = dict(self._member.module.hparams)
        for optimizer in checkpoint["optimizer_states"]:
            for group in optimizer["param_groups"]:
                group.update({k: v for k, v in self._member.settings.items() if k != "seed"})
        for callback in self._member.callbacks:
            state = callback.state_dict()
            if state:
                checkpoint["callbacks"][callback.state_key] = state
            callback.on_save_checkpoint(self, self._member.module, checkpoint)
        if self._trainer.is_global_zero:
            torch.save(checkpoint, filepath)


class Members(Checkpoint):
    """Calls each member's callbacks with its :class:`MemberTrainer`, and hands its
    metrics to its loggers once per validation and per training epoch.

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so that Lightning calls its
    ``on_train_epoch_end`` after the module's, which measures the epoch's metrics.
    """

    chunk_safe = True  # no per-step hooks

    def __init__(self, members: list[Member], io: KeptInMemory) -> None:
        self.members = members
        self.io = io
        self._views: list[MemberTrainer] = []

    def _each(self, hook: str, trainer: pl.Trainer, *args: Any) -> None:
        if not self._views:
            self._views = [MemberTrainer(trainer, m, self.io) for m in self.members]
        for member, view in zip(self.members, self._views, strict=True):
            for callback in member.callbacks:
                getattr(callback, hook)(view, member.module, *args)

    def _log(self, trainer: pl.Trainer, prefix: str) -> None:
        for member in self.members:
            record = {n: float(v) for n, v in member.metrics.items() if n.startswith(prefix)}
            for logger in member.loggers:
                logger.log_metrics({**record, "epoch": trainer.current_epoch})

    def on_train_start(self, trainer: pl.Trainer, pl_module: SeedsModule) -> None:
        for member in self.members:  # on the run's device now: views of its weights
            member.module.to(pl_module.device)
            view_member(pl_module.net, member.module.net, member.index)
            member.metrics = pl_module.member_metrics[member.index]
        self._each("on_train_start", trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: SeedsModule) -> None:
        self._each("on_train_epoch_start", trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: SeedsModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, "val/")
        self._each("on_validation_end", trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: SeedsModule) -> None:
        self._log(trainer, "train/")
        self._each("on_train_epoch_end", trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: SeedsModule) -> None:
        self._each("on_fit_end", trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: SeedsModule) -> None:
        self._each("on_train_end", trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: SeedsModule, exception) -> None:
        self._each("on_exception", trainer, exception)

    def on_test_end(self, trainer: pl.Trainer, pl_module: SeedsModule) -> None:
        self._log(trainer, "test/")
        self._each("on_test_end", trainer)

    def test_best(self, trainer: pl.Trainer, module: SeedsModule, datamodule) -> None:
        """Test each member's best checkpoint, all at once: the best weights go into the
        stacked net (and so into each member's views), and each member's figures name
        the checkpoint tested."""
        states = []
        for member, view in zip(self.members, self._views, strict=True):
            best = _best_path(member)
            view.ckpt_path = str(best) if best else None
            state = torch.load(best, map_location="cpu", weights_only=False) if best else None
            states.append(
                {n.removeprefix("net."): t for n, t in state["state_dict"].items()}
                if state
                else None
            )
        module.load_members(states)
        trainer.test(module, datamodule=datamodule, verbose=False)


def _best_path(member: Member) -> Path | None:
    from dlbasics.training.callbacks import BestAndLastCheckpoint

    for callback in member.callbacks:
        if isinstance(callback, BestAndLastCheckpoint) and callback.best_path.is_file():
            return callback.best_path
    return None


# -- the run ------------------------------------------------------------------------------


def build_member(cfg: DictConfig, index: int, own: dict, datamodule, objective, will_test: bool):
    """Member ``index`` of the run: its run directory and config, its net built as its own
    run builds it (under its seed), its loggers and its own callbacks."""
    from dlbasics.config.tree import run_name, run_record
    from dlbasics.training.builders import build, build_callbacks, build_loggers, start_session
    from dlbasics.training.callbacks import BestAndLastCheckpoint, History, TrackBest
    from dlbasics.training.train import build_module

    run_dir = Path(cfg.paths.output_dir)
    config = member_config(cfg, index, run_dir, own)
    member_dir = Path(config.paths.output_dir)
    write_member_hydra_dir(run_dir, member_dir, own)
    for entry in (config.get("logger") or {}).values():  # TensorBoard lists it by its seed
        if entry and OmegaConf.to_container(entry).get("name") == "${dlbasics_run_name:}":
            entry.name = run_name(*member_record(run_record(cfg.paths.output_dir), own))
    pl.seed_everything(own["seed"], verbose=False)  # as its own run: its weights start there
    member = Member(index, own, member_dir, config, build_module(config, datamodule))
    member.loggers = build_loggers(config.logger)
    member.callbacks = [
        c
        for c in build_callbacks(config.callbacks, bool(member.loggers), progress_bar=False)
        if isinstance(c, BestAndLastCheckpoint)
    ]
    member.callbacks += [TrackBest(objective.metric, objective.direction), History(member_dir)]
    if config.get("figures"):
        # The progress figures (TensorBoard's step slider) of the first member only: K
        # times the drawing would cost more than the training of small nets.
        figures = build(
            config.figures, "figures", evaluate_after_fit=not will_test, progress=index == 0
        )
        member.callbacks.append(figures)
    datamodule.save_description(member_dir)
    start_session(member.loggers, config)
    return member


def train_seeds(cfg: DictConfig, show_config: bool = True) -> dict[str, float]:
    """Train ``cfg.seeds`` as one vectorised run; return each final metric's mean over the
    members (each member's own are in its ``metrics.json``)."""

    from dlbasics.search.sweeps import summarize
    from dlbasics.training import report
    from dlbasics.training.builders import build, build_callbacks, end_session, quiet_lightning
    from dlbasics.training.callbacks import BestAndLastCheckpoint, GracefulStop, TrackBest
    from dlbasics.training.objective import choose_objective, objective_settings
    from dlbasics.training.threads import choose_threads
    from dlbasics.training.train import (
        _in_sweep,
        _interrupt_after_training,
        _without,
        fit_until_stopped,
        set_matmul_precision,
    )

    if _in_sweep():  # the command line's checks say so before the sweep starts
        raise ConfigError(
            "-m with seeds= or members.*: a stacked run is a sweep over its members already, "
            "in one process; run it without -m, or sweep the seed: -m seed=0,1,2"
        )
    quiet_lightning()
    report.use_full_width()
    report.log_overrides(cfg)
    if show_config:
        report.print_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    settings = member_settings(cfg)
    seeds = [int(setting["seed"]) for setting in settings]
    set_matmul_precision(cfg)
    pl.seed_everything(seeds[0], verbose=False)
    datamodule = build(cfg.data, "data")
    datamodule.setup("fit")
    objective = choose_objective(datamodule.task, *objective_settings(cfg))
    will_test = bool(cfg.test) and datamodule.has_split("test")

    members = [
        build_member(cfg, index, own, datamodule, objective, will_test)
        for index, own in enumerate(settings)
    ]
    per_member = {key: [own[key] for own in settings] for key in varied(cfg)}
    module = SeedsModule(
        [m.module.net for m in members], seeds, per_member, **members[0].module.hparams
    )

    io = KeptInMemory()
    progress_bar = cfg.trainer.enable_progress_bar
    callbacks = [
        c
        for c in build_callbacks(cfg.callbacks, has_logger=False, progress_bar=progress_bar)
        if not isinstance(c, BestAndLastCheckpoint)  # each member keeps its own
    ]
    relay = Members(members, io)
    stop = next((c for c in callbacks if isinstance(c, GracefulStop)), None)
    no_validation = {} if datamodule.has_split("val") else {"limit_val_batches": 0}
    trainer = build(
        _without(cfg.trainer, "threads"),
        "trainer",
        logger=False,
        callbacks=[*callbacks, relay],
        enable_checkpointing=True,  # the members' checkpoints, through `relay`
        plugins=[io],
        **no_validation,
    )
    threads, why = choose_threads(
        cfg.trainer.get("threads", "auto"),
        members[0].module.net,
        datamodule,
        on_gpu=trainer.strategy.root_device.type == "cuda",
        members=len(seeds),
    )
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%s)", threads, why, extra=report.FILE_ONLY)
    log.info(
        "%d members (%s) trained as one stacked run into %s/<0..%d>",
        len(settings),
        ", ".join(" ".join(f"{k}={v}" for k, v in own.items()) for own in settings),
        run_dir,
        len(settings) - 1,
    )

    fit_until_stopped(
        trainer,
        lambda: trainer.fit(module, datamodule=datamodule),
        stop,
        kept=lambda: _kept(members),
        interrupted=lambda what, signum: _interrupted(run_dir, members, what, signum),
    )

    with _interrupt_after_training(cfg, None, trainer, kept=_kept(members)):
        epochs = trainer.current_epoch
        outcomes = {}
        for member in members:
            tracker = next(c for c in member.callbacks if isinstance(c, TrackBest))
            outcomes[member.index] = tracker.outcome()
            if outcomes[member.index].value is not None:
                for logger in member.loggers:
                    logger.log_metrics(
                        {f"best/{outcomes[member.index].metric}": outcomes[member.index].value},
                        step=epochs,
                    )
        if will_test:
            relay.test_best(trainer, module, datamodule)
        finals = []
        for member in members:
            end_session(member.loggers)
            outcomes[member.index].save(member.dir)
            final = {name: float(value) for name, value in member.metrics.items()}
            report.save_metrics(final, member.dir)
            finals.append(final)
        summarize(run_dir)
    return {name: sum(f[name] for f in finals) / len(finals) for name in finals[0]}


def _kept(members: list[Member]) -> str:
    """Where the members' checkpoints are, for the closing message."""
    if not any(_checkpoints(m) for m in members):
        return "No checkpoint was written."
    return f"Each member's last good checkpoint is kept: {members[0].dir.parent}/<k>/checkpoints/."


def _checkpoints(member: Member) -> list[Path]:
    return sorted((member.dir / "checkpoints").glob("*.ckpt"))


def _interrupted(run_dir: Path, members: list[Member], what: str, signum):
    from dlbasics.errors import RunInterrupted

    error = RunInterrupted(
        f"{what}. {_kept(members)} A member goes on as an ordinary run: "
        f"python -m dlbasics.train resume={run_dir}/0 (members 0..{len(members) - 1})",
        exit_code=128 + signum.value,
    )
    error.keeps_run = any(_checkpoints(m) for m in members)
    return error
