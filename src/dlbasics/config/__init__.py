"""The config tree: where it lives, the checks a composed config must pass before anything
heavy is imported, and the run directory Hydra names."""

# Every composition of conf/ goes through here (CONFIG_DIR): the options' YAML files name
# their schemas, which must be in Hydra's ConfigStore first.
from dlbasics.config import schema as _schema  # noqa: F401
