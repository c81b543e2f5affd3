"""Hydra's submitit launcher: jobs of a multirun sent to SLURM (submitit_local runs them
here the same way), each job's log findable from its run directory."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from dlbasics.config import checks as validate
from dlbasics.errors import ConfigError


@pytest.mark.slow
def test_submitit_local_runs_every_job_and_links_its_log(tmp_path):
    sweep = tmp_path / "sweep"
    # The README's command, with the plugin's own folder (.submitit/<job id>/).
    done = run_cli("-m", "hydra/launcher=submitit_local", "data=moons", "trainer.max_epochs=3",
                   "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for job in ("0", "1"):
        run = sweep / job
        assert json.loads((run / "metrics.json").read_text())["val/acc"] > 0.8
        log = run / "job.out"  # a link to the file submitit wrote under .submitit/
        assert log.is_symlink() and (sweep / ".submitit") in log.resolve().parents
        assert "Final metrics" in log.read_text()
    assert not (sweep / ".submitit" / "%j").exists()  # no empty folder left behind


def test_a_launcher_without_its_plugin_names_the_extra(monkeypatch):
    monkeypatch.setattr(validate, "_has_module", lambda name: False)
    with pytest.raises(ConfigError, match=r"pip install 'dlbasics\[slurm\]'"):
        validate.check_launcher(["hydra/launcher=submitit_slurm"], multirun=True)


def test_a_launcher_without_a_multirun_says_so():
    with pytest.raises(ConfigError, match="add -m"):
        validate.check_launcher(["hydra/launcher=submitit_local", "seed=1"], multirun=False)
    validate.check_launcher(["hydra/launcher=basic"], multirun=False)  # Hydra's own: fine


def test_a_sweep_of_ddp_jobs_needs_a_cluster_launcher():
    from hydra import compose, initialize_config_dir

    from dlbasics.config.tree import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        ddp = compose("train", overrides=["trainer=ddp", "trainer.accelerator=cpu"])
    with pytest.raises(ConfigError, match="needs hydra/launcher=slurm"):
        validate.check_multirun_processes(["trainer=ddp", "seed=0,1"], [ddp])
    # joblib's workers run on this machine too: a helper would restart the worker, not the job.
    with pytest.raises(ConfigError, match="needs hydra/launcher=slurm"):
        validate.check_multirun_processes(["hydra/launcher=joblib", "trainer=ddp"], [ddp])
    slurm = ["hydra/launcher=slurm", "trainer=ddp"]
    # Lightning stops a job on the cluster whose SLURM tasks per node are not its devices.
    with pytest.raises(ConfigError, match="hydra.launcher.tasks_per_node=2 hydra.launcher.nodes=1"):
        validate.check_multirun_processes(slurm, [ddp])
    validate.check_multirun_processes([*slurm, "hydra.launcher.tasks_per_node=2"], [ddp])


def test_a_copy_of_the_slurm_config_in_the_users_folder_sends_jobs_to_slurm(tmp_path):
    from conftest import ROOT

    (tmp_path / "hydra" / "launcher").mkdir(parents=True)
    copy = (ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml").read_text()
    (tmp_path / "hydra" / "launcher" / "my_cluster.yaml").write_text(copy)
    mine = ["hydra/launcher=my_cluster"]
    assert not validate.runs_here(mine, [str(tmp_path)])
    assert validate.runs_here(["hydra/launcher=joblib"]) and validate.runs_here([])


def test_devices_of_jobs_sent_to_a_cluster_are_not_checked_against_this_machine():
    from dlbasics.config.prechecks import check_command_line
    from dlbasics.errors import ConfigError

    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=64"]
    slurm = ["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=64"]
    check_command_line([*slurm, *ddp], [], multirun=True)  # the node decides
    with pytest.raises(ConfigError, match="trainer.devices=64: this CPU has"):
        check_command_line(ddp, [], multirun=False)
