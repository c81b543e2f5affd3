"""Errors a user can act on. ``python -m dlbasics.train`` prints their message as one short
message and exits non-zero, without a traceback (set ``HYDRA_FULL_ERROR=1`` to see one);
:func:`dlbasics.fit` and the other Python functions raise them, with the same message."""

from __future__ import annotations


class DlbasicsError(Exception):
    """Base of the errors reported to the user without a traceback."""

    # What was done with the run's directory when this error ended it, in words (set by
    # dlbasics.training.train.job: "removed ... (no checkpoint was written)", "marked failed: ...").
    cleanup: str | None = None

    def _render_traceback_(self) -> list[str]:
        """In IPython and Jupyter: the one line, as the command line prints it, without the
        traceback through Hydra and Lightning (``%xmode``/``HYDRA_FULL_ERROR=1`` aside)."""
        import os

        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            import traceback

            return traceback.format_exception(self)
        return [f"{type(self).__name__}: {self}"]


class ConfigError(DlbasicsError):
    """A config value that cannot work; the message names the key, the value and what works."""


class DataError(DlbasicsError):
    """Data that cannot be used as given (a missing or malformed file, too few rows)."""


class TrainingDiverged(DlbasicsError):
    """The training loss became NaN or infinite."""


class RunDirectoryRemoved(DlbasicsError):
    """The run's directory was deleted while the run trained; it is not made again."""

    exit_code = 1

    @classmethod
    def of(cls, run_dir) -> RunDirectoryRemoved:
        return cls(
            f"the run directory {run_dir} was removed while the run trained; nothing more "
            "of the run could be saved (start it again for a new run directory)"
        )


class RunInterrupted(DlbasicsError):
    """Training stopped on Ctrl-C or SIGTERM; a checkpoint was written and can be resumed."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
