"""Every exception syncssl raises for a user to act on, in one place.

Each is a :class:`SyncsslError`, so the command line shows its message as one ``Error: ...`` line (exit status 1;
:class:`Interrupted`: 128 + the signal's number), never a traceback. Each keeps the builtin base a caller may
catch (ValueError, RuntimeError, TimeoutError). Pure Python: importing it costs nothing.
"""
from __future__ import annotations

from pathlib import Path


class SyncsslError(Exception):
    """Base of every error below: something a user can fix or must know, said in one line."""


class ConfigError(SyncsslError, ValueError):
    """A config value or key a user can fix; the message lists the valid choices."""


class DataError(SyncsslError, ValueError):
    """Bad input: always names the file (or folder) and what is wrong with it."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # crosses process boundaries whole (prepare's workers raise it)
        return type(self), (self.path, self.problem)


class DiskError(DataError):
    """A write failed for a reason of the disk, not of the data: the message starts with what happened."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(path, message)
        self.args = (message,)  # str(e) is the message itself: "no space left on <path> ..."


class UnsupportedCodec(DataError):
    """The backend cannot decode this file's codec: a setup error, raised whatever the failure policy."""


class TooManyDecodeFailures(SyncsslError, RuntimeError):
    """More requests failed than the failure policy allows; the message names the files and why."""


class CheckpointError(SyncsslError, RuntimeError):
    """A checkpoint that is missing, unreadable or of another run or architecture."""


class CheckpointMismatch(SyncsslError, ValueError):
    """A checkpoint's backbone does not fit the model's architecture."""


class RunFolderError(SyncsslError, RuntimeError):
    """A folder a command must not write as asked: one line naming it and what to do instead."""


class NonFiniteLoss(SyncsslError, RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(SyncsslError, RuntimeError):
    """Training stopped by a signal after writing its checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class PeerLost(SyncsslError, RuntimeError):
    """Another process of the job stopped (its node failed or was killed) or cannot be reached."""


class WaitedTooLong(SyncsslError, TimeoutError):
    """A process waited longer than its setting allows for another one's work."""
