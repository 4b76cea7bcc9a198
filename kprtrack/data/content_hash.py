"""Content fingerprints of input files (videos, frames) for the stage cache.

A changed input must never reuse stale results, and size + modification time do not tell: ``cp -p``,
``rsync -a`` and ``tar -x`` give another clip the old one's size and mtime. So the fingerprint is
the sha256 of every byte (streamed, ~0.8 GB/s on one core), never of sampled blocks, which would
miss a change between them.

Hashing a long video on every run would cost seconds, so each digest is remembered, keyed by what
the kernel changes on every write: (device, inode, size, mtime_ns, ctime_ns). ``ctime`` cannot be
set by ``utime``, ``cp -p`` or ``tar``; a copy is a new inode; an in-place rewrite moves ctime. A
digest is only remembered when the file was last changed more than ``RACY_NS`` before it was hashed
(as git does for its index): file-system timestamps are coarse (a few ms), and a rewrite within the
same tick must not be able to keep the key. The memo lives in memory and in
``$KPRTRACK_HOME/cache/content-hashes/`` (one small JSON per folder, written atomically; an
unwritable or damaged memo only means hashing again).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterable

RACY_NS = 2_000_000_000  # files changed less than 2 s before hashing are hashed again next time
_CHUNK = 1 << 20
_MEMO: dict[str, tuple[list[int], str]] = {}  # resolved path -> (stat key, sha256)


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def _memo_file(folder: Path) -> Path:
    from kprtrack.weights import kprtrack_home

    name = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return kprtrack_home() / "cache" / "content-hashes" / f"{name}.json"


def _read_memo(folder: Path) -> dict:
    try:
        data = json.loads(_memo_file(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("files") if isinstance(data, dict) and data.get("folder") == str(folder) else None
    return entries if isinstance(entries, dict) else {}


def _write_memo(folder: Path, entries: dict) -> None:
    target = _memo_file(folder)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"folder": str(folder), "files": entries}), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:  # read-only or full cache folder: the memo is only a shortcut
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def files_digests(paths: Iterable[Path], missing_ok: bool = False) -> list[str | None]:
    """sha256 of each file's bytes, in order; OSError for an unreadable file, and for a missing one
    unless ``missing_ok`` (then None)."""
    paths = [Path(p).resolve() for p in paths]
    disk: dict[Path, dict] = {}  # folder -> its on-disk memo, read once
    changed: set[Path] = set()
    digests = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            if not missing_ok:
                raise
            digests.append(None)
            continue
        key = _stat_key(stat)
        known = _MEMO.get(str(path))
        if known is None or known[0] != key:
            entries = disk.setdefault(path.parent, _read_memo(path.parent))
            entry = entries.get(path.name)
            known = (entry[0], entry[1]) if isinstance(entry, list) and len(entry) == 2 else None
        if known is not None and known[0] == key:
            digest = known[1]
            _MEMO[str(path)] = (key, digest)
        else:
            digest = _hash_file(path)
            after = path.stat()
            settled = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) > RACY_NS
            if settled and _stat_key(after) == key:  # not written to while hashed, nor just now
                disk.setdefault(path.parent, _read_memo(path.parent))[path.name] = [key, digest]
                changed.add(path.parent)
                _MEMO[str(path)] = (key, digest)
        digests.append(digest)
    for folder in changed:
        _write_memo(folder, disk[folder])
    return digests


def file_digest(path: Path) -> str:
    return files_digests([path])[0]


def named_digest(kind: str, names: Iterable[str], digests: Iterable[str | None]) -> str:
    """One fingerprint for an ordered set of files: their names (as the outputs show them) and contents."""
    total = hashlib.sha256()
    for name, digest in zip(names, digests):
        total.update(f"{name}\0{digest or 'missing'}\n".encode("utf-8", "surrogateescape"))
    return f"{kind}:{total.hexdigest()}"
