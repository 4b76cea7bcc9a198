"""preset=fast|accurate|paper pick the whole stack; the command line still wins; without CUDA a heavy
stack says so and how to switch."""
from __future__ import annotations

import pytest

from kprtrack import first_run
from kprtrack.config import compose

TARGETS = {
    "yolox": "kprtrack.detector.yolox.YOLOXDetector",
    "yolox_onnx": "kprtrack.detector.yolox_onnx.YOLOXOnnxDetector",
    "hrnet": "kprtrack.pose.hrnet.HRNetPose",
    "movenet": "kprtrack.pose.movenet.MoveNetPose",
    "kpr": "kprtrack.reid.kpr.KPRReID",
    "onnx": "kprtrack.reid.onnx_reid.OnnxReID",
}
# preset -> (detector, weights), (pose, weights), (reid, weights key, weights), tracker motion (kalman)
PRESETS = {
    "fast": (("yolox_onnx", "yolox_nano"), ("movenet", "movenet_lightning_int8"),
             ("onnx", "model", "osnet_x0_25_msmt17"), True),
    "accurate": (("yolox", "yolox_x"), ("hrnet", "hrnet_w32_posetrack18_256x192"), ("kpr", "weights", "kpr_multi"), True),
    "paper": (("yolox", "yolox_x"), ("hrnet", "hrnet_w32_posetrack18_256x192"), ("kpr", "weights", "kpr_occ_pt_IN"),
              False),
}


def _stack(overrides):
    return compose("run", overrides, require_values=False)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("dataset", ["video", "images", "posetrack21", "demo"])
def test_preset_picks_the_whole_stack_whatever_the_data_set(preset, dataset):
    (detector, det_weights), (pose, pose_weights), (reid, key, reid_weights), kalman = PRESETS[preset]
    cfg = _stack([f"dataset={dataset}", f"preset={preset}"])
    assert (cfg.detector._target_, cfg.detector.weights) == (TARGETS[detector], det_weights)
    assert (cfg.pose._target_, cfg.pose.weights) == (TARGETS[pose], pose_weights)
    assert (cfg.reid._target_, cfg.reid[key]) == (TARGETS[reid], reid_weights)
    assert bool(cfg.tracker.get("kalman", False)) is kalman


def test_fast_reid_settings_are_osnets():
    reid = _stack(["dataset=video", "preset=fast"]).reid
    assert (reid.color, reid.scale, list(reid.mean), list(reid.std)) == (
        "rgb", pytest.approx(1 / 255), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def test_the_command_line_wins_over_the_preset():
    cfg = _stack(["dataset=video", "preset=fast", "reid=kpr_multi", "detector.weights=yolox_tiny"])
    assert cfg.reid._target_ == TARGETS["kpr"] and cfg.reid.weights == "kpr_multi"
    assert cfg.detector.weights == "yolox_tiny" and cfg.pose._target_ == TARGETS["movenet"]
    cfg = _stack(["dataset=video", "reid.weights=kpr_occ_pt_IN"])  # "unless the user names another"
    assert cfg.reid.weights == "kpr_occ_pt_IN"


def test_no_preset_keeps_each_data_sets_defaults():
    assert _stack([]).detector._target_ == "kprtrack.detector.groundtruth.GroundTruthDetector"  # the demo
    cfg = _stack(["dataset=posetrack21"])
    assert (cfg.detector.weights, cfg.reid.weights, cfg.tracker.get("kalman", False)) == ("yolox_x", "kpr_occ_pt_IN", False)
    cfg = _stack(["dataset=video"])
    assert (cfg.detector._target_, cfg.detector.weights, cfg.reid.weights) == (TARGETS["yolox_onnx"], "yolox_s", "kpr_multi")
    assert (cfg.reid.parts, cfg.reid.prompt_parts, cfg.reid.config_conflicts) == ("five_v", "cck6", "use_checkpoint")


def test_help_lists_the_presets(capsys):
    from kprtrack.cli import main

    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("  preset ")]
    assert {"fast", "accurate", "paper"} <= {c.strip() for c in line.split(None, 1)[1].split(",")}
    assert "preset=fast also picks detector=yolox_nano_onnx pose=movenet reid=osnet" in out
    assert out.startswith("usage: python -m kprtrack run [source=")


def test_without_cuda_a_heavy_stack_says_how_to_switch(monkeypatch):
    monkeypatch.setattr(first_run, "_cuda_available", lambda: False)
    line = first_run.cpu_notice(_stack(["dataset=video"]))
    assert line and "\n" not in line and "preset=fast" in line and "pose: HRNet" in line and "reid: KPR" in line
    assert first_run.cpu_notice(_stack(["dataset=video", "preset=fast"])) is None
    assert first_run.cpu_notice(_stack([])) is None  # the demo's oracle stages
    monkeypatch.setattr(first_run, "_cuda_available", lambda: True)
    assert first_run.cpu_notice(_stack(["dataset=video"])) is None
