"""Errors a user can act on. ``python -m dlbasics.train`` prints their message as one short
message and exits non-zero, without a traceback (set ``HYDRA_FULL_ERROR=1`` to see one)."""


class DlbasicsError(Exception):
    """Base of the errors reported to the user without a traceback."""


class ConfigError(DlbasicsError):
    """A config value that cannot work; the message names the key, the value and what works."""


class DataError(DlbasicsError):
    """Data that cannot be used as given (a missing or malformed file, too few rows)."""


class TrainingDiverged(DlbasicsError):
    """The training loss became NaN or infinite."""


class RunInterrupted(DlbasicsError):
    """Training stopped on Ctrl-C or SIGTERM; a checkpoint was written and can be resumed."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
