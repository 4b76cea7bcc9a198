"""Process-wide settings: applied by kprtrack's command line, opt-in for library use.

Importing kprtrack, or any of its modules, or building any of its stages, changes nothing outside
kprtrack. The two settings below act on the whole process (every library in it, not only kprtrack),
so only the program that owns the process may choose them. ``python -m kprtrack`` and the
``kprtrack`` command call :func:`configure_process` first thing; a program that uses kprtrack as a
library and wants the same behaviour calls it itself, before anything imports numpy::

    import kprtrack.runtime
    kprtrack.runtime.configure_process()   # before `import numpy` (directly or through another import)
    import numpy as np

1. OpenBLAS kernels (kprtrack/openblas.py): on AMD Zen 5 with AVX-512, sets ``OPENBLAS_CORETYPE=SkylakeX``
   in ``os.environ``, unless ``OPENBLAS_CORETYPE`` is already set (that choice wins) or
   ``KPRTRACK_OPENBLAS_FIX=0``. OpenBLAS reads the variable once, when numpy loads it: called after numpy
   is imported this part does nothing. The variable is inherited by child processes.
2. glibc malloc keeps freed memory (:func:`keep_freed_memory`): allowed by this call, applied when a
   CPU inference stage that wants it is built, i.e. the KPR ReID stage on CPU with
   ``reid.cpu_malloc=reuse`` (the default; ``reid.cpu_malloc=system`` keeps glibc's behaviour). In a
   process that never called :func:`configure_process` the stages leave malloc alone.

Import-light on purpose (no numpy): the command line imports this before numpy loads.
"""
from __future__ import annotations

import ctypes
import sys
from collections.abc import MutableMapping
from typing import Any

from kprtrack.openblas import prefer_avx512_kernels

__all__ = ["configure_process", "install_problem", "keep_freed_memory", "process_settings",
           "reuse_freed_memory_for_cpu_inference"]

# What this process chose, for the stages that consult it and for tests / diagnostics.
_settings: dict[str, Any] = {
    "configured": False,  # configure_process() was called
    "numpy_loaded": None,  # numpy was already imported when it was (then the OpenBLAS choice came too late)
    "openblas_coretype": None,  # the OPENBLAS_CORETYPE it set, or None when it set none
    "malloc_reuse_allowed": False,  # stages may make glibc keep freed memory
    "malloc_reuse_applied": False,  # ... and one did (keep_freed_memory() succeeded)
}

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters
MAPPED_PACKAGES = ("kprtrack.tracker", "kprtrack.reid", "kprtrack.configs")


def configure_process(*, openblas: bool = True, malloc_reuse: bool = True,
                      environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """Opt this process in to kprtrack's process-wide settings (see the module docstring).

    ``openblas=False`` leaves ``OPENBLAS_CORETYPE`` alone; ``malloc_reuse=False`` keeps every stage off
    glibc's malloc settings. Call it before numpy is imported. The first call decides: later calls change
    nothing and return the same settings. Returns :func:`process_settings`.
    """
    if _settings["configured"]:
        return process_settings()
    numpy_loaded = "numpy" in sys.modules
    core = prefer_avx512_kernels(environ, numpy_loaded=numpy_loaded) if openblas else None
    _settings.update(configured=True, numpy_loaded=numpy_loaded, openblas_coretype=core,
                     malloc_reuse_allowed=bool(malloc_reuse))
    return process_settings()


def process_settings() -> dict[str, Any]:
    """What :func:`configure_process` decided in this process (a copy; ``configured`` False if never called)."""
    return dict(_settings)


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed memory instead of handing big blocks back to the kernel.

    PyTorch's CPU allocator does not cache: every tensor above glibc's mmap threshold (32 MiB at
    most) is a fresh mmap, page-faulted in (zeroed 4 KiB at a time) and unmapped when freed. A
    batch of 32 SwinV2-B crops makes dozens of such temporaries per block (attention
    [B*windows, heads, 256, 256], MLP hidden, fusion concat): ~2.5 M page faults and ~4 s of kernel
    time per 32 crops, which made batch 32 slower per crop than batch 1. Serving large blocks from
    the heap and never trimming it removes that (cost: the process keeps its peak memory).

    Process-wide: it changes how every allocation of every library in the process is served, which is
    why no kprtrack constructor calls it on its own (see :func:`reuse_freed_memory_for_cpu_inference`).
    Idempotent; a no-op returning False where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    except (OSError, AttributeError):
        return False
    _settings["malloc_reuse_applied"] = _settings["malloc_reuse_applied"] or applied
    return applied


def reuse_freed_memory_for_cpu_inference() -> bool:
    """A CPU inference stage's request for :func:`keep_freed_memory` (``reid.cpu_malloc=reuse``).

    Granted only in a process that opted in with :func:`configure_process` (the command line does):
    malloc's settings belong to the program that owns the process, not to a library it imports.
    Returns whether the process now keeps freed memory.
    """
    if not _settings["malloc_reuse_allowed"]:
        return False
    return bool(_settings["malloc_reuse_applied"]) or keep_freed_memory()


def install_problem() -> str | None:
    """Why ``kprtrack.tracker`` / ``kprtrack.reid`` / ``kprtrack.configs`` cannot be imported, or None.

    The repository keeps them at its top level (tracker/, reid/, configs/); only an install maps them
    into the kprtrack namespace (``pip install -e .`` for a checkout). Imports none of them.
    """
    from importlib.util import find_spec

    missing = [name for name in MAPPED_PACKAGES if find_spec(name) is None]
    if not missing:
        return None
    import kprtrack

    where = next(iter(getattr(kprtrack, "__path__", [])), "?")
    return (f"{', '.join(missing)} cannot be imported: kprtrack is imported from {where}, a source checkout "
            f"that is not installed in this Python ({sys.executable}). Install the package first: "
            f"pip install -e .  (in the checkout; it maps tracker/, reid/ and configs/ to kprtrack.tracker, "
            f"kprtrack.reid and kprtrack.configs), or run from outside the checkout if kprtrack is installed "
            f"non-editable (the current folder comes first on sys.path and shadows it).")
