"""The OFFICIAL PoseTrack21 evaluation kit (``../shared/tools/posetrack21_kit``) as a test oracle.

The kit needs Python 3.8-era pins, so it runs in its own venv (built once by the kit's
``make_venv.sh``) and is driven through small scripts in this folder that import the kit's code
unchanged and dump its raw result arrays as JSON. Tests skip with the reason when the kit or a
suitable Python is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def kit_root() -> Path:
    shared = Path(os.environ.get("KPRTRACK_SHARED", REPO.parent / "shared"))
    return shared / "tools" / "posetrack21_kit"


@lru_cache(maxsize=None)
def _build_venv() -> tuple[Path | None, str]:
    kit = kit_root()
    if not (kit / "make_venv.sh").is_file():
        return None, f"the official PoseTrack21 kit is not at {kit} (set KPRTRACK_SHARED)"
    venv = Path(os.environ.get("KPRTRACK_KIT_VENV", "/tmp/kprtrack-posetrack21-kit-venv"))
    done = subprocess.run(["bash", str(kit / "make_venv.sh"), str(venv)], capture_output=True, text=True)
    if done.returncode == 3:
        return None, f"the PoseTrack21 kit's venv cannot be built here: {done.stderr.strip()}"
    if done.returncode != 0:
        raise RuntimeError(f"make_venv.sh failed ({done.returncode}): {done.stderr[-2000:]}")
    return venv / "bin" / "python", ""


def kit_python() -> Path:
    """The kit venv's interpreter, or skip the calling test with the reason."""
    return _or_skip(*_build_venv())


def _or_skip(python: Path | None, reason: str) -> Path:
    if python is None:
        pytest.skip(reason)
    return python


def run_driver(driver: str, *args: str | Path, timeout: float = 600) -> dict:
    """Run ``tests/kit/<driver>`` under the kit's Python; it prints one JSON document on its last line."""
    return _run_under(kit_python(), driver, *args, timeout=timeout)


def _run_under(python: Path, driver: str, *args: str | Path, timeout: float = 600) -> dict:
    env = dict(os.environ, KIT_ROOT=str(kit_root()), PYTHONWARNINGS="ignore")
    done = subprocess.run([str(python), str(HERE / driver), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if done.returncode != 0:
        raise AssertionError(f"kit driver {driver} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the kit's MOTA/IDF1 script (eval/mot/evaluate_mot.py) -------------------------------------------
# Its py-motmetrics fork needs pandas, which the kit venv above lacks, so it gets a second venv built on
# first use (about 40 s). Pins from eval/mot/docker/environment.yml (pandas 1.1.5, scipy 1.5.4, lap 0.4.0,
# shapely 1.7.1, whose bundled GEOS 3.8 decides what buffer(0) keeps of a self-intersecting region) on
# the kit venv's numpy and Python 3.8 (the file's Python 3.6 pins have no wheels left for some packages).
# lap 0.4.0 is a source package: it is compiled (needs g++) against that numpy.
MOT_KIT_PINS = ("numpy==1.22.0", "scipy==1.5.4", "pandas==1.1.5", "Shapely==1.7.1", "Pillow==9.0.1",
                "tqdm==4.62.3", "xmltodict==0.12.0", "Cython==0.29.21", "setuptools<60")


def _mot_interpreter() -> str | None:
    candidates = [os.environ.get("KIT_PYTHON", ""), shutil.which("python3.8") or "", shutil.which("python3.9") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.[89].*/bin/python3.[89]"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and subprocess.run(
                [candidate, "-c", "import sys; assert (3, 8) <= sys.version_info[:2] <= (3, 9)"],
                capture_output=True).returncode == 0:
            return candidate
    return None


@lru_cache(maxsize=None)
def _build_mot_venv() -> tuple[Path | None, str]:
    if not (kit_root() / "eval" / "mot" / "evaluate_mot.py").is_file():
        return None, f"the official PoseTrack21 kit is not at {kit_root()} (set KPRTRACK_SHARED)"
    venv = Path(os.environ.get("KPRTRACK_MOT_KIT_VENV", "/tmp/kprtrack-posetrack21-mot-venv"))
    python = venv / "bin" / "python"
    probe = "import numpy, scipy, pandas, shapely, PIL, tqdm, xmltodict, lap; assert lap.__version__ == '0.4.0'"
    if python.is_file() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return python, ""
    base = _mot_interpreter()
    if base is None:
        return None, "no Python 3.8/3.9 for the PoseTrack21 kit's evaluate_mot.py (set KIT_PYTHON)"
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PYTHONPATH")}
    steps = [[base, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *MOT_KIT_PINS],
             [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-build-isolation",
              "lap==0.4.0"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            return None, (f"the venv for the PoseTrack21 kit's evaluate_mot.py cannot be built here "
                          f"({' '.join(step[:4])}...): {done.stderr.strip()[-500:]}")
    return python, ""


def mot_kit_python() -> Path:
    """The interpreter of the venv that runs eval/mot/evaluate_mot.py, or skip the calling test with the reason."""
    return _or_skip(*_build_mot_venv())


def run_mot_driver(driver: str, *args: str | Path, timeout: float = 600) -> dict:
    """Like run_driver, under the evaluate_mot.py venv (:func:`mot_kit_python`)."""
    return _run_under(mot_kit_python(), driver, *args, timeout=timeout)

if __name__ == "__main__":  # python tests/kit/oracle.py: build the venv and say where it is
    python, why = _build_venv()
    print(python or why)
    sys.exit(0 if python else 3)
