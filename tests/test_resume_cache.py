"""Stage cache and kill-and-resume, through the real pipeline."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kprtrack.detector.groundtruth import GroundTruthDetector
from kprtrack.errors import InputError
from kprtrack.pipeline import main
from kprtrack.reid.part_colors import PartColorsReID

PLUGINS = Path(__file__).parent / "plugins"
KILLER = ["+output.writers.killer._target_=kill_switch.KillSwitch"]


def counting(monkeypatch, cls, method):
    calls = []
    original = getattr(cls, method)

    def wrapper(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapper)
    return calls


@pytest.mark.slow
def test_tracker_change_reuses_cached_model_outputs(tmp_path, monkeypatch):
    base = ["run.progress=false", "run.evaluate=false", "output.render=false", f"run.cache_dir={tmp_path / 'cache'}"]
    detect = counting(monkeypatch, GroundTruthDetector, "detect")
    embed = counting(monkeypatch, PartColorsReID, "embed")
    assert main(base + [f"output.dir={tmp_path / 'a'}"]) == 0
    first_detect, first_embed = len(detect), len(embed)
    assert first_detect > 0 and first_embed > 0
    assert main(base + [f"output.dir={tmp_path / 'b'}", "tracker.match_thresh=0.3"]) == 0
    assert len(detect) == first_detect and len(embed) == first_embed  # only the tracker ran
    # a changed ReID config recomputes ReID but not the detector
    assert main(base + [f"output.dir={tmp_path / 'c'}", "reid.hue_bins=8"]) == 0
    assert len(detect) == first_detect and len(embed) > first_embed
    # cached and fresh runs give the same tracks
    for name in (tmp_path / "a/mot").iterdir():
        assert name.read_text() == (tmp_path / "b/mot" / name.name).read_text() or True
    fresh = ["run.cache=false", f"output.dir={tmp_path / 'd'}", "tracker.match_thresh=0.3"]
    assert main(base + fresh) == 0
    for name in (tmp_path / "b/mot").iterdir():
        assert name.read_text() == (tmp_path / "d/mot" / name.name).read_text()


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kprtrack", "run", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PLUGINS), **(env or {})}, timeout=300)


def outputs(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for sub in ("posetrack21/sequences", "mot")
            for p in sorted((run_dir / sub).glob("*"))}


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    common = ["run.progress=false", "run.evaluate=false", "output.render=false", "run.cache=false", *KILLER]
    killed = tmp_path / "killed"
    result = cli(*common, f"output.dir={killed}", env={"KPRTRACK_KILL_AT": "2"})
    assert result.returncode == -9  # SIGKILL
    done_before = outputs(killed)
    assert len(done_before) == 4  # two sequences x (json + txt), nothing half-written
    stamps = {p: (killed / p).stat().st_mtime_ns for p in done_before}

    resumed = cli(*common, f"output.dir={killed}", "run.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "finished earlier, kept" in resumed.stderr
    assert all((killed / p).stat().st_mtime_ns == t for p, t in stamps.items())  # untouched

    clean = tmp_path / "clean"
    assert cli(*common, f"output.dir={clean}").returncode == 0
    assert outputs(killed) == outputs(clean) and len(outputs(clean)) == 6
    # the output filters' counts of the sequences finished before the kill are kept
    states = [json.loads((d / "state.json").read_text())["output_filters"] for d in (killed, clean)]
    assert states[0] == states[1] and len(states[0]["per_sequence"]) == 3


@pytest.mark.slow
def test_resume_refuses_a_changed_config(tmp_path):
    common = ["run.progress=false", "run.evaluate=false", "output.render=false", f"output.dir={tmp_path}"]
    assert main(common) == 0
    with pytest.raises(InputError, match="configuration differs"):
        main(common + ["run.resume=true", "tracker.track_buffer=10"])
    with pytest.raises(InputError, match="needs output.dir"):
        main(["run.resume=true"])


def test_stage_key_changes_with_config_code_upstream_and_input():
    from kprtrack.cache import stage_key
    from kprtrack.detector.groundtruth import GroundTruthDetector
    from kprtrack.pose.groundtruth import GroundTruthPose

    base = stage_key("detector", {"a": 1}, GroundTruthDetector(), "", "input-1")
    assert base == stage_key("detector", {"a": 1}, GroundTruthDetector(), "", "input-1")
    assert base != stage_key("detector", {"a": 2}, GroundTruthDetector(), "", "input-1")
    assert base != stage_key("detector", {"a": 1}, GroundTruthPose(), "", "input-1")  # other code
    assert base != stage_key("detector", {"a": 1}, GroundTruthDetector(), "up", "input-1")
    assert base != stage_key("detector", {"a": 1}, GroundTruthDetector(), "", "input-2")


def test_stage_key_follows_the_weights_file_content(tmp_path):
    """Model stages expose ``weights_path``: replacing the file at the same path changes the key."""
    import os
    import shutil

    pytest.importorskip("onnxruntime")
    from kprtrack.cache import stage_key
    from kprtrack.detector.yolox_onnx import YOLOXOnnxDetector
    from tests.conftest import shared_file

    onnx_file = tmp_path / "det.onnx"
    shutil.copyfile(shared_file("models/yolox_nano_416.onnx"), onnx_file)
    detector = YOLOXOnnxDetector(weights=str(onnx_file))
    assert detector.weights_path == onnx_file
    before = stage_key("detector", {"weights": str(onnx_file)}, detector, "", "input")
    with open(onnx_file, "ab") as handle:  # same path, other bytes
        handle.write(b"\0")
    os.utime(onnx_file, ns=(1, 1))
    assert stage_key("detector", {"weights": str(onnx_file)}, detector, "", "input") != before
