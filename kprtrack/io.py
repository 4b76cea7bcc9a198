"""Atomic file output: a file appears whole or not at all, even if the run is killed."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; outputs get the usual permissions, like open() would give.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_input_text(path: str | Path, what: str = "file") -> str:
    """A user's input file as text; a missing or unreadable file is an InputError naming it."""
    from kprtrack.errors import InputError

    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {what}: {err}", path) from None


def write_json(path: str | Path, data: Any, indent: int | None = None) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=indent)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


# Temporary names of files being written: atomic_open's ``.<name>.<random>.tmp`` and the rendered
# video's ``.<name>.<random>.partial.mp4``. A killed run leaves them behind; the next run in the
# folder (it holds the folder's lock, so no other run is writing there) removes them.
PARTIAL_SUFFIXES = (".tmp", ".partial.mp4")


def remove_partials(folder: str | Path) -> list[Path]:
    """Remove the hidden temporary files a killed run left in ``folder`` (not recursive)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        if path.name.startswith(".") and path.name.endswith(PARTIAL_SUFFIXES) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def spool(folder: str | Path, max_size: int = 1 << 20):
    """A text buffer for a sequence's output that moves to an anonymous file in ``folder`` beyond
    ``max_size`` bytes: memory stays flat over long videos, and nothing is left behind when the
    process dies."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return tempfile.SpooledTemporaryFile(max_size=max_size, mode="w+", encoding="utf-8", dir=folder,
                                         prefix=".kprtrack-spool.")
