"""Every error advjax raises on purpose. Each prints as one line a user can act on; the
CLIs turn them into `advjax.<tool>: error: ...` and an exit status, never a traceback.

`AdvjaxError(flag, message)` names the option at fault ("--mnist-path: ..."); the
kinds below say what went wrong, so a caller can catch one and let the others pass.
"""

from __future__ import annotations


class AdvjaxError(ValueError):
    """Bad input that a flag names: `flag` is the option at fault."""

    def __init__(self, flag: str, message: str):
        super().__init__(f"{flag}: {message}")
        self.flag = flag


class ConfigError(AdvjaxError):
    """An option, or a combination of options, that cannot run."""


class DataError(AdvjaxError):
    """A data source that cannot be used."""


class CheckpointError(AdvjaxError):
    """A checkpoint that is missing, unreadable or made for another run; `flag` names
    the option that pointed at it."""


class Invalid(ValueError):
    """Raised by a value parser; its text says what is allowed."""


class RunDirError(ValueError):
    """A run directory's file is not what the sweep wrote: one line naming the file and the field."""


class WriteError(OSError):
    """A save that could not be written (disk full, I/O error). The last complete save
    is kept, so `--resume` continues once the cause is gone."""
