"""The Hydra side of ``hparams_search=optuna``: a :class:`Sweeper` that runs a
:class:`dlbasics.search.hparams.Search` through the configured launcher."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf


class OptunaSweeper(Sweeper):
    """Asks Optuna for each trial's values and launches it as one job of the multirun.

    Its settings are the job config's ``hparams_search`` node (conf/hparams_search/), so
    every trial's saved config also says which search it belonged to.
    """

    def __init__(self) -> None:
        self.config = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from dlbasics.errors import DlbasicsError
        from dlbasics.search.hparams import Search

        try:
            search = Search(self.config, self.launcher, arguments)
        except DlbasicsError as error:  # one line, as for any other input error
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"Error: {error}", file=sys.stderr)
            sys.exit(2)
        # As Hydra's basic sweeper does: the sweep's composed config at its top.
        if search.finished() < search.settings.n_trials:
            sweep_dir = Path(self.config.hydra.sweep.dir)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        search.run()
