"""The OpenBLAS kernel choice for AMD Zen 5 (kprtrack/openblas.py): only when nothing else decided it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kprtrack.openblas import avx512_core_for, openblas_core, prefer_avx512_kernels

AVX512 = "avx512f avx512cd avx512bw avx512dq avx512vl"


def cpuinfo(vendor="AuthenticAMD", family=26, flags=f"fpu sse avx2 fma {AVX512} avx512_bf16", processors=2):
    block = (f"processor\t: {{}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 2\n"
             f"model name\t: AMD EPYC\nflags\t\t: {flags}\n\n")
    return "".join(block.format(k) for k in range(processors))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (cpuinfo(), "SkylakeX"),  # Zen 5 (family 0x1A) with AVX-512: the case OpenBLAS misses
        (cpuinfo(family=27), "SkylakeX"),  # a later AMD family it cannot know either
        (cpuinfo(family=25), None),  # Zen 3/4: OpenBLAS detects these itself
        (cpuinfo(flags="fpu sse avx2 fma"), None),  # no AVX-512: Haswell kernels are right
        (cpuinfo(flags="fpu avx2 avx512f avx512cd"), None),  # not every extension the kernels use
        (cpuinfo(vendor="GenuineIntel", family=6), None),  # Intel: detected by model
        ("", None),
        ("vendor_id\t: AuthenticAMD\ncpu family\t: ?\n", None),
    ],
)
def test_core_for_cpuinfo(text, expected):
    assert avx512_core_for(text) == expected


def test_sets_the_core_only_when_nothing_else_decided(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(cpuinfo())
    environ: dict[str, str] = {}
    assert prefer_avx512_kernels(environ, numpy_loaded=False, cpuinfo_path=info) == "SkylakeX"
    assert environ == {"OPENBLAS_CORETYPE": "SkylakeX"}

    chosen = {"OPENBLAS_CORETYPE": "Haswell"}  # the user's (or the machine's) choice wins
    assert prefer_avx512_kernels(chosen, numpy_loaded=False, cpuinfo_path=info) is None
    assert chosen == {"OPENBLAS_CORETYPE": "Haswell"}

    opted_out = {"KPRTRACK_OPENBLAS_FIX": "0"}
    assert prefer_avx512_kernels(opted_out, numpy_loaded=False, cpuinfo_path=info) is None
    assert "OPENBLAS_CORETYPE" not in opted_out

    late: dict[str, str] = {}  # numpy (so OpenBLAS) already loaded: setting it would change nothing
    assert prefer_avx512_kernels(late, numpy_loaded=True, cpuinfo_path=info) is None and late == {}

    unreadable: dict[str, str] = {}
    assert prefer_avx512_kernels(unreadable, numpy_loaded=False, cpuinfo_path=tmp_path / "absent") is None
    assert unreadable == {}


def test_the_loaded_openblas_reports_its_kernels():
    core = openblas_core()
    assert isinstance(core, str) and core
    if core != "unknown":  # numpy built on another BLAS (e.g. Accelerate) has no OpenBLAS to ask
        assert core.isprintable() and " " not in core.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_configure_process_before_numpy_applies_it_and_numpy_runs():
    """The opt-in (kprtrack.runtime.configure_process, which the CLI calls first) sets the kernels; a plain
    ``import kprtrack`` does not (tests/test_import_side_effects.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "KPRTRACK_OPENBLAS_FIX")}
    code = ("import os, kprtrack.runtime; kprtrack.runtime.configure_process(); import numpy as np; "
            "a = np.ones((64, 64), np.float32); "
            "assert float((a @ a)[0, 0]) == 64.0; print(os.environ.get('OPENBLAS_CORETYPE', ''))")
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with open("/proc/cpuinfo", errors="replace") as handle:
        expected = avx512_core_for(handle.read()) or ""
    assert out.stdout.strip() == expected
