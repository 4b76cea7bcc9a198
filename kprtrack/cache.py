"""Per-sequence cache of the model stages' outputs (detector, pose, ReID).

A stage's entry is keyed by its resolved config, the checksum of its weights, its code, the upstream
stage's key and a fingerprint of the input, so a changed config, model, code or input never reuses
stale results, and re-running with another tracker setting runs only the tracker. "Its code" is
``code_checksum``: kprtrack's version, the stage class's name and the source of every project module
(``kprtrack.*``, which includes ``kprtrack.reid`` and ``kprtrack.tracker``) that the modules of the
class and of its project base classes import, transitively: ``import x``, ``from x import y`` (``y``
a submodule or not), relative imports and imports inside functions, found by reading the sources
with ``ast`` (nothing is imported to find them), plus the parent packages' ``__init__`` modules.
Editing a helper such as ``reid/kpr/model.py`` therefore misses the cache. A stage class from
outside the project (a plugin, a test) is keyed by its own source file and the closure of the
project modules that file imports. Not covered: modules reached without an import statement
(``importlib.import_module`` of a computed name), third-party packages (torch, numpy...: their
versions are not part of the key), and a file edited after the running process imported it (the
key follows the file on disk, not the code in memory).

Entries are compressed numpy archives (one zip of per-chunk ``.npy`` arrays per stage and
sequence), spilled while the sequence runs and renamed into place when it ends (see ``StageCache``).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

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


# Top-level packages whose modules count as the project's own code in ``code_checksum``.
PROJECT_PACKAGES: tuple[str, ...] = ("kprtrack",)


def _is_project(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _find_spec(name: str, memo: dict | None = None):
    """The module's spec without importing it or its parent packages (``importlib.util.find_spec``
    would run the parents' ``__init__``: ``kprtrack.reid.kpr`` imports torch). An imported module's
    own spec; otherwise the import system's finders asked with the parent package's search path.
    ``memo`` keeps the answers (parents' too) of one round of look-ups."""
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        spec = _search(name, memo)
    memo[name] = spec
    return spec


def _search(name: str, memo: dict):
    parent = name.rpartition(".")[0]
    locations = None
    if parent:
        loaded = sys.modules.get(parent)
        locations = getattr(loaded, "__path__", None) if loaded is not None else None
        if locations is None:
            parent_spec = _find_spec(parent, memo)
            locations = parent_spec.submodule_search_locations if parent_spec is not None else None
        if locations is None:  # not a package (``from module import name``) or not found
            return None
        locations = list(locations)
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, locations, None)
        except Exception:  # noqa: BLE001 - a finder that cannot answer does not know the module
            continue
        if spec is not None:
            return spec
    return None


def _spec_file(spec) -> str | None:
    origin = getattr(spec, "origin", None)
    return origin if getattr(spec, "has_location", False) and origin and os.path.isfile(origin) else None


_RECENT_NS = 2_000_000_000
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")  # the fields that hold statements


@lru_cache(maxsize=4096)
def _module_source(name: str, path: str, is_package: bool, size: int, mtime_ns: int
                   ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """sha256 of a module file and what its import statements name (memoised on the file's size and
    mtime, so an edit within the process is seen): (digest, modules imported, names that are modules
    where they are submodules: ``y`` of ``from x import y``). Relative imports are made absolute."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not path.endswith(".py"):
        return digest, (), ()
    try:
        tree = ast.parse(data, filename=path)
    except (SyntaxError, ValueError):
        return digest, (), ()
    package = name if is_package else name.rpartition(".")[0]
    modules: list[str] = []
    maybe: list[str] = []
    statements = list(tree.body)
    while statements:  # every statement, in functions, classes, if/try/with... too (lazy imports)
        node = statements.pop()
        for field in _BLOCKS:  # expressions hold no import statements: not walked (most of the tree)
            statements.extend(getattr(node, field, None) or ())
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 >= len(parts):
                    continue  # beyond the top-level package: fails at import
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                source = ".".join(p for p in (base, node.module) if p)
            else:
                source = node.module or ""
            if not source:
                continue
            modules.append(source)
            maybe += [f"{source}.{alias.name}" for alias in node.names if alias.name != "*"]
    return digest, tuple(dict.fromkeys(modules)), tuple(dict.fromkeys(maybe))


def _closure(modules: Sequence[str], prefixes: tuple[str, ...]) -> dict[str, tuple[str | None, str]]:
    """{module: (file or None, sha256 of the file or "-")} of ``dependency_closure``."""
    queue = list(modules)
    found: dict[str, tuple[str | None, str]] = {}
    seen: set[str] = set()
    specs: dict = {}

    def want(name: str, optional: bool = False) -> None:
        if name in seen or not _is_project(name, prefixes):
            return
        if optional and _find_spec(name, specs) is None:  # ``from package import name``: no module
            return
        queue.append(name)

    while queue:
        name = queue.pop()
        if name in seen or not _is_project(name, prefixes):
            continue
        seen.add(name)
        spec = _find_spec(name, specs)
        if spec is None:
            continue
        parent = name.rpartition(".")[0]
        if parent:
            want(parent)  # a package's __init__ runs before its modules
        path = _spec_file(spec)
        if path is None:  # namespace package
            found[name] = (None, "-")
            continue
        try:
            stat = os.stat(path)
            # A file changed in the last seconds may change again without a new (size, mtime) (coarse
            # file-system clocks): read it afresh rather than trust the memo.
            read = _module_source.__wrapped__ if time.time_ns() - stat.st_mtime_ns < _RECENT_NS else _module_source
            digest, imported, submodules = read(name, path, spec.submodule_search_locations is not None,
                                                stat.st_size, stat.st_mtime_ns)
        except OSError:  # gone since it was found
            found[name] = (path, "?")
            continue
        found[name] = (path, digest)
        for module in imported:
            want(module)
        for module in submodules:
            want(module, optional=True)
    return dict(sorted(found.items()))


def dependency_closure(modules: str | Sequence[str], prefixes: Sequence[str] | None = None) -> dict[str, str | None]:
    """The project modules that ``modules`` import, transitively, with themselves and their parent
    packages: {module name: file, or None for a namespace package}, sorted by name. Found from the
    sources (``ast``) without importing anything; imports of modules outside ``prefixes`` (top-level
    package names, default ``PROJECT_PACKAGES``) and imports that do not resolve are left out."""
    prefixes = tuple(PROJECT_PACKAGES if prefixes is None else prefixes)
    roots = [modules] if isinstance(modules, str) else list(modules)
    return {name: path for name, (path, _) in _closure(roots, prefixes).items()}


def closure_checksum(modules: str | Sequence[str], prefixes: Sequence[str] | None = None) -> str:
    """sha256 of the sorted (module name, file sha256) pairs of ``dependency_closure(modules, prefixes)``."""
    prefixes = tuple(PROJECT_PACKAGES if prefixes is None else prefixes)
    roots = [modules] if isinstance(modules, str) else list(modules)
    digest = hashlib.sha256()
    for name, (_, file_digest) in _closure(roots, prefixes).items():
        digest.update(f"{name}={file_digest}|".encode())
    return digest.hexdigest()


def code_checksum(cls: type, prefixes: Sequence[str] | None = None) -> str:
    """A stage class's code: kprtrack's version, the class's name and the ``closure_checksum`` of the
    modules of the class and of its base classes that are in the project (``prefixes``, default
    ``PROJECT_PACKAGES``); a class from outside the project (a plugin, a test) adds its own source
    file, read on each call, and the project modules that file imports. Walked afresh on each call
    (about a millisecond for the KPR stage once its files were read): only the per-file reading and
    parsing is memoised, on each file's (path, size, mtime_ns) and not for files changed in the last
    two seconds, so a file edited while the process runs counts with its new content."""
    import inspect

    from kprtrack import __version__

    prefixes = tuple(PROJECT_PACKAGES if prefixes is None else prefixes)
    roots = [c.__module__ for c in cls.__mro__ if _is_project(c.__module__, prefixes)]
    own = "-"
    if not _is_project(cls.__module__, prefixes):
        try:
            path = os.path.abspath(inspect.getsourcefile(cls) or "")
            stat = os.stat(path)
            own, imported, submodules = _module_source.__wrapped__(cls.__module__, path,
                                                                   os.path.basename(path) == "__init__.py",
                                                                   stat.st_size, stat.st_mtime_ns)
            roots += imported + submodules  # the project modules it imports (names that are no module drop out)
        except (OSError, TypeError):
            own = "?"
    digest = hashlib.sha256(f"{__version__}|{cls.__module__}.{cls.__qualname__}|own={own}|".encode())
    digest.update(closure_checksum(list(dict.fromkeys(roots)), prefixes).encode())
    return digest.hexdigest()[:16]


def stage_key(name: str, config: dict, stage, upstream: str, input_fingerprint: str) -> str:
    payload = json.dumps({"v": CACHE_VERSION, "stage": name, "config": config, "weights": weights_checksum(stage),
                          "code": code_checksum(type(stage)), "upstream": upstream, "input": input_fingerprint},
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

    def lock(self, key: str, what: str = "") -> "KeyLock | None":
        """``KeyLock`` on ``key`` in this cache (None when the cache is off or its folder cannot be written)."""
        if not (self.enabled and self.writable):
            return None
        return KeyLock.acquire(self.root / "locks" / f"{key}.lock", what)

    def save(self, name: str, key: str, frames: list[Detections]) -> None:
        """Write a whole entry at once (tests, tools)."""
        writer = self.writer(name, key)
        if writer is not None:
            writer.add(frames)
            writer.commit()


class KeyLock:
    """An exclusive ``flock`` on one lock file of the cache (``<cache>/locks/<key>.lock``): held by the
    process computing the entries under that key, so that concurrent runs sharing the cache (the jobs
    of a sweep) compute each stage output once. A run that finds the lock taken waits, then finds the
    entries. The kernel drops the lock when its process dies (even by SIGKILL); the holder removes the
    file when it releases it, and a waiter that locked a removed file locks the new one."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, path: Path, what: str = "") -> "KeyLock | None":
        """Blocks while another process holds it (one line on stderr says so); None when the lock file
        cannot be created (a read-only cache: nothing will be written to it either)."""
        import fcntl

        waited = False
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    print(f"kprtrack run: {what + ': ' if what else ''}waiting for another run computing the same "
                          f"stage outputs (cache lock {path})", file=sys.stderr, flush=True)
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                os.close(fd)
                return None
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return cls(path, fd)
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder removed this file as it released it: lock the current one

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: a waiter then locks a new file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


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

