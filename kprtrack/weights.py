"""Model weights: a registry of official files, a download cache, checksum checks.

Every model stage (detector, pose, ReID) resolves ``<stage>.weights=<name|path|url>`` through
``resolve_weights`` so caching, checksums and offline messages behave the same everywhere.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kprtrack.errors import InputError


@dataclass(frozen=True)
class WeightSpec:
    """One published weight file."""

    url: str
    sha256: str | None = None  # full hex digest, or a prefix where upstream publishes only one; None = none
    filename: str | None = None  # defaults to the URL's last path component
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. input_size, arch, num_classes

    @property
    def file_name(self) -> str:
        return self.filename or Path(urllib.parse.urlparse(self.url).path).name


def kprtrack_home() -> Path:
    """``$KPRTRACK_HOME``, default the user's cache folder for kprtrack: weights, demo and stage cache live in it."""
    home = os.environ.get("KPRTRACK_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("kprtrack"))


def cache_dir() -> Path:
    """``$KPRTRACK_HOME/weights``."""
    return kprtrack_home() / "weights"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "file")


def resolve_weights(weights: str | os.PathLike, registry: dict[str, WeightSpec] | None = None,
                    *, download: bool = True, progress: bool = True) -> Path:
    """Turn a registry name, a local path or a URL into a local file, downloading once.

    Raises ``InputError`` with the URL to fetch and the folder to put it in when offline.
    """
    registry = registry or {}
    text = os.fspath(weights)
    if text in registry:
        spec = registry[text]
    elif _is_url(text):
        spec = WeightSpec(url=text)
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            names = ", ".join(sorted(registry)) or "none"
            raise InputError(f"weights file not found (and not a known name; known: {names})", path)
        return path
    target = cache_dir() / spec.file_name
    if target.is_file():
        _check_sha(target, spec)
        return target
    if not download:
        raise InputError(f"not in the cache; fetch {spec.url} and put it there", target)
    _download(spec, target, progress)
    return target


def _check_sha(path: Path, spec: WeightSpec) -> None:
    if not spec.sha256:
        return
    expected, actual = spec.sha256.lower(), sha256_of(path)
    if len(expected) == len(actual) and actual != expected:
        raise InputError(f"checksum mismatch: expected sha256 {spec.sha256} for {spec.url} "
                         f"(delete the file to download it again)", path)
    if not actual.startswith(expected):
        raise InputError(f"checksum mismatch: the file's sha256 should start with {spec.sha256} for "
                         f"{spec.url} (delete the file to download it again)", path)


def _download(spec: WeightSpec, target: Path, progress: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            from tqdm import tqdm

            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                      disable=not progress) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        _check_sha(tmp, spec)
        os.replace(tmp, target)
    except InputError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"downloaded file from {spec.url} failed the check: {err}", target) from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"could not download {spec.url} ({err}); fetch it by hand and put it "
                         f"at this path", target) from None


# numpy moved ``numpy.core`` to ``numpy._core`` in 2.0. Checkpoints pickled under numpy 1.x (the
# published torchreid/KPR, mmpose and YOLOX files) name the old module; torch's restricted
# unpickler matches globals by that written name, so both spellings are allowed, each bound to
# the function this numpy has. These rebuild plain scalars and arrays; none runs other code.
_NUMPY_MULTIARRAY_NAMES = ("numpy.core.multiarray", "numpy._core.multiarray")


def numpy_safe_globals() -> list:
    """numpy scalars, arrays and dtypes as found in checkpoint metadata (rank1, best_ap, sigmas...).

    Entries are classes (matched by their own name) or torch's ``(callable, "qualified.name")`` pairs.
    """
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: list = [np.ndarray, np.dtype]
    for module in _NUMPY_MULTIARRAY_NAMES:
        allowed += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    # A dtype is rebuilt as np.dtype(...) and then given its state: torch requires the instance's
    # class (numpy.dtypes.Float64DType etc.) to be allowed for that step.
    allowed += sorted({type(np.dtype(code)) for code in np.typecodes["All"]}, key=lambda t: t.__name__)
    return allowed


def torch_load(path: str | Path, extra_safe_globals: tuple = ()) -> Any:
    """``torch.load(weights_only=True)`` with numpy metadata allowed and a clear message for corrupt or unsafe files.

    Never falls back to a full (code-executing) unpickle: an object outside the allow-list is an
    InputError naming it.
    """
    import torch

    try:
        with torch.serialization.safe_globals(numpy_safe_globals() + list(extra_safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("weights file not found", path) from None
    except Exception as err:  # torch raises many types for corrupt/unsafe files
        raise InputError(f"cannot load checkpoint: {_load_failure(err)}", path) from None


def _load_failure(err: Exception) -> str:
    """torch's weights_only message is a page of advice to load unsafely; keep the one fact that matters."""
    text = str(err).strip()
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds a Python object of type {found.group(1)}, which kprtrack does not unpickle "
                f"(only tensors, plain containers and numpy data are loaded; never arbitrary code)")
    reason = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if reason:
        return f"refused by the safe (weights-only) unpickler: {reason.group(1)}"
    return text.splitlines()[0] if text else type(err).__name__
