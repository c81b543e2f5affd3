"""Many runs: the Optuna search (``hparams_search=optuna``) and the summary every multirun
ends with."""
