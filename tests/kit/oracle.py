"""The OFFICIAL PoseTrack21 evaluation kit (``../shared/tools/posetrack21_kit``) as a test oracle.

The kit needs Python 3.8-era pins, so it runs in its own venv (built once by the kit's
``make_venv.sh``) and is driven through small scripts in this folder that import the kit's code
unchanged and dump its raw result arrays as JSON. Tests skip with the reason when the kit or a
suitable Python is missing.
"""
from __future__ import annotations

import json
import os
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
    python, reason = _build_venv()
    if python is None:
        pytest.skip(reason)
    return python


def run_driver(driver: str, *args: str | Path, timeout: float = 600) -> dict:
    """Run ``tests/kit/<driver>`` under the kit's Python; it prints one JSON document on its last line."""
    python = kit_python()
    env = dict(os.environ, KIT_ROOT=str(kit_root()), PYTHONWARNINGS="ignore")
    done = subprocess.run([str(python), str(HERE / driver), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if done.returncode != 0:
        raise AssertionError(f"kit driver {driver} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # python tests/kit/oracle.py: build the venv and say where it is
    python, why = _build_venv()
    print(python or why)
    sys.exit(0 if python else 3)
