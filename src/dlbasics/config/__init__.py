"""The config tree: where it lives, the checks a composed config must pass before anything
heavy is imported, and the run directory Hydra names."""
