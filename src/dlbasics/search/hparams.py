"""Hyperparameter search with Optuna: ``python -m dlbasics.train -m hparams_search=optuna``.

The search is a small Hydra sweeper (``hydra_plugins.dlbasics_sweeper``) on Optuna's
ask-and-tell interface: it asks the study for a trial's values, hands them to Hydra's
launcher as the overrides of one job (so each trial is an ordinary run with its own run
directory, and ``hydra/launcher=joblib`` runs several at once), and tells the study the
job's result: the best epoch's value of the run's objective (:mod:`dlbasics.training.objective`).

Why not hydra-optuna-sweeper: its newest release (1.3.0) pins ``optuna<3``, whose SQLite
storage needs ``sqlalchemy<2`` as well; this module works on current Optuna.

The space is written like the command line's sweeps (Hydra's override grammar), under
``hparams_search.space`` (nested like the config) or as overrides:

* ``interval(a, b)``: a float in [a, b] (whole numbers if the key holds an int now);
  ``tag(log, interval(a, b))`` on a log scale;
* ``choice(a, b, c)`` or ``a,b,c``: one of the values; ``range(a, b[, step])``: whole numbers.

Parsing the space needs no Optuna; running the search imports it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf

from dlbasics.config.tree import changes_what_is_trained
from dlbasics.errors import ConfigError
from dlbasics.training.objective import objective_settings

log = logging.getLogger("dlbasics")

SEARCH_GROUP = "hparams_search"
INTERRUPTED = "interrupted"  # study attribute: trials cut short (not counted in n_trials)
EMPTY_SPACE = (
    "hparams_search: nothing to search; give hparams_search.space entries, or sweeps "
    "such as 'optimizer.lr=tag(log, interval(1e-4, 0.1))'"
)


# -- the space ---------------------------------------------------------------------------


def space_entries(space: Mapping | None, prefix: str = "") -> list[str]:
    """``{"optimizer": {"lr": "interval(0.001, 0.1)"}}`` -> ``["optimizer.lr=interval(0.001, 0.1)"]``.

    An entry set to null (``hparams_search.space.model=null``) is left out of the search."""
    entries = []
    for key, value in (space or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            entries.extend(space_entries(value, name + "."))
        elif value is not None:
            entries.append(f"{name}={value}")
    return entries


@dataclass
class Space:
    """What a search varies (``sweeps``, by key) and what every trial shares (``fixed``)."""

    sweeps: dict[str, Override] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``model.activation=choice(relu,tanh), optimizer.lr=...``, sorted by key."""
        return ", ".join(self.sweeps[key].input_line for key in sorted(self.sweeps))


def parse_space(space: Mapping | None, arguments: list[str]) -> Space:
    """The config's space, then the command line: a sweep on the command line replaces the
    space's entry for its key, a plain value fixes the key (it is no longer searched)."""
    parser = OverridesParser.create()
    result = Space()
    for source, lines in (("hparams_search.space", space_entries(space)), ("", arguments)):
        for line in lines:
            try:
                override = parser.parse_overrides([line])[0]
            except OverrideParseException as error:
                where = f"{source}: " if source else ""
                detail = str(error).strip().splitlines()[0]
                raise ConfigError(f"{where}cannot read '{line}' ({detail})") from None
            key = override.get_key_element()
            if override.is_sweep_override():
                result.sweeps[key] = override
            else:
                result.sweeps.pop(key, None)
                result.fixed.append(line)
    return result


def sweep_values(override: Override) -> list[str]:
    """Values to check a sweep with before anything runs: every choice, or both ends of an
    interval. Raises :class:`ConfigError` for an interval that cannot be searched."""
    key = override.get_key_element()
    if not override.is_interval_sweep():
        if "log" in override.value().tags:
            raise ConfigError(
                f"{override.input_line}: a log scale is for an interval, "
                "e.g. tag(log, interval(1e-4, 0.1)); a choice takes its values as listed"
            )
        return list(override.sweep_string_iterator())
    sweep = override.value()
    low, high = sweep.start, sweep.end
    text = override.input_line or key
    if not low < high:
        raise ConfigError(f"{text}: the lower bound must be below the upper one")
    if "log" in sweep.tags and low <= 0:
        raise ConfigError(f"{text}: a log scale needs bounds above 0")
    return [_number(low), _number(high)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def distribution(override: Override, current):
    """The Optuna distribution of one sweep. ``current`` is the key's value in the config:
    an interval over a key that holds a whole number searches whole numbers."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    log_scale = "log" in override.value().tags
    if override.is_interval_sweep():
        sweep = override.value()
        whole = isinstance(current, int) and not isinstance(current, bool)
        if whole and float(sweep.start).is_integer() and float(sweep.end).is_integer():
            return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    return CategoricalDistribution(list(override.sweep_string_iterator()))


def as_override(key: str, value) -> str:
    """A sampled value as the override of a job (floats keep every digit)."""
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"


# -- the settings of a search --------------------------------------------------------------


@dataclass
class Settings:
    study_name: str
    storage: str
    n_trials: int
    metric: str
    direction: str
    sampler_seed: int | None
    n_startup_trials: int
    parallel_trials: int


def read_settings(config: DictConfig) -> Settings:
    """The ``hparams_search`` node of a sweep's config, with its defaults filled in."""
    search = config[SEARCH_GROUP]
    name = search.get("study_name") or default_study_name(config)
    storage = search.get("storage") or default_storage(config, name)
    metric, direction = objective_settings(config)
    return Settings(
        study_name=str(name),
        storage=str(storage),
        n_trials=int(search.n_trials),
        metric=metric,
        direction=direction,
        sampler_seed=search.get("sampler_seed"),
        n_startup_trials=int(search.get("n_startup_trials", 10)),
        parallel_trials=parallel_trials(config),
    )


def default_study_name(config: DictConfig) -> str:
    """The preset's task name (``mlp_moons``), or ``train-<model>-<data>`` without one,
    where a CSV file is named by its file (``train-mlp-penguins``)."""
    choices = config.hydra.runtime.choices
    if choices.get("experiment"):
        return str(config.task_name)
    data = choices.get("data")
    path = config.data.get("path") if data == "csv" else None
    return f"{config.task_name}-{choices.get('model')}-{Path(path).stem if path else data}"


def default_storage(config: DictConfig, study_name: str) -> str:
    """A SQLite file per study: ``outputs/<task_name>/searches/<study>.db``."""
    folder = Path(config.paths.log_dir) / str(config.task_name) / "searches"
    return f"sqlite:///{(folder / f'{study_name}.db').resolve()}"


def parallel_trials(config: DictConfig) -> int:
    """Trials asked for at once: ``hparams_search.parallel_trials``, or (``auto``) one with
    a launcher that runs one job at a time, and twice joblib's ``n_jobs`` with joblib:
    a batch ends when its slowest trial does, and with two trials per worker a worker
    whose first trial was quick starts another instead of waiting (measured in
    benchmarks/README.md)."""
    chosen = config[SEARCH_GROUP].get("parallel_trials", "auto")
    if chosen not in (None, "auto"):
        return int(chosen)
    workers = joblib_workers(config.hydra.launcher)
    return 2 * workers if workers and workers > 1 else 1


def joblib_workers(launcher: DictConfig) -> int | None:
    """The processes ``hydra/launcher=joblib`` runs jobs in at once (its ``n_jobs``; -1 is
    one per core), or None for another launcher."""
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)


def usable_cores() -> int:
    """The CPU cores this process may run on (a container or ``taskset`` may allow fewer
    than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def search_selected(cfg: DictConfig) -> bool:
    """Whether ``hparams_search=...`` was chosen. A preset may carry a space of its own
    (``hparams_search.space``) without choosing a search: that alone changes nothing."""
    search = cfg.get(SEARCH_GROUP)
    return bool(search) and "n_trials" in search


# -- running it ----------------------------------------------------------------------------


def task_of(data: DictConfig) -> str:
    """The task of a data config, without loading the data where the config says it."""
    task = data.get("task")
    if task in ("classification", "regression"):
        return task
    from dlbasics.data.checks import csv_task

    found = csv_task(data)
    if found:
        return found
    from hydra.utils import instantiate

    return instantiate(data).task  # generated data know their task when built


class Search:
    """One ``-m hparams_search=optuna`` command: open (or continue) the study, run trials
    in batches through Hydra's launcher until the study has ``n_trials``, report the best."""

    def __init__(self, config: DictConfig, launcher, arguments: list[str]) -> None:
        import optuna

        from dlbasics.training.objective import choose_objective

        self.config = config
        self.launcher = launcher
        self.settings = read_settings(config)
        self.space = parse_space(config[SEARCH_GROUP].get("space"), arguments)
        if not self.space.sweeps:
            raise ConfigError(EMPTY_SPACE)
        self.distributions = {
            key: distribution(sweep, OmegaConf.select(config, key, default=None))
            for key, sweep in self.space.sweeps.items()
        }
        self.objective = choose_objective(
            task_of(config.data), self.settings.metric, self.settings.direction
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = self._open_study(optuna)

    def _open_study(self, optuna):
        settings = self.settings
        if settings.storage.startswith("sqlite:///"):
            Path(settings.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        # Opened twice: first to count its trials (creating it if new), then with the
        # sampler, seeded by that count, so a continued search goes on with new values
        # instead of asking again the ones its first command began with.
        study = optuna.create_study(
            study_name=settings.study_name,
            storage=settings.storage,
            direction=self.objective.direction,
            load_if_exists=True,
        )
        seed = settings.sampler_seed
        sampler = optuna.samplers.TPESampler(
            seed=None if seed is None else seed + len(study.get_trials(deepcopy=False)),
            n_startup_trials=settings.n_startup_trials,
            # Trials asked together: each one after the first is told the others are
            # pending (with a pessimistic value), so they are not all sent to one spot.
            constant_liar=settings.parallel_trials > 1,
        )
        study = optuna.load_study(
            study_name=settings.study_name, storage=settings.storage, sampler=sampler
        )
        # A study continued by a later command must be the same search: same objective,
        # same fixed settings, same space. Anything else would mix incomparable trials.
        signature = {
            "metric": self.objective.metric,
            "direction": self.objective.direction,
            "fixed": sorted(f for f in self.space.fixed if changes_what_is_trained(f)),
            "space": {key: repr(dist) for key, dist in sorted(self.distributions.items())},
        }
        earlier = study.user_attrs.get("search")
        if earlier is None:
            study.set_user_attr("search", signature)
        elif earlier != signature:
            changed = [k for k in signature if signature[k] != earlier.get(k)]
            raise ConfigError(
                f"hparams_search.study_name={settings.study_name}: the study in "
                f"{settings.storage} was made by another search ({', '.join(changed)} "
                f"differ: {earlier[changed[0]]!r} then, {signature[changed[0]]!r} now); "
                "continue it with the same command, or name a new study with "
                "hparams_search.study_name=..."
            )
        self._fail_interrupted_trials(study, optuna)
        return study

    @staticmethod
    def _fail_interrupted_trials(study, optuna) -> None:
        """Trials left running by a command that was killed are marked failed (and, like
        an interrupted trial, not counted: the search runs another in its place)."""
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        _interrupted(study, [trial.number for trial in running])
        if running:
            log.info(
                "Trials interrupted by an earlier command, marked failed: %s",
                ", ".join(str(t.number) for t in running),
            )

    def finished(self) -> int:
        """Trials that count towards ``n_trials``: done, or failed by themselves (a diverged
        trial counts; one cut short by Ctrl-C does not)."""
        from optuna.trial import TrialState

        states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        trials = self.study.get_trials(deepcopy=False, states=states)
        interrupted = set(self.study.user_attrs.get(INTERRUPTED, []))
        return sum(1 for trial in trials if trial.number not in interrupted)

    def run(self) -> None:
        """Ask, launch and tell in batches of ``parallel_trials`` until ``n_trials`` count."""
        settings = self.settings
        done = self.finished()
        log.info(
            "Search %s: %d of %d trials done; optimising the best epoch's %s (%s) over %s",
            settings.study_name,
            done,
            settings.n_trials,
            self.objective.metric,
            self.objective.direction,
            self.space.describe(),
        )
        if done >= settings.n_trials:
            log.info("Nothing to run: raise hparams_search.n_trials to search on")
        job_index = 0
        while done < settings.n_trials:
            batch = min(settings.parallel_trials, settings.n_trials - done)
            trials = [self.study.ask(self.distributions) for _ in range(batch)]
            # The trial's own values first: run names (TensorBoard's runs) list overrides
            # in order and are cut at 100 characters, and these tell the trials apart.
            overrides = [
                [*(as_override(k, v) for k, v in trial.params.items()), *self.space.fixed]
                for trial in trials
            ]
            try:
                results = self.launcher.launch(overrides, initial_job_idx=job_index)
            except BaseException as error:  # Ctrl-C, or a job that ended the command
                _interrupted(self.study, [trial.number for trial in trials])
                if isinstance(error, KeyboardInterrupt):
                    raise KeyboardInterrupt(
                        f"interrupted; the study {settings.study_name} keeps its finished "
                        "trials: run the same command again to continue the search"
                    ) from None
                raise
            job_index += len(results)
            for trial, result in zip(trials, results, strict=True):
                self._tell(trial, result)
            done = self.finished()
        self.report()

    def _tell(self, trial, result) -> None:
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        # What the job returned (dlbasics.training.train.job_result), or nothing if it failed.
        job = (result.return_value if result.status == JobStatus.COMPLETED else None) or {}
        run_dir = job.get("run_dir") or _output_dir(result)
        if run_dir:
            trial.set_user_attr("run_dir", str(run_dir))
        best = job.get("value")
        if best is None or not math.isfinite(best):
            self.study.tell(trial, state=TrialState.FAIL)
            log.info("Trial %d failed: %s", trial.number, _failure(run_dir))
            return
        self.study.tell(trial, best)
        log.info(
            "Trial %d: best %s %.6g at epoch %s",
            trial.number,
            self.objective.metric,
            best,
            job.get("epoch"),
        )

    def report(self) -> None:
        """The study's best trial (over every command that worked on it), and its run."""
        from dlbasics.training.report import console, use_full_width

        use_full_width()
        try:
            best = self.study.best_trial
        except ValueError:
            console.print(
                f"Study {self.settings.study_name}: no trial finished; nothing to report."
            )
            return
        params = " ".join(as_override(k, v) for k, v in best.params.items())
        console.print(
            f"Best trial of study [bold]{self.settings.study_name}[/bold] "
            f"({self.finished()} trials): #{best.number}, {self.objective.metric} = "
            f"{best.value:.6g}\n  {params}\n  Run directory: "
            f"[bold]{best.user_attrs.get('run_dir', '?')}[/bold]\n  Study: {self.settings.storage}",
            soft_wrap=True,
        )


def _output_dir(result) -> str | None:
    """The run directory of a job, from the Hydra config it ran with."""
    return OmegaConf.select(result.hydra_cfg or {}, "hydra.runtime.output_dir", default=None)


def _failure(run_dir: str | None) -> str:
    """Why a job failed, as its run directory's ``failed.txt`` says."""
    from dlbasics.config.rundir import failure

    reason = failure(Path(run_dir)) if run_dir else None
    if reason:
        return reason.splitlines()[0]
    return f"see {run_dir}" if run_dir else "no result"


def _interrupted(study, numbers: list[int]) -> None:
    """Mark trials that did not get to finish: failed, and listed in the study's
    ``interrupted`` attribute so that they are not counted."""
    from optuna.trial import TrialState

    if not numbers:
        return
    study.set_user_attr(INTERRUPTED, sorted({*study.user_attrs.get(INTERRUPTED, []), *numbers}))
    for number in numbers:
        study.tell(number, state=TrialState.FAIL)
