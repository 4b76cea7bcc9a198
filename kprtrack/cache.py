"""Per-sequence cache of the model stages' outputs (detector, pose, ReID).

A stage's entry is keyed by its resolved config, the checksum of its weights, its code (module
source and kprtrack version), the upstream stage's key and a fingerprint of the input, so a changed config, model or input never reuses stale
results, and re-running with another tracker setting runs only the tracker. Entries are
compressed numpy archives written atomically.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from kprtrack.io import write_bytes
from kprtrack.record import Detections

FIELDS = ("boxes", "scores", "keypoints", "embeddings", "visibility", "person_ids")
CACHE_VERSION = 1


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


class StageCache:
    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.enabled = enabled

    def path(self, name: str, key: str) -> Path:
        return self.root / name / f"{key}.npz"

    def load(self, name: str, key: str) -> list[Detections] | None:
        path = self.path(name, key)
        if not self.enabled or not path.is_file():
            return None
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            return None  # a damaged entry is recomputed, not trusted
        offsets = arrays.pop("offsets")
        out = []
        for start, stop in zip(offsets[:-1], offsets[1:]):
            out.append(Detections(**{k: arrays[k][start:stop] if k in arrays else None for k in FIELDS}))
        return out

    def save(self, name: str, key: str, frames: list[Detections]) -> None:
        if not self.enabled:
            return
        offsets = np.cumsum([0] + [len(d) for d in frames]).astype(np.int64)
        arrays = {"offsets": offsets}
        for field in FIELDS:
            values = [getattr(d, field) for d in frames]
            present = [v for v in values if v is not None]
            if len(present) == len(values) and values:
                arrays[field] = np.concatenate(values, axis=0)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_bytes(self.path(name, key), buffer.getvalue())
