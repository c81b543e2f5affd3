"""The config schema: Hydra itself refuses an unknown key or a value of the wrong type, and
dlbasics says so in one line; what a type cannot say is checked in code, each default is
written once, and a user's own option without a schema still works."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import ROOT, run_cli
from dlbasics.config import schema
from dlbasics.config.prechecks import check_command_line
from dlbasics.config.tree import CONFIG_DIR
from dlbasics.errors import ConfigError

OPTIONS = {
    folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
    for folder in CONFIG_DIR.iterdir()
    if folder.is_dir() and folder.name != "hydra"
}
EMPTY = {("scheduler", "none"), ("logger", "none"), ("figures", "none")}


def refusal(*overrides: str, config_dirs=()) -> str:
    """The one line the checks before any run give for ``overrides``."""
    with pytest.raises(ConfigError) as caught:
        check_command_line(list(overrides), list(config_dirs), multirun=False)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("group", "option"),
    [(group, option) for group, options in OPTIONS.items() for option in options],
)
def test_every_option_names_its_schema_and_composes_with_every_key_set(make_config, group, option):
    text = (CONFIG_DIR / group / f"{option}.yaml").read_text()
    named = re.findall(r"^  - /schema_(\w+)@", text, flags=re.MULTILINE)
    inherits = re.search(r"^  - default$", text, flags=re.MULTILINE)
    if group != "experiment" and (group, option) not in EMPTY:
        assert named or inherits, f"{group}/{option}.yaml names no schema"
        assert all(name in schema.SCHEMAS for name in named), named
    cfg = make_config(f"{group}={option}")
    # No key left mandatory (???): each schema field is set by the file or has a default.
    OmegaConf.to_container(cfg, throw_on_missing=True)


@pytest.mark.parametrize(
    ("overrides", "starts", "contains"),
    [
        (["optimizer.lr=fast"], "optimizer.lr=fast: must be a number", "optimizer.lr=0.001"),
        (["model.hidden_sizes=abc"], "model.hidden_sizes=abc: must be a list", "[64,64]"),
        (["model.hidden_sizes=[64,a]"], "model.hidden_sizes=[64,a]: the entry a", "whole number"),
        (["model.hidden_sizes=64"], "model.hidden_sizes=64: must be a list", "=[64]"),
        (["model.hiden_sizes=[8]"], "model.hiden_sizes: no such key", "model.hidden_sizes?"),
        (["seed=1.5"], "seed=1.5: must be a whole number", "seed=42"),
        (["test=maybe"], "test=maybe: must be true or false", "test=true"),
        (["data.batch_size=many"], "data.batch_size=many: must be a whole number", "=32"),
        (["sead=1"], "sead: no such key", "Did you mean seed?"),
        (["callbacks.checkpoint.every_n_epochs=x"], "callbacks.checkpoint.every_n_epochs=x", ""),
        (["~model.dropout"], "~model.dropout: the keys of a model option", "~model +model."),
    ],
)
def test_the_schema_refuses_a_wrong_type_or_key_in_one_line(overrides, starts, contains):
    message = refusal(*overrides)
    assert message.startswith(starts), message
    assert contains in message, message


def test_a_schema_refusal_on_the_command_line_is_exit_2_and_one_line(tmp_path):
    result = run_cli("optimizer.lr=fast", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("Error:")]
    assert line == "Error: optimizer.lr=fast: must be a number, e.g. optimizer.lr=0.001"
    assert not (tmp_path / "outputs").exists()


def test_a_config_file_is_checked_against_the_schema_too(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nmodel:\n  hiden_sizes: [3]\n"
    )
    (tmp_path / "experiment" / "slow.yaml").write_text(
        "# @package _global_\noptimizer:\n  lr: slow\n"
    )
    typo = refusal("experiment=typo", config_dirs=[tmp_path])
    assert typo.startswith("experiment/typo: model.hiden_sizes: no such key"), typo
    assert "Did you mean model.hidden_sizes?" in typo
    slow = refusal("experiment=slow", config_dirs=[tmp_path])
    assert slow.startswith("experiment/slow: optimizer.lr=slow: must be a number"), slow


def test_types_and_names_left_to_code_are_still_refused():
    assert refusal("model.activation=swish") == (
        "model.activation=swish: not one of relu, sigmoid, tanh, leaky_relu, elu"
    )
    assert refusal("float32_matmul_precision=low").endswith("not one of highest, high, medium")
    assert refusal("optimizer.lr=-1").startswith("optimizer.lr=-1: must be a number above 0")


def test_interpolations_partial_null_and_lists_keep_working(make_config):
    cfg = make_config(
        "seed=7", "data.batch_size=null", "ckpt_path=null", "callbacks.progress_bar=null"
    )
    assert cfg.data.shuffle_seed == 7 and cfg.data.batch_size is None
    assert cfg.trainer.default_root_dir == cfg.paths.output_dir
    assert cfg.callbacks.progress_bar is None and cfg.ckpt_path is None
    assert list(cfg.model.hidden_sizes) == [64, 64]
    assert cfg.float32_matmul_precision == "high"  # always there: the schema's key
    optimizer = instantiate(cfg.optimizer)
    assert optimizer.func.__name__ == "Adam" and optimizer.keywords["lr"] == 0.001
    cosine = make_config("scheduler=cosine", "trainer.max_epochs=7")
    assert cosine.scheduler.T_max == 7
    assert OmegaConf.is_interpolation(cosine.scheduler, "T_max")
    added = make_config("+model.bias_init=0.5", "+callbacks.lr_monitor._target_=a.B")
    assert added.model.bias_init == 0.5 and added.callbacks.lr_monitor._target_ == "a.B"


def test_each_data_default_is_written_once(make_config):
    from dlbasics.data import InMemoryDataModule

    defaults = inspect.signature(InMemoryDataModule.__init__).parameters
    for key in ("batch_size", "val_fraction", "test_fraction", "standardize", "stratify"):
        assert defaults[key].default == getattr(schema.Data, key), key
    assert make_config("data=moons").data.val_fraction == schema.Data.val_fraction
    shared = re.compile(r"^(batch_size: 32|val_fraction: 0\.1|test_fraction: 0\.1)\b", re.M)
    repeated = [
        p.name for p in (CONFIG_DIR / "data").glob("*.yaml") if shared.search(p.read_text())
    ]
    assert not repeated, repeated
    points = make_config("data=points").data
    assert (points.val_fraction, points.batch_size, points.standardize) == (0.0, None, False)


def test_one_list_of_activations_and_no_import_circle():
    from dlbasics import nets

    assert list(nets.ACTIVATIONS) == list(schema.ACTIVATIONS)
    probe = textwrap.dedent(
        """
        import sys
        import dlbasics.search.hparams
        assert "dlbasics.config.checks" not in sys.modules, "hparams imports checks"
        import dlbasics.config.checks
        assert not {"torch", "lightning"} & set(sys.modules), "checks import torch"
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_users_own_model_without_a_schema_still_trains(fit, tmp_path):
    (tmp_path / "my_wide.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            class Wide(nn.Module):
                def __init__(self, input_shape, num_outputs, width=8):
                    super().__init__()
                    self.layers = nn.Sequential(
                        nn.Linear(input_shape[0], width), nn.Tanh(), nn.Linear(width, num_outputs)
                    )

                def forward(self, x):
                    return self.layers(x)
            """
        )
    )
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "wide.yaml").write_text("_target_: my_wide.Wide\nwidth: 4\n")
    quick = ("data=linear", "trainer.max_epochs=2", "logger=none", "figures=none")
    run = fit("model=wide", "model.width=6", *quick, config_dir=tmp_path / "my_conf")
    assert type(run.module.net).__name__ == "Wide" and run.module.net.layers[0].out_features == 6
    # Its keys are open (no schema), but a key it lacks is named as before.
    message = refusal("model=wide", "model.widht=6", config_dirs=[tmp_path / "my_conf"])
    assert message.startswith("model.widht: no such key. Did you mean model.width?")
    # A net of one's own on the command line: the option left out, its keys given.
    again = fit("~model", "+model._target_=my_wide.Wide", *quick)
    assert type(again.module.net).__name__ == "Wide"


def test_the_schema_is_in_the_package_and_readme_claims_hold():
    # The schema is registered wherever conf/ is composed: importing dlbasics.config does it.
    probe = (
        "import dlbasics.config.tree\n"
        "from hydra.core.config_store import ConfigStore\n"
        "assert 'schema_model_mlp.yaml' in ConfigStore.instance().repo\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
