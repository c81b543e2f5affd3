"""Common mistakes end in one line that says what to type instead."""

from __future__ import annotations

import shlex
import textwrap

import pytest

from conftest import fit_error, run_cli
from dlbasics.config.checks import parse_overrides
from dlbasics.config.prechecks import check_command_line
from dlbasics.errors import ConfigError

TINY = ("model=linreg", "data=linear", "data.n_samples=64", "figures=none", "logger=none")


def precheck_error(*overrides: str, multirun: bool = False) -> str:
    """The one line the checks before any run give for ``overrides``."""
    with pytest.raises(ConfigError) as caught:
        check_command_line(list(overrides), [], multirun=multirun)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_a_key_of_another_option_names_that_option(fit, tmp_path):
    message = fit_error(fit, "data.path=x.csv", "data.target=y", root_dir=tmp_path)
    assert "\n" not in message
    assert message.startswith("data.path: data=moons (the default) has no key 'path'")
    assert "it is a key of data=csv" in message
    assert "e.g. data=csv data.path=x.csv data.target=y" in message
    assert "+data.path" not in message
    assert not (tmp_path / "outputs").exists()
    # Adding it anyway (the advice of old) is refused the same way, not a TypeError later.
    added = precheck_error("+data.path=x.csv", "+data.target=y")
    assert "data=csv data.path=x.csv data.target=y" in added and "+data.path" not in added
    several = precheck_error("model=linreg", "model.dropout=0.1")
    assert "it is a key of model=cnn or model=mlp" in several


def test_quoting_hints_show_a_form_hydra_reads():
    tilde = precheck_error("data.path=~/x.csv")
    assert "type 'data.path=\"~/x.csv\"'" in tilde
    split_list = precheck_error("data=csv", "data.drop=[Unnamed:", "0]")
    assert "quote the whole override: \"data.drop=['Unnamed: 0']\"" in split_list
    split_path = precheck_error("data=csv", "data.path=my", "file.csv", "data.target=y")
    assert "the shell split 'data.path=my file.csv' into 2 words" in split_path
    assert "'data.path=my file.csv'" in split_path
    # What the messages say to type is one shell word that Hydra reads as meant.
    for message, before, value in (
        (tilde, "; type ", "~/x.csv"),
        (split_list, "override: ", ["Unnamed: 0"]),
        (split_path, "override: ", "my file.csv"),
    ):
        (word,) = shlex.split(message.rsplit(before, 1)[1].split(" (or ")[0])
        (override,) = parse_overrides([word])
        assert override.value() == value


def test_a_whole_number_written_with_an_exponent_says_how_to_write_it():
    message = precheck_error("trainer.max_epochs=1e3")
    assert message.startswith("trainer.max_epochs=1e3: must be a whole number")
    assert "1e3" in message and "decimal number 1000.0" in message
    assert message.endswith("trainer.max_epochs=1000")


def test_one_layer_size_without_brackets_is_refused_before_training():
    message = precheck_error("model.hidden_sizes=64")
    assert message.startswith("model.hidden_sizes=64:")
    assert "model.hidden_sizes=[64]" in message
    assert "model.channels=[16]" in precheck_error("model=cnn", "model.channels=16")


def test_hydra_keys_are_checked_and_template_search_keys_named():
    trials = precheck_error("hydra.sweeper.n_trials=4")
    assert trials.startswith("hydra.sweeper.n_trials=4:")
    assert "hparams_search.n_trials=4" in trials and "hparams_search=optuna" in trials
    seed = precheck_error("hydra.sweeper.sampler.seed=1")
    assert "hparams_search.sampler_seed=1" in seed
    assert "Did you mean hydra.run.dir?" in precheck_error("hydra.run.dri=x")
    check_command_line(["hydra.verbose=true", "hydra.job.chdir=false"], [], multirun=False)


def test_evaluate_names_a_sweeps_jobs_and_takes_a_checkpoint_as_run(fit, tmp_path):
    from dlbasics.using.evaluate import evaluate_run

    sweep = tmp_path / "sweep"
    for number in (0, 1):
        (sweep / str(number) / ".hydra").mkdir(parents=True)
        (sweep / str(number) / ".hydra" / "overrides.yaml").write_text(f"- seed={number}\n")
    with pytest.raises(ConfigError) as caught:
        evaluate_run(str(sweep))
    message = str(caught.value)
    assert message.startswith(f"run={sweep}: a sweep directory; give one of its jobs (0, 1)")
    assert f"run={sweep / '0'}" in message or f"run={sweep / '1'}" in message

    run = fit(*TINY, "trainer.max_epochs=1", root_dir=tmp_path)
    last = run.dir / "checkpoints" / "last.ckpt"
    metrics, model, _, folder = evaluate_run(str(last))
    assert model.checkpoint == last
    assert folder.parent == run.dir / "eval" and "test/loss" in metrics


def test_a_run_dir_holding_other_files_is_refused_before_anything_is_written(fit, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    message = fit_error(fit, *TINY, f"hydra.run.dir={folder}", root_dir=tmp_path)
    assert message == (
        f"hydra.run.dir={folder}: a folder that is not a run and holds other files "
        f"(notes.txt); choose a new or empty directory, e.g. hydra.run.dir={folder / 'run'}"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "outputs").exists()


def test_a_run_dir_deleted_while_training_ends_in_one_line_and_exit_1(tmp_path):
    (tmp_path / "deleter.py").write_text(
        textwrap.dedent(
            """
            import shutil
            from lightning.pytorch.callbacks import Callback

            class Deleter(Callback):
                def __init__(self, run_dir):
                    self.run_dir = run_dir

                def on_train_epoch_end(self, trainer, pl_module):
                    shutil.rmtree(self.run_dir)
            """
        )
    )
    result = run_cli(
        *TINY[:-1],  # TensorBoard too: its writer must not fail in a thread of its own
        "trainer.max_epochs=3",
        "+callbacks.deleter._target_=deleter.Deleter",
        "+callbacks.deleter.run_dir=${paths.output_dir}",
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("Error:")]
    assert "was removed while the run trained; nothing more of the run could be saved" in line
    assert list((tmp_path / "outputs" / "train" / "runs").iterdir()) == []  # not made again
