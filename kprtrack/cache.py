"""Per-sequence cache of the model stages' outputs (detector, pose, ReID).

A stage's entry is keyed by its resolved config, the checksum of its weights, its code (module
source and kprtrack version), the upstream stage's key and a fingerprint of the input, so a changed config, model or input never reuses stale
results, and re-running with another tracker setting runs only the tracker. Entries are
compressed numpy archives (one zip of per-chunk ``.npy`` arrays per stage and sequence), spilled
while the sequence runs and renamed into place when it ends (see ``StageCache``).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from kprtrack.errors import warn
from kprtrack.io import _umask
from kprtrack.record import Detections

FIELDS = ("boxes", "scores", "keypoints", "embeddings", "visibility", "person_ids")
CACHE_VERSION = 2  # 2: chunked entries (meta.json + <chunk>/<field>.npy)
CHUNK_FRAMES = 256


def default_cache_dir() -> Path:
    from kprtrack.weights import kprtrack_home

    return kprtrack_home() / "cache"


@lru_cache(maxsize=64)
def _file_checksum(path: str, size: int, mtime_ns: int) -> str:
    from kprtrack.weights import sha256_of

    return sha256_of(path)


def weights_checksum(stage) -> str | None:
    """sha256 of the stage's weights file, where it has one (``stage.weights_path``)."""
    path = getattr(stage, "weights_path", None)
    if not path or not Path(path).is_file():
        return None
    stat = os.stat(path)
    return _file_checksum(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _code_checksum(cls: type) -> str:
    """The stage class's module source and kprtrack's version: changed code is not served stale results."""
    import inspect

    from kprtrack import __version__

    try:
        source = Path(inspect.getsourcefile(cls) or "").read_bytes()
    except (OSError, TypeError):
        source = b""
    return hashlib.sha256(source + __version__.encode()).hexdigest()[:16]


def stage_key(name: str, config: dict, stage, upstream: str, input_fingerprint: str) -> str:
    payload = json.dumps({"v": CACHE_VERSION, "stage": name, "config": config, "weights": weights_checksum(stage),
                          "code": _code_checksum(type(stage)), "upstream": upstream, "input": input_fingerprint},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def pack(frames: list[Detections]) -> dict[str, np.ndarray]:
    """Frames' outputs as row-concatenated arrays plus ``offsets`` (the frame boundaries)."""
    arrays = {"offsets": np.cumsum([0] + [len(d) for d in frames]).astype(np.int64)}
    for field in FIELDS:
        values = [getattr(d, field) for d in frames]
        if values and all(v is not None for v in values):
            arrays[field] = np.concatenate(values, axis=0)
    return arrays


def unpack(arrays: dict[str, np.ndarray]) -> list[Detections]:
    offsets = arrays["offsets"]
    return [Detections(**{k: arrays[k][start:stop] if k in arrays else None for k in FIELDS})
            for start, stop in zip(offsets[:-1], offsets[1:])]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class StageCache:
    """The cache folder. An entry (``<stage>/<key>.npz``) is one zip of chunks of ``CHUNK_FRAMES``
    frames, written while the sequence runs into a hidden file beside it (``.<key>.<host>.<pid>.
    <random>.partial``) and renamed when the sequence ends: memory does not grow with the video,
    and an entry is whole or absent. A damaged entry is deleted and recomputed, with a warning. The
    cache never costs results: when it cannot be written (full or read-only disk) the run goes on
    without it, with one warning."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.enabled = enabled
        self.writable = True
        self._swept: set[str] = set()

    def path(self, name: str, key: str) -> Path:
        return self.root / name / f"{key}.npz"

    def load(self, name: str, key: str) -> "CacheReader | None":
        """The entry, checked whole (zip CRCs) before use, or None. A damaged one is removed."""
        path = self.path(name, key)
        if not self.enabled or not path.is_file():
            return None
        try:
            return CacheReader(path)
        except Exception as err:  # noqa: BLE001 - any damage (BadZipFile, zlib.error, bad header...) = recompute
            warn(f"damaged cache entry {path} ({type(err).__name__}: {err}): removed, recomputing")
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            return None

    def writer(self, name: str, key: str) -> "CacheWriter | None":
        """A writer for a new entry, or None when the cache is off or cannot be written."""
        if not (self.enabled and self.writable):
            return None
        try:
            self._sweep(name)
            return CacheWriter(self.path(name, key))
        except OSError as err:
            self.failed(err)
            return None

    def failed(self, err: OSError) -> None:
        """A write failed: one warning, and the rest of the run does not write the cache."""
        if self.writable:
            where = err.filename or self.root
            warn(f"cannot write the stage cache ({where}: {err.strerror or err}); going on without saving "
                 "stage outputs to it (results are not affected; run.cache=false or run.cache_dir=<folder> "
                 "to silence)")
        self.writable = False

    def _sweep(self, name: str) -> None:
        """Remove partial entries left by killed runs of this machine (their process is gone)."""
        if name in self._swept:
            return
        self._swept.add(name)
        folder = self.root / name
        host = socket.gethostname()
        for path in folder.glob(".*.partial") if folder.is_dir() else []:
            parts = path.name.split(".")
            if len(parts) >= 6 and parts[-4] == host and parts[-3].isdigit() and not _alive(int(parts[-3])):
                path.unlink(missing_ok=True)

    def save(self, name: str, key: str, frames: list[Detections]) -> None:
        """Write a whole entry at once (tests, tools)."""
        writer = self.writer(name, key)
        if writer is not None:
            writer.add(frames)
            writer.commit()


class CacheWriter:
    """One entry being written, chunk by chunk."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{socket.gethostname()}.{os.getpid()}.", suffix=".partial",
                                   dir=path.parent)
        self.tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self._pending: list[Detections] = []
        self.chunks = self.frames = 0

    def add(self, frames: list[Detections]) -> None:
        self._pending += frames
        while len(self._pending) >= CHUNK_FRAMES:
            self._flush(self._pending[:CHUNK_FRAMES])
            self._pending = self._pending[CHUNK_FRAMES:]

    def _flush(self, frames: list[Detections]) -> None:
        for field, array in pack(frames).items():
            with self._zip.open(f"{self.chunks:06d}/{field}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
        self.chunks += 1
        self.frames += len(frames)

    def commit(self) -> Path:
        try:
            if self._pending or not self.chunks:
                self._flush(self._pending)
                self._pending = []
            self._zip.writestr("meta.json", json.dumps({"version": CACHE_VERSION, "frames": self.frames,
                                                        "chunks": self.chunks, "chunk_frames": CHUNK_FRAMES}))
            self._zip.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self.tmp, 0o666 & ~_umask())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        for close in (self._zip.close, self._file.close):
            try:
                close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
        self.tmp.unlink(missing_ok=True)


class CacheReader:
    """A checked entry; frames are read a chunk at a time, in any order (sequentially is cheapest)."""

    def __init__(self, path: Path):
        self.path = path
        self._zip = zipfile.ZipFile(path)
        try:
            bad = self._zip.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"CRC mismatch in {bad}")
            meta = json.loads(self._zip.read("meta.json"))
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"cache version {meta.get('version')}, expected {CACHE_VERSION}")
            self.frames, self.chunk_frames = int(meta["frames"]), int(meta["chunk_frames"])
        except BaseException:
            self._zip.close()
            raise
        self._loaded, self._chunk = -1, []

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: int) -> Detections:
        if not 0 <= index < self.frames:
            raise IndexError(f"frame {index} not in the cache entry {self.path} ({self.frames} frames)")
        chunk = index // self.chunk_frames
        if chunk != self._loaded:
            prefix = f"{chunk:06d}/"
            arrays = {}
            for member in self._zip.namelist():
                if member.startswith(prefix):
                    with self._zip.open(member) as handle:
                        arrays[member[len(prefix):-4]] = np.lib.format.read_array(handle, allow_pickle=False)
            self._chunk, self._loaded = unpack(arrays), chunk
        return self._chunk[index - chunk * self.chunk_frames]

    def close(self) -> None:
        self._zip.close()

