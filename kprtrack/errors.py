"""Errors that mean "the user's input is wrong", as opposed to bugs in kprtrack."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a missing file, a malformed annotation, an unreadable video...

    The CLI turns it into one line on stderr and exit code 2. The message must name the
    path (and row/sequence where there is one) and say what is wrong.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if path is not None else message)


class MissingModelError(InputError):
    """A stage was selected whose model is not available (not installed, or not built yet)."""


class OutputError(InputError):
    """The run cannot write its results: a full disk, a read-only folder, a file where a folder
    should be. One line on stderr naming the path, exit code 3; finished sequences are kept."""

    exit_code = 3

    @classmethod
    def from_os_error(cls, err: OSError, path: str | Path | None = None, what: str = "cannot write") -> "OutputError":
        reason = err.strerror or str(err)
        return cls(f"{what}: {reason}", err.filename or path)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt (temporary files are removed on the way)."""


def warn(message: str) -> None:
    """One warning line on stderr, in the CLI's format."""
    import sys

    print(f"kprtrack run: warning: {message}", file=sys.stderr, flush=True)
