"""Which runs a stacked run (``seeds=[...]``, ``members.lr=[...]``) holds, read from its
config without torch: the command line's checks, the run and its summary all use it."""

from __future__ import annotations

import itertools

from omegaconf import DictConfig

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
