"""dlbasics' Hydra sweeper: hyperparameter search with Optuna (``hydra/sweeper=optuna``).

Hydra finds sweepers only in the ``hydra_plugins`` namespace package; the work is done by
:mod:`dlbasics.search.hparams`.
"""
