"""What the command line and :func:`dlbasics.fit` check before Hydra makes a run directory
and before torch or Lightning is imported: the overrides and their values, a forced run
directory, the user's data file. A mistake is one :class:`~dlbasics.errors.ConfigError`
line, in about a second.
"""

from __future__ import annotations


def check_command_line(overrides: list[str], config_dirs: list[str], multirun: bool) -> None:
    """Everything that can be checked before Hydra makes a run directory and Lightning is
    imported: the overrides and their values, a forced run directory, the user's CSV file."""
    from dlbasics.config.checks import (
        check_launcher,
        check_multirun_processes,
        check_overrides,
        check_run_dir_free,
        check_search_command,
        runs_here,
    )
    from dlbasics.data.checks import check_data

    check_launcher(overrides, multirun)
    configs = check_overrides(overrides, config_dirs, here=runs_here(overrides, config_dirs))
    configs = check_search_command(overrides, configs, multirun, config_dirs)
    if multirun:
        check_multirun_processes(overrides, configs, config_dirs)
        from dlbasics.config.members import is_stacked

        if any(is_stacked(cfg) for cfg in configs):
            from dlbasics.errors import ConfigError

            raise ConfigError(
                "-m with seeds= or members.*: a stacked run is a sweep over its members "
                "already, in one process; run it without -m, or sweep the seed: -m seed=0,1,2"
            )
    check_run_dir_free(overrides, multirun)
    seen = set()
    for cfg in configs:  # each distinct data config of a sweep once
        key = repr(cfg.data)
        if key not in seen:
            seen.add(key)
            check_data(cfg.data)
