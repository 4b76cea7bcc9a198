"""Importing kprtrack has no process-wide side effects; the command line opts in (kprtrack/runtime.py);
the repository's top-level folders are kprtrack.* subpackages only where the install maps them.

Checks that observe a fresh process run in a subprocess: the test process has numpy loaded and may
already have been configured by an in-process CLI call of another test.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kprtrack
from kprtrack import runtime

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc / /proc/cpuinfo")

# A Zen 5 with AVX-512: the CPU on which the OpenBLAS choice sets OPENBLAS_CORETYPE, whatever runs the test.
ZEN5_CPUINFO = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                "flags\t\t: fpu avx2 avx512f avx512cd avx512bw avx512dq avx512vl\n\n")
# Run first in each child: /proc/cpuinfo reads as ZEN5_CPUINFO, and the process records every environment
# change (audit event os.putenv) and every C symbol looked up through ctypes (audit event ctypes.dlsym,
# e.g. glibc's mallopt).
PRELUDE = f"""
import json, os, pathlib, sys
_read_text = pathlib.Path.read_text
def _fake_read_text(self, *args, **kwargs):
    return {ZEN5_CPUINFO!r} if str(self) == "/proc/cpuinfo" else _read_text(self, *args, **kwargs)
pathlib.Path.read_text = _fake_read_text
EVENTS = {{"putenv": [], "dlsym": []}}
def _hook(event, args):
    if event == "os.putenv":  # [variable, the file that set it] (os.environ's own frames skipped)
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename in ("<frozen os>", os.__file__):
            frame = frame.f_back
        EVENTS["putenv"].append([os.fsdecode(args[0]), frame.f_code.co_filename if frame else "?"])
    elif event == "ctypes.dlsym":
        EVENTS["dlsym"].append(str(args[1]))
sys.addaudithook(_hook)
def report(**extra):
    import kprtrack.runtime
    print(json.dumps({{**EVENTS, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                       "numpy": "numpy" in sys.modules, "settings": kprtrack.runtime.process_settings(), **extra}}))
"""
# A few-hundred-k-parameter KPR (tests/test_kpr.py's micro backbone): the constructor's full path on CPU.
MICRO_KPR = """
from kprtrack.reid.kpr import swin
from kprtrack.reid.kpr.stage import KPRReID
swin.SWIN_SPECS["micro"] = swin.SwinSpec(2, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=8)
import warnings
warnings.simplefilter("ignore")
def build(**kwargs):
    return KPRReID(weights=None, backbone="micro", height=128, width=64, dim=32, device="cpu", **kwargs)
"""


def ours(putenv: list) -> list[str]:
    """The environment variables set from kprtrack's own files (numpy and OpenCV set some on import)."""
    roots = [Path(kprtrack.__file__).parent] + [Path(importlib.util.find_spec(f"kprtrack.{name}").origin).parent
                                                for name in ("tracker", "reid")]
    return [name for name, path in putenv if any(Path(path).is_relative_to(root) for root in roots)]


def child(code: str, **kwargs) -> dict:
    """Run PRELUDE + code in a fresh interpreter (no OPENBLAS_CORETYPE / opt-out set); its report() as a dict."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "KPRTRACK_OPENBLAS_FIX")}
    out = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, env=env,
                         timeout=300, **kwargs)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux_only
def test_importing_kprtrack_and_its_stages_changes_no_environment_variable():
    got = child("import kprtrack, kprtrack.tracker, kprtrack.reid, kprtrack.reid.kpr, kprtrack.configs, "
                "kprtrack.config, kprtrack.cli, kprtrack.pipeline, kprtrack.openblas, kprtrack.runtime\n"
                "report()")
    assert got["OPENBLAS_CORETYPE"] is None and ours(got["putenv"]) == []
    assert got["settings"]["configured"] is False and got["numpy"]  # numpy came in, with OpenBLAS left alone


@linux_only
def test_building_a_kpr_stage_leaves_malloc_alone_unless_the_process_opted_in():
    got = child(MICRO_KPR + "build()\nimport kprtrack.runtime\nbefore = list(EVENTS['dlsym'])\n"
                "kprtrack.runtime.configure_process(openblas=False)\nbuild()\nreport(before=before)")
    assert "mallopt" not in got["before"]  # library use: the constructor changed nothing process-wide
    assert "mallopt" in got["dlsym"] and got["settings"]["malloc_reuse_applied"]  # after the opt-in: granted
    assert got["OPENBLAS_CORETYPE"] is None  # openblas=False


@linux_only
def test_cpu_malloc_system_keeps_glibc_defaults_even_after_the_opt_in():
    got = child(MICRO_KPR + "import kprtrack.runtime\nkprtrack.runtime.configure_process(openblas=False)\n"
                "build(cpu_malloc='system')\nreport()")
    assert "mallopt" not in got["dlsym"] and got["settings"]["malloc_reuse_allowed"]
    assert not got["settings"]["malloc_reuse_applied"]


@linux_only
def test_python_m_kprtrack_opts_in_before_numpy():
    """``python -m kprtrack`` runs kprtrack/__main__.py (here through runpy, as -m does, to read the settings
    back): the OpenBLAS choice is made with numpy not loaded yet, and malloc reuse is allowed."""
    got = child("import runpy\nsys.argv = ['kprtrack', '--help']\n"
                "try:\n    runpy.run_module('kprtrack', run_name='__main__', alter_sys=True)\n"
                "except SystemExit as stop:\n    code = stop.code\n"
                "report(code=code)")
    assert got["code"] == 0
    assert got["OPENBLAS_CORETYPE"] == "SkylakeX" and ours(got["putenv"]) == ["OPENBLAS_CORETYPE"]
    settings = got["settings"]
    assert settings["configured"] and settings["numpy_loaded"] is False and settings["openblas_coretype"] == "SkylakeX"
    assert settings["malloc_reuse_allowed"]


@linux_only
def test_the_kprtrack_command_opts_in_too():
    """The ``kprtrack`` console script calls kprtrack.cli:main; importing kprtrack.cli loads no numpy."""
    got = child("import kprtrack.cli\nloaded = 'numpy' in sys.modules\ncode = kprtrack.cli.main(['--help'])\n"
                "report(code=code, numpy_at_import=loaded)")
    assert got["code"] == 0 and got["numpy_at_import"] is False
    assert got["OPENBLAS_CORETYPE"] == "SkylakeX" and got["settings"]["numpy_loaded"] is False


@linux_only
def test_the_user_choice_and_the_opt_out_win_in_the_cli():
    env = {**os.environ, "KPRTRACK_OPENBLAS_FIX": "0"}
    env.pop("OPENBLAS_CORETYPE", None)
    code = PRELUDE + "import kprtrack.cli\nkprtrack.cli.main(['--help'])\nreport()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["OPENBLAS_CORETYPE"] is None
    env = {**env, "OPENBLAS_CORETYPE": "Haswell"}
    env.pop("KPRTRACK_OPENBLAS_FIX")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1])["OPENBLAS_CORETYPE"] == "Haswell"


def test_real_python_m_kprtrack_imports_runtime_before_numpy():
    """The real ``python -m kprtrack`` (a command that loads numpy): kprtrack.runtime comes first."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "kprtrack", "demo", "--help"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    order = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "numpy" in order and "kprtrack.runtime" in order
    assert order.index("kprtrack.runtime") < order.index("numpy")


def test_configure_process_is_decided_once_and_stages_ask_it(monkeypatch):
    importlib.import_module("numpy")  # as in any test process: configure_process() now comes too late for OpenBLAS
    monkeypatch.setattr(runtime, "_settings", {**runtime._settings, "configured": False,
                                               "malloc_reuse_allowed": False, "malloc_reuse_applied": False})
    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append(1) or True)
    assert runtime.reuse_freed_memory_for_cpu_inference() is False and calls == []  # not opted in
    environ: dict[str, str] = {}
    first = runtime.configure_process(environ=environ, malloc_reuse=True)
    assert first["configured"] and first["numpy_loaded"] and environ == {}  # numpy is loaded here: too late
    assert runtime.configure_process(malloc_reuse=False) == first  # the first call decided
    assert runtime.reuse_freed_memory_for_cpu_inference() is True and calls == [1]


@pytest.mark.parametrize("name", ["tests", "benchmarks", "setup", "tools", "docs", "conftest"])
def test_repository_folders_are_not_kprtrack_subpackages(name):
    assert importlib.util.find_spec(f"kprtrack.{name}") is None


def test_mapped_folders_import_as_kprtrack_subpackages():
    import kprtrack.configs
    import kprtrack.reid
    import kprtrack.tracker

    assert len(kprtrack.__path__) == 1  # no search-path extension
    assert Path(kprtrack.tracker.__file__).parent.name == "tracker"
    assert Path(kprtrack.reid.__file__).parent.name == "reid"
    assert any((Path(p) / "run.yaml").is_file() for p in kprtrack.configs.__path__)
    assert runtime.install_problem() is None


def test_a_checkout_that_was_never_installed_says_so(tmp_path):
    """kprtrack/ alone (what a bare checkout on sys.path gives): a clear message, not a traceback.
    The install's import hooks (setuptools' editable finder) are removed to stand for "not installed"."""
    shutil.copytree(Path(kprtrack.__file__).parent, tmp_path / "kprtrack",
                    ignore=shutil.ignore_patterns("tracker", "reid", "configs", "__pycache__"))
    code = ("import sys\nsys.meta_path[:] = [f for f in sys.meta_path "
            "if 'Editable' not in getattr(f, '__name__', type(f).__name__)]\n"
            "import runpy\nsys.argv = ['kprtrack', 'run', '--help']\n"
            "runpy.run_module('kprtrack', run_name='__main__', alter_sys=True)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "kprtrack.tracker" in out.stderr and "pip install -e ." in out.stderr and "Traceback" not in out.stderr
    assert str(tmp_path / "kprtrack") in out.stderr
