"""Give OpenBLAS its AVX-512 kernels on AMD Zen 5, where its CPU detection falls back to AVX2 ones.

numpy's bundled OpenBLAS (scipy-openblas 0.3.31 and older) has no entry for AMD CPU family 0x1A (Zen 5)
in its runtime CPU detection, so on Zen 5 it runs its Haswell (AVX2) kernels although the CPU has
AVX-512 (OpenMathLib/OpenBLAS issue #6029, fixed upstream by PR #6033). On such a machine the tracker's
small float32 part-distance products (9 of ~20 x 512 x 20 per frame) take 2.7x longer than with the
SkylakeX kernels. OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when numpy first loads it, so
:func:`prefer_avx512_kernels` must run before anything imports numpy. Setting an environment variable
is a process-wide choice: importing kprtrack does not do it; ``kprtrack.runtime.configure_process()``
does, which the command line calls first thing and a library user may call (see kprtrack/runtime.py).

It changes nothing when ``OPENBLAS_CORETYPE`` is already set (the user's choice wins), when
``KPRTRACK_OPENBLAS_FIX=0``, when numpy is already loaded (too late to matter), or on any other CPU.
Import-light on purpose: no numpy here.
"""
from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["avx512_core_for", "openblas_core", "prefer_avx512_kernels"]

ZEN5_FAMILY = 0x1A  # AMD families from 0x1A on are newer than anything this OpenBLAS knows
# What OpenBLAS's SkylakeX kernels need (they also serve its Cooperlake / Sapphire Rapids entries).
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
OPT_OUT = "KPRTRACK_OPENBLAS_FIX"


def avx512_core_for(cpuinfo: str) -> str | None:
    """The OPENBLAS_CORETYPE to use for this /proc/cpuinfo text, or None to leave OpenBLAS alone."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor tells; all cores of a machine are alike
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if fields.get("vendor_id") != "AuthenticAMD":
        return None
    try:
        family = int(fields.get("cpu family", ""))
    except ValueError:
        return None
    if family < ZEN5_FAMILY or not AVX512_FLAGS <= set(fields.get("flags", "").split()):
        return None
    return "SkylakeX"


def prefer_avx512_kernels(environ: MutableMapping[str, str] | None = None, numpy_loaded: bool | None = None,
                          cpuinfo_path: str | Path = "/proc/cpuinfo") -> str | None:
    """Set OPENBLAS_CORETYPE for Zen 5 when nothing else decided it; returns the value set, or None."""
    environ = os.environ if environ is None else environ
    if numpy_loaded is None:
        numpy_loaded = "numpy" in sys.modules
    if "OPENBLAS_CORETYPE" in environ or environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if numpy_loaded or not sys.platform.startswith("linux"):
        return None
    try:
        core = avx512_core_for(Path(cpuinfo_path).read_text(errors="replace"))
    except OSError:
        return None
    if core is not None:
        environ["OPENBLAS_CORETYPE"] = core
    return core


def openblas_core() -> str:
    """The kernel family the loaded OpenBLAS runs (e.g. 'Haswell', 'SkylakeX'), or 'unknown'.

    Reads it from the OpenBLAS library numpy loaded (scipy-openblas prefixes and suffixes its symbols).
    """
    import ctypes
    import importlib

    importlib.import_module("numpy")  # loads OpenBLAS

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    libraries = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1]})
    for library in libraries:
        try:
            handle = ctypes.CDLL(library)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            function = getattr(handle, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode(errors="replace")
    return "unknown"
