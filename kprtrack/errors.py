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
