"""Which runs a stacked run (``seeds=[...]``, ``members.lr=[...]``) holds, read from its
config without torch: the command line's checks, the run and its summary all use it."""

from __future__ import annotations

import itertools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

SEEDS_KEY = "seeds"
# members.<key> sets optimizer.<key> of each setting.
PER_MEMBER = ("lr", "weight_decay", "momentum")


def varied(cfg: DictConfig) -> dict[str, list]:
    """The ``members.*`` lists that are set: ``{"lr": [0.001, 0.01]}``."""
    members = cfg.get("members") or {}
    return {key: list(members[key]) for key in PER_MEMBER if members.get(key) is not None}


def is_stacked(cfg: DictConfig) -> bool:
    """Whether ``cfg`` trains several members as one run."""
    return cfg.get(SEEDS_KEY) is not None or bool(varied(cfg))


def seeds_of(cfg: DictConfig) -> list:
    """The members' seeds: ``seeds``, or the run's own ``seed`` when only values vary."""
    seeds = cfg.get(SEEDS_KEY)
    return list(seeds) if seeds is not None else [cfg.seed]


def member_settings(cfg: DictConfig) -> list[dict]:
    """Each member's own values, in the order of its folder: every setting of the
    ``members`` lists (the first list varying slowest), and within it every seed.
    ``[{"seed": 0, "lr": 0.01}, {"seed": 1, "lr": 0.01}, ...]``."""
    lists = varied(cfg)
    settings = [
        dict(zip(lists, values, strict=True)) for values in itertools.product(*lists.values())
    ]
    return [{"seed": seed, **setting} for setting in settings for seed in seeds_of(cfg)]


def as_member(config: DictConfig, settings: dict) -> DictConfig:
    """``config`` (a run's, or its saved ``.hydra/config.yaml``) as a member's: its own
    ``seed`` and optimizer values, no ``seeds`` or ``members`` lists."""
    member = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    member.seed = int(settings["seed"])
    member[SEEDS_KEY] = None
    for key in PER_MEMBER:
        if "members" in member:
            member.members[key] = None
        if key in settings:
            member.optimizer[key] = float(settings[key])
    return member


def member_config(cfg: DictConfig, index: int, run_dir: Path, settings: dict) -> DictConfig:
    """Member ``index``'s config: the run's, with its own values and directory."""
    member = as_member(cfg, settings)
    member.paths.output_dir = str(run_dir / str(index))
    return member


def member_record(record: tuple[dict, list[str]], settings: dict) -> tuple[dict, list[str]]:
    """The stacked run's choices and overrides (:func:`dlbasics.config.tree.run_record`)
    as a member's own."""
    choices, overrides = record
    return choices, member_overrides(overrides, settings)


def member_overrides(overrides: list[str], settings: dict) -> list[str]:
    """The stacked run's overrides as a member's own: ``seeds=[...]`` becomes ``seed=<s>``
    and ``members.lr=[...]`` ``optimizer.lr=<v>``, first, so that the member's TensorBoard
    name (cut at a length) shows them."""

    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    own = [f"optimizer.{k}={v}" for k, v in settings.items() if k != "seed"]
    replaced = {SEEDS_KEY, "seed", *(o.split("=")[0] for o in own)}
    kept = [o for o in overrides if key(o) not in replaced and not key(o).startswith("members")]
    return [*own, f"seed={settings['seed']}", *kept]


def write_member_hydra_dir(run_dir: Path, member_dir: Path, settings: dict) -> None:
    """``<member>/.hydra/``: what Hydra wrote for the run, as a job of a multirun over the
    seed would have it (its seed, overrides and output directory)."""
    source, target = run_dir / ".hydra", member_dir / ".hydra"
    target.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(as_member(OmegaConf.load(source / "config.yaml"), settings), target / "config.yaml")
    overrides = (
        [str(o) for o in OmegaConf.load(source / "overrides.yaml")]
        if (source / "overrides.yaml").is_file()
        else []
    )
    overrides = member_overrides(overrides, settings)
    OmegaConf.save(OmegaConf.create(overrides), target / "overrides.yaml")
    if (source / "hydra.yaml").is_file():
        hydra = OmegaConf.load(source / "hydra.yaml")
        hydra.hydra.runtime.output_dir = str(member_dir)
        hydra.hydra.overrides.task = overrides
        OmegaConf.save(hydra, target / "hydra.yaml")
