"""Model weights: a registry of official files, a download cache, checksum checks.

Every model stage (detector, pose, ReID) resolves ``<stage>.weights=<name|path|url>`` through
``resolve_weights`` so caching, checksums and offline messages behave the same everywhere.
"""
from __future__ import annotations

import dataclasses
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
    size: int | None = None  # bytes, where known: announced before downloading and checked after

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


# A folder (http(s):// or file://) holding the registry's files under their file names, used instead
# of the official hosts: an internal mirror, or the tests' loopback server. Checksums still apply.
MIRROR_ENV = "KPRTRACK_WEIGHTS_MIRROR"


def download_url(spec: WeightSpec) -> str:
    """Where ``spec`` is fetched from: its official URL, or ``$KPRTRACK_WEIGHTS_MIRROR/<file name>``."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(spec.file_name)}" if mirror else spec.url


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
        raise InputError(f"not in the cache; fetch {download_url(spec)} and put it there", target)
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


def _published_sha256(headers) -> str | None:
    """The sha256 a host states for the file: Hugging Face sends ``X-Linked-Etag`` (the LFS object's
    sha256) on its redirect to the storage CDN."""
    for header in headers:
        value = (header.get("X-Linked-Etag") or "").strip().strip('"').removeprefix("W/").strip('"').lower()
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value
    return None


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does, keeping every redirect response's headers."""

    def __init__(self):
        self.headers: list = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, method: str = "GET", timeout: float = 60):
    """``(response, headers of every hop)``; HEAD keeps its method across redirects."""
    redirects = _RecordingRedirects()
    response = urllib.request.build_opener(redirects).open(urllib.request.Request(url, method=method), timeout=timeout)
    return response, [*redirects.headers, response.headers]


def remote_size(spec: WeightSpec, timeout: float = 10) -> int | None:
    """Bytes to download: the registry's size, else the host's answer to a HEAD request (None if unknown)."""
    if spec.size:
        return spec.size
    url = download_url(spec)
    if urllib.parse.urlparse(url).scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        return path.stat().st_size if path.is_file() else None
    try:
        response, headers = _open(url, "HEAD", timeout)
        response.close()
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        return None
    for header in headers:  # Hugging Face states the real size on its redirect (X-Linked-Size)
        if str(header.get("X-Linked-Size") or "").isdigit():
            return int(header["X-Linked-Size"])
    length = headers[-1].get("Content-Length")
    return int(length) if str(length or "").isdigit() else None


def _download(spec: WeightSpec, target: Path, progress: bool) -> None:
    url = download_url(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        response, headers = _open(url)
        fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        received = 0
        expected = int(response.headers.get("Content-Length") or 0) or spec.size
        with os.fdopen(fd, "wb") as out, response:
            from tqdm import tqdm

            with tqdm(total=expected, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        if expected and received != expected:
            raise InputError(f"incomplete download: {received} of {expected} bytes (try again)")
        published = _published_sha256(headers)
        _check_sha(tmp, spec if spec.sha256 or not published else WeightSpec(url=url, sha256=published))
        os.replace(tmp, target)
    except InputError as err:
        if tmp:
            tmp.unlink(missing_ok=True)
        raise InputError(f"downloaded file from {url} failed the check: {err}", target) from None
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as err:
        if tmp:
            tmp.unlink(missing_ok=True)
        raise InputError(f"could not download {url} ({err}); fetch it by hand and put it "
                         f"at this path", target) from None


# Model stages (by ``_target_``) whose config key names a registry file: (key, "module:REGISTRY").
STAGE_WEIGHTS = {
    "kprtrack.detector.yolox.YOLOXDetector": ("weights", "kprtrack.detector.yolox_weights:YOLOX_WEIGHTS"),
    "kprtrack.detector.yolox_onnx.YOLOXOnnxDetector": ("weights", "kprtrack.detector.yolox_weights:YOLOX_ONNX_WEIGHTS"),
    "kprtrack.pose.hrnet.HRNetPose": ("weights", "kprtrack.pose.hrnet_checkpoint:HRNET_WEIGHTS"),
    "kprtrack.pose.mmpose_topdown.MMPoseTopDown": ("checkpoint", "kprtrack.pose.hrnet_checkpoint:HRNET_WEIGHTS"),
    "kprtrack.pose.movenet.MoveNetPose": ("weights", "kprtrack.pose.movenet:MOVENET_WEIGHTS"),
    "kprtrack.reid.kpr.KPRReID": ("weights", "kprtrack.reid.kpr.registry:KPR_WEIGHTS"),
    "kprtrack.reid.onnx_reid.OnnxReID": ("model", "kprtrack.reid.onnx_weights:ONNX_REID_WEIGHTS"),
}


@dataclass(frozen=True)
class PendingDownload:
    stage: str
    name: str
    spec: WeightSpec
    size: int | None  # bytes; None = the host did not say


def stage_registry(target: str) -> tuple[str, dict[str, WeightSpec]] | None:
    """(config key, registry) of a model stage's ``_target_``, or None for stages without weights."""
    import importlib

    if target not in STAGE_WEIGHTS:
        return None
    key, location = STAGE_WEIGHTS[target]
    module, name = location.split(":")
    return key, getattr(importlib.import_module(module), name)


def pending_downloads(cfg, stages: tuple[str, ...] = ("detector", "pose", "reid")) -> list[PendingDownload]:
    """The files the model stages of ``cfg`` will download (not cached, not manual-only), with sizes
    from the registry or a HEAD request."""
    pending: dict[str, PendingDownload] = {}
    for stage in stages:
        node = cfg.get(stage) if hasattr(cfg, "get") else None
        found = stage_registry(str(node.get("_target_"))) if node is not None else None
        if found is None or not node.get("download", True):
            continue
        key, registry = found
        name = node.get(key)
        if name is None:
            continue
        spec = registry.get(str(name)) or (WeightSpec(url=str(name)) if _is_url(str(name)) else None)
        if spec is None or spec.meta.get("manual_download") or spec.file_name in pending \
                or (cache_dir() / spec.file_name).is_file():
            continue
        pending[spec.file_name] = PendingDownload(stage, str(name), spec, None)
    if not pending:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(pending)) as pool:  # one HEAD wait, not one per file (offline: timeouts)
        sizes = list(pool.map(lambda p: remote_size(p.spec), pending.values()))
    return [dataclasses.replace(p, size=size) for p, size in zip(pending.values(), sizes)]


def _megabytes(size: int | None) -> str:
    return "size unknown" if size is None else f"{size / 1e6:.1f} MB"


def describe_downloads(pending: list[PendingDownload]) -> str:
    """What a first run downloads, how much, from where and into which folder."""
    known = [p.size for p in pending if p.size is not None]
    total = (_megabytes(sum(known)) + ("" if len(known) == len(pending) else " + files of unknown size")
             if known else "(sizes unknown: no answer from the hosts)")
    lines = [f"first use of {len(pending)} model file(s): downloading {total} once into {cache_dir()} "
             f"(set KPRTRACK_HOME to cache elsewhere)"]
    lines += [f"  {p.stage:<8} {p.spec.file_name} ({_megabytes(p.size)}) from {download_url(p.spec)}" for p in pending]
    return "\n".join(lines)


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
