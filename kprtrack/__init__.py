"""kprtrack: multi-person pose tracking with Keypoint Promptable Re-Identification (KPRTrack).

Kept import-light on purpose: ``kprtrack.tracker`` must be usable without Hydra, torch or I/O.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"

# Before anything imports numpy: OpenBLAS picks its kernels when it loads (see kprtrack/openblas.py).
from kprtrack.openblas import prefer_avx512_kernels as _prefer_avx512_kernels

_prefer_avx512_kernels()

# The repository keeps tracker/, reid/ and configs/ beside kprtrack/ (the layout users asked
# for); the wheel installs them as kprtrack.tracker, kprtrack.reid and kprtrack.configs. In a
# source checkout (python -m kprtrack from the repo root) the same names must resolve, so the
# checkout root joins this package's search path.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "tracker" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # type: ignore[name-defined]  # noqa: F821
