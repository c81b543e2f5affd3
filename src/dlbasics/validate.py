"""Checking the user's overrides and the composed config before anything heavy starts.

Two steps, both free of torch and Lightning imports:

* :func:`check_overrides` composes the command line's overrides the way Hydra will and
  turns Hydra's composition errors into one line: an unknown option lists the group's
  options, an unknown key names the closest valid key.
* :func:`check_config` checks the values of a composed config (learning rate, epochs,
  fractions, sizes, activation, accelerator) and names the key, the value and what works.

Both raise :class:`dlbasics.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from numbers import Number
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from dlbasics.config import CONFIG_DIR, group_options
from dlbasics.errors import ConfigError

ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "elu")  # as in dlbasics.nets
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


# -- overrides -------------------------------------------------------------------------


def check_overrides(overrides: list[str]) -> None:
    """Raise :class:`ConfigError` if the overrides would not compose, or if a config they
    select has a value that cannot work (see :func:`check_config`).

    A sweep (``-m model=linreg,mlp optimizer.lr=0.1,-1``) is checked value by value, so a
    bad value stops the whole sweep before its first job starts.
    """
    try:
        parsed = [o for o in OverridesParser.create().parse_overrides(overrides) if _is_ours(o)]
    except OverrideParseException as error:
        raise ConfigError(f"cannot read the overrides: {error}") from None
    groups = set(group_options())
    for override in parsed:
        if _is_group(override, groups):
            for value in _values(override):
                _check_option(override.get_key_element().lstrip("+~"), value)
    first = [_with_value(override, _values(override)[0]) for override in parsed]
    structure = _compose([o for o, p in zip(first, parsed, strict=True) if _is_group(p, groups)])
    for override in parsed:
        key = override.get_key_element()
        if not _is_group(override, groups) and not key.startswith(("+", "~")):
            check_key_exists(structure, key)
    check_config(_compose(first))
    for index, override in enumerate(parsed):
        for value in _values(override)[1:]:
            variant = [*first[:index], _with_value(override, value), *first[index + 1 :]]
            check_config(_compose(variant))


def _is_ours(override) -> bool:
    """Hydra's own settings and deletions are Hydra's to check."""
    return not override.is_delete() and not override.get_key_element().startswith("hydra")


def _values(override) -> list[str]:
    """The values an override sets: one, or each value of a sweep."""
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def _with_value(override, value: str) -> str:
    if not override.is_sweep_override():
        return override.input_line
    return f"{override.get_key_element()}={value}"


def _is_group(override, groups: set[str]) -> bool:
    return override.get_key_element().lstrip("+~") in groups


def _check_option(group: str, option: str) -> None:
    options = group_options()[group]
    if option not in options and option != "null":
        hint = difflib.get_close_matches(option, options, n=1)
        maybe = f" Did you mean {group}={hint[0]}?" if hint else ""
        raise ConfigError(
            f"{group}={option}: no such option in group '{group}'. "
            f"Available: {', '.join(sorted(options))}.{maybe}"
        )


def check_key_exists(config: DictConfig, key: str) -> None:
    """Raise :class:`ConfigError` naming the closest valid key if ``key`` is not in ``config``."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(config, parent_key, default=None) if parent_key else config
    if isinstance(parent, DictConfig) and name in parent.keys():
        return  # present, possibly still mandatory (???)
    if not isinstance(parent, DictConfig):
        raise ConfigError(f"{key}: no such key ('{parent_key}' holds no keys)")
    keys = [str(k) for k in parent.keys()]
    hint = difflib.get_close_matches(name, keys, n=1, cutoff=0.5)
    where = f"{parent_key}." if parent_key else ""
    maybe = f" Did you mean {where}{hint[0]}?" if hint else f" Valid keys: {', '.join(keys)}."
    raise ConfigError(f"{key}: no such key.{maybe} (Add a new key with +{key}=...)")


def _compose(overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=overrides)
    except MissingConfigException as error:
        raise ConfigError(_first_line(error)) from None
    except ConfigCompositionException as error:
        cause = f" ({_first_line(error.__cause__)})" if error.__cause__ else ""
        raise ConfigError(_first_line(error) + cause) from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0]


# -- values ----------------------------------------------------------------------------


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first key whose value cannot work."""
    _integer_at_least(cfg, "seed", 0)
    _positive_number(cfg, "optimizer.lr")
    _integer_at_least(cfg, "trainer.max_epochs", 1)
    if cfg.data.get("batch_size") is not None:
        _integer_at_least(cfg, "data.batch_size", 1)
    fractions = [_fraction(cfg, f"data.{name}") for name in ("val_fraction", "test_fraction")]
    if sum(fractions) >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {sum(fractions):g} leaves no training "
            "data; their sum must be below 1 (e.g. 0.1 and 0.1)"
        )
    if "noise" in cfg.data:
        _number_at_least(cfg, "data.noise", 0)
    if "n_samples" in cfg.data:
        _integer_at_least(cfg, "data.n_samples", 1)
    model = cfg.model
    for key in ("hidden_sizes", "channels"):
        if key in model:
            _positive_integers(model[key], f"model.{key}")
    if "activation" in model and model.activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation={model.activation}: unknown activation; "
            f"choose one of {', '.join(ACTIVATIONS)}"
        )
    if "kernel_size" in model:
        _integer_at_least(cfg, "model.kernel_size", 1)
    if "dropout" in model:
        dropout = model.dropout
        if not _is_number(dropout) or not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout={dropout}: must be a probability in [0, 1)")
    if cfg.get("gradient_clip_val") is not None:
        _positive_number(cfg, "gradient_clip_val")
    check_ckpt_path(cfg)
    check_callbacks(cfg)
    check_accelerator(cfg)


def check_ckpt_path(cfg: DictConfig) -> None:
    """``ckpt_path`` must name an existing file (its contents are checked once the model exists)."""
    path = cfg.get("ckpt_path")
    if path is None:
        return
    file = Path(str(path)).expanduser()
    if not file.is_file():
        where = "" if file.is_absolute() else f" (read from {Path.cwd()})"
        what = "a directory, not a .ckpt file" if file.is_dir() else "no such file"
        raise ConfigError(
            f"ckpt_path={path}: {what}{where}; give a checkpoint such as "
            "outputs/train/runs/<run>/checkpoints/last.ckpt, or resume=<run dir>"
        )


def check_callbacks(cfg: DictConfig) -> None:
    """Values of the callbacks that Lightning would only trip over mid-run."""
    callbacks = cfg.get("callbacks") or {}
    checkpoint = callbacks.get("checkpoint")
    if checkpoint:
        if checkpoint.get("every_n_epochs") is not None:
            _integer_at_least(cfg, "callbacks.checkpoint.every_n_epochs", 1)
        if checkpoint.get("every_n_seconds") is not None:
            _positive_number(cfg, "callbacks.checkpoint.every_n_seconds")
    if float(cfg.data.get("val_fraction", 0.1) or 0) > 0:
        return
    for name, callback in callbacks.items():
        monitor = str((callback or {}).get("monitor", ""))
        # The checkpoint falls back to the training loss; a monitor of Lightning's does not.
        if name != "checkpoint" and monitor.startswith("val/"):
            raise ConfigError(
                f"callbacks.{name}.monitor={monitor}: data.val_fraction=0 leaves no validation "
                f"split to measure it on; set data.val_fraction=0.1 (or another share), or "
                f"callbacks.{name}.monitor=train/loss"
            )


def check_accelerator(cfg: DictConfig) -> None:
    """One of :data:`ACCELERATORS`; ``gpu`` needs a visible CUDA GPU (imports torch, so last)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"trainer.accelerator={accelerator}: not supported by dlbasics; use one of "
            f"{', '.join(ACCELERATORS)} (auto: a GPU when there is one)"
        )
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator}: no CUDA GPU is visible to PyTorch "
            f"(torch {torch.__version__}). Use trainer.accelerator=cpu or "
            "trainer.accelerator=auto (GPU when there is one)."
        )


def _value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key)


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _positive_number(cfg: DictConfig, key: str) -> None:
    value = _value(cfg, key)
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{key}={value}: must be a number above 0 (e.g. {key}=0.01)")


def _number_at_least(cfg: DictConfig, key: str, minimum: float) -> None:
    value = _value(cfg, key)
    if not _is_number(value) or value < minimum:
        raise ConfigError(f"{key}={value}: must be a number >= {minimum}")


def _integer_at_least(cfg: DictConfig, key: str, minimum: int) -> None:
    value = _value(cfg, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}={value}: must be a whole number >= {minimum}")


def _fraction(cfg: DictConfig, key: str) -> float:
    value = _value(cfg, key)
    if not _is_number(value) or not 0 <= value < 1:
        raise ConfigError(f"{key}={value}: must be a fraction in [0, 1) (0 = no such split)")
    return float(value)


def _positive_integers(values: Iterable, key: str) -> None:
    values = list(values) if not isinstance(values, (str, Number)) else [values]
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if bad:
        raise ConfigError(
            f"{key}={values}: every entry must be a whole number >= 1 (e.g. {key}=[64,64])"
        )
