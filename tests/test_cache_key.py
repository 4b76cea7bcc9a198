"""The stage-cache key covers every project module a stage's output depends on (issue #16): editing a
helper that the stage's module imports (at the top, lazily inside a function, relatively) misses the
cache; editing a module it does not import does not."""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from kprtrack import cache
from kprtrack.cache import StageCache, closure_checksum, code_checksum, dependency_closure, stage_key
from kprtrack.record import Detections

REPO = Path(__file__).resolve().parent.parent

# A stage module importing one helper at the top, one lazily in a method, one relatively; `unused`
# is in the package but imported by nothing.
PACKAGE = {
    "__init__.py": "",
    "top_helper.py": "def scale(x):\n    return x * 2\n",
    "rel_helper.py": "OFFSET = 1\n",
    "unused.py": "NOTHING = 0\n",
    "lazy/__init__.py": "",
    "lazy/impl.py": "from ..deep import DEPTH\n\n\ndef shift(x):\n    return x + DEPTH\n",
    "deep.py": "DEPTH = 3\n",
    "stages/__init__.py": "",
    "stages/stage.py": textwrap.dedent("""\
        import numpy as np

        from {pkg}.top_helper import scale
        from ..rel_helper import OFFSET


        class Stage:
            weights_path = None

            def run(self, x):
                from {pkg}.lazy import impl

                return impl.shift(scale(x) + OFFSET) + np.float32(0)
        """),
}


def write_package(root: Path, name: str) -> Path:
    for relative, text in PACKAGE.items():
        path = root / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(pkg=name))
    return root / name


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fresh top-level package on sys.path: (its name, its folder); its modules leave sys.modules after."""
    name = f"ckey_{uuid.uuid4().hex[:12]}"
    folder = write_package(tmp_path / "src", name)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield name, folder
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def edit(path: Path, old: str | None, new: str) -> None:
    """Replace ``old`` by ``new`` in the file (append ``new`` where ``old`` is None)."""
    text = path.read_text()
    if old is None:
        path.write_text(text + new)
        return
    assert old in text
    path.write_text(text.replace(old, new))


def test_closure_follows_top_level_lazy_and_relative_imports(package):
    name, _ = package
    found = dependency_closure(f"{name}.stages.stage", prefixes=(name,))
    assert set(found) == {name, f"{name}.stages", f"{name}.stages.stage", f"{name}.top_helper",
                          f"{name}.rel_helper", f"{name}.lazy", f"{name}.lazy.impl", f"{name}.deep"}
    assert f"{name}.unused" not in found
    assert not any(m in found for m in ("numpy", "kprtrack"))  # outside the prefixes
    assert name not in sys.modules  # found by reading the sources, nothing imported


@pytest.mark.parametrize("helper, old, new", [
    ("top_helper.py", "x * 2", "x * 5"),  # imported at the top
    ("lazy/impl.py", "x + DEPTH", "x - DEPTH"),  # imported inside a method
    ("rel_helper.py", "OFFSET = 1", "OFFSET = 7"),  # imported relatively
    ("deep.py", "DEPTH = 3", "DEPTH = 4"),  # imported (relatively) by a helper
    ("lazy/__init__.py", None, "SIDE_EFFECT = 1\n"),  # a parent package's __init__
    ("__init__.py", None, "SIDE_EFFECT = 1\n"),
    ("stages/stage.py", "OFFSET) +", "OFFSET) * 1 +"),  # the stage's own module
])
def test_editing_a_helper_changes_the_code_checksum(package, helper, old, new):
    name, folder = package
    stage_class = importlib.import_module(f"{name}.stages.stage").Stage
    before = code_checksum(stage_class, prefixes=(name,))
    assert code_checksum(stage_class, prefixes=(name,)) == before  # stable
    # Edits of the same size, at once: on a coarse file-system clock even the mtime may not change.
    edit(folder / helper, old, new)
    assert code_checksum(stage_class, prefixes=(name,)) != before


def test_editing_a_module_nobody_imports_keeps_the_checksum(package):
    name, folder = package
    stage_class = importlib.import_module(f"{name}.stages.stage").Stage
    before = code_checksum(stage_class, prefixes=(name,))
    edit(folder / "unused.py", "0", "1")
    (folder / "new_module.py").write_text("X = 1\n")
    assert code_checksum(stage_class, prefixes=(name,)) == before


def test_edited_helper_copy_misses_the_stage_cache(package, tmp_path, monkeypatch):
    """End to end: an entry stored under the key before the edit is not served after it."""
    name, folder = package
    monkeypatch.setattr(cache, "PROJECT_PACKAGES", ("kprtrack", name))
    stage = importlib.import_module(f"{name}.stages.stage").Stage()
    store = StageCache(tmp_path / "cache")
    old_key = stage_key("reid", {"dim": 8}, stage, "upstream", "input")
    writer = store.writer("reid", old_key)
    writer.add([Detections.empty(), Detections([[0, 0, 4, 4]], [0.9])])
    writer.commit()
    hit = store.load("reid", old_key)
    assert hit is not None and len(hit) == 2
    hit.close()

    edit(folder / "lazy" / "impl.py", "x + DEPTH", "x - DEPTH")  # the lazily imported helper
    new_key = stage_key("reid", {"dim": 8}, stage, "upstream", "input")
    assert new_key != old_key
    assert store.load("reid", new_key) is None  # miss: recomputed
    hit = store.load("reid", old_key)  # the old code's entry is still there, under the old key
    assert hit is not None and len(hit[1]) == 1
    hit.close()


def test_stage_outside_the_project_is_keyed_by_its_own_file(package):
    """Default prefixes: the temporary package is not kprtrack, so only the class's own file counts."""
    name, folder = package
    stage_class = importlib.import_module(f"{name}.stages.stage").Stage
    before = code_checksum(stage_class)
    edit(folder / "top_helper.py", "x * 2", "x * 3")
    assert code_checksum(stage_class) == before
    edit(folder / "stages" / "stage.py", "OFFSET) +", "OFFSET) * 1 +")
    assert code_checksum(stage_class) != before


def test_stage_outside_the_project_follows_the_project_modules_it_imports(package, tmp_path):
    """A plugin's stage class (outside the project) using a project helper: the helper's edit counts."""
    name, folder = package
    plugin = f"plugin_{uuid.uuid4().hex[:12]}"
    (tmp_path / "src" / f"{plugin}.py").write_text(
        f"from {name}.lazy.impl import shift\n\n\nclass PluginStage:\n    def run(self, x):\n        return shift(x)\n")
    try:
        stage_class = importlib.import_module(plugin).PluginStage
        before = code_checksum(stage_class, prefixes=(name,))
        edit(folder / "deep.py", "DEPTH = 3", "DEPTH = 4")  # imported by the helper the plugin imports
        assert code_checksum(stage_class, prefixes=(name,)) != before
        after = code_checksum(stage_class, prefixes=(name,))
        edit(folder / "top_helper.py", "x * 2", "x * 5")  # not imported by the plugin
        assert code_checksum(stage_class, prefixes=(name,)) == after
    finally:
        sys.modules.pop(plugin, None)


def copy_real_package(src: Path, files: list[str], old_prefix: str, dest: Path, name: str) -> Path:
    """A copy of real project files as package ``name`` with ``old_prefix`` imports made ``name.``."""
    folder = dest / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    for relative in files:
        text = (src / relative).read_text().replace(old_prefix, f"{name}.")
        (folder / relative).write_text(text)
    return folder


REAL_COPIES = {
    # stage module, the helper it imports, a module of the same folder it does not import
    "detector": (REPO / "kprtrack" / "detector", "kprtrack.detector.", "yolox", "yolox_processing", "yolox_onnx"),
    "reid": (REPO / "reid" / "kpr", "kprtrack.reid.kpr.", "stage", "model", "__init__"),
}


@pytest.mark.parametrize("which", sorted(REAL_COPIES))
def test_editing_a_copy_of_a_real_helper_changes_the_checksum(which, tmp_path, monkeypatch):
    src, old_prefix, stage, helper, unrelated = REAL_COPIES[which]
    name = f"ckey_{which}_{uuid.uuid4().hex[:12]}"
    files = sorted(p.name for p in src.glob("*.py") if p.name != "__init__.py")
    folder = copy_real_package(src, files, old_prefix, tmp_path, name)
    if unrelated == "__init__":  # reid/kpr/__init__.py imports the stage: the copy's package is a plain one
        unrelated = "unrelated"
        (folder / "unrelated.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = dependency_closure(f"{name}.{stage}", prefixes=(name,))
    assert f"{name}.{helper}" in found and f"{name}.{unrelated}" not in found
    before = closure_checksum(f"{name}.{stage}", prefixes=(name,))
    (folder / f"{unrelated}.py").write_text((folder / f"{unrelated}.py").read_text() + "\n# edited\n")
    assert closure_checksum(f"{name}.{stage}", prefixes=(name,)) == before
    (folder / f"{helper}.py").write_text((folder / f"{helper}.py").read_text() + "\n# edited\n")
    assert closure_checksum(f"{name}.{stage}", prefixes=(name,)) != before
    assert name not in sys.modules  # nothing was imported (no torch for the copies)


CLOSURE_SCRIPT = """
import sys, json
from kprtrack.cache import dependency_closure
out = {m: sorted(dependency_closure(m)) for m in sys.argv[1:]}
out["torch imported"] = "torch" in sys.modules
print(json.dumps(out))
"""


def test_real_stages_closures_include_their_helpers_without_importing_torch():
    stages = {
        "kprtrack.reid.kpr.stage": ["kprtrack.reid.kpr.model", "kprtrack.reid.kpr.swin", "kprtrack.reid.kpr.checkpoint",
                                    "kprtrack.reid.prompts", "kprtrack.reid.crops", "kprtrack.reid.kpr",
                                    "kprtrack.reid", "kprtrack"],
        "kprtrack.detector.yolox": ["kprtrack.detector.yolox_processing", "kprtrack.detector.yolox_arch"],
        "kprtrack.pose.hrnet": ["kprtrack.pose.heatmaps", "kprtrack.pose.hrnet_net", "kprtrack.pose.topdown"],
        "kprtrack.tracker.kprtracker": ["kprtrack.tracker.kalman", "kprtrack.tracker.track_store",
                                        "kprtrack.tracker.masked_ema"],  # relative imports
    }
    done = subprocess.run([sys.executable, "-c", CLOSURE_SCRIPT, *stages], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found.pop("torch imported") is False
    for stage, helpers in stages.items():
        assert set(helpers) <= set(found[stage]), (stage, found[stage])
    assert "kprtrack.detector.yolox_onnx" not in found["kprtrack.detector.yolox"]
    assert "kprtrack.pose.movenet" not in found["kprtrack.pose.hrnet"]


def test_real_stage_classes_differ_and_are_stable():
    from kprtrack.detector.groundtruth import GroundTruthDetector
    from kprtrack.pose.groundtruth import GroundTruthPose

    assert code_checksum(GroundTruthDetector) == code_checksum(GroundTruthDetector)
    assert code_checksum(GroundTruthDetector) != code_checksum(GroundTruthPose)
    closure = dependency_closure(GroundTruthDetector.__module__)
    assert "kprtrack.detector.groundtruth" in closure and "kprtrack" in closure
    assert all(path is None or Path(path).is_file() for path in closure.values())


def test_copied_yolox_with_relative_imports_is_followed(tmp_path, monkeypatch):
    """The real detector helper copied and imported relatively (``from .yolox_processing import``)."""
    name = f"ckey_rel_{uuid.uuid4().hex[:12]}"
    src = REPO / "kprtrack" / "detector"
    files = sorted(p.name for p in src.glob("yolox*.py"))
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for file in files:
        shutil.copy(src / file, folder / file)
        (folder / file).write_text((folder / file).read_text().replace("from kprtrack.detector.", "from ."))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert f"{name}.yolox_processing" in dependency_closure(f"{name}.yolox", prefixes=(name,))
    before = closure_checksum(f"{name}.yolox", prefixes=(name,))
    edit(folder / "yolox_processing.py", None, "\n# edited\n")
    assert closure_checksum(f"{name}.yolox", prefixes=(name,)) != before
