"""End to end through the real CLI (a subprocess, as users run it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kprtrack.cli import COMMANDS, main


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "kprtrack", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def run_folder(stdout: str) -> Path:
    line = [l for l in stdout.splitlines() if l.startswith("run folder: ")][-1]
    return Path(line.split(": ", 1)[1])


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "reid-dataset" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert main(["frobnicate", "--help"]) == 2


# command -> (config groups with their options, top-level options) its --help must show
COMMAND_HELP = {
    "run": ({"dataset": ["demo*", "images", "posetrack21", "video"], "detector": ["groundtruth*", "yolox"],
             "pose": ["hrnet", "movenet"], "reid": ["kpr", "part_colors*"], "tracker": ["kprtrack*"],
             "output": ["default*"]},
            ["batch_size: 8", "resume: false", "min_tracklet_length: 3", "track_buffer:", "eval.<key>"]),
    "eval": ({}, ["format: posetrack", "gt: null", "pred: null", "out: null"]),
    "demo": ({}, ["seed=0", "num_sequences=3", "root=", "force="]),
    "export": ({"detector": ["yolox*", "yolox_onnx"]}, ["onnx_file: null", "opset: 11", "weights:"]),
    "reid-dataset": ({}, ["root: ???", "output_dir: occ_ptrack", "query_ratio: 0.2"]),
    "reid-eval": ({"reid": ["kpr", "onnx", "part_colors*"]}, ["dataset_dir: occ_ptrack", "prompts: both"]),
    "reid-labels": ({}, ["dataset_dir: ???", "method: keypoints", "scheme: eight", "output: null"]),
    "train-reid": ({"recipe": ["in*", "sol"]}, ["output_dir: train_reid", "eval_every: 10", "dataset_dir: occ_ptrack"]),
    "train-detector": ({}, ["output_dir: train_detector", "weights: yolox_x", "no_aug_epochs: 5", "root: ???"]),
    "train-pose": ({}, ["output_dir: train_pose", "weights: hrnet_w32_coco_256x192", "codec: msra", "kit_python: null"]),
    "merge": ({}, ["root=None", "output.dir=None", "run.evaluate=None", "link=True", "force=False"]),
}


def test_every_command_is_covered_by_the_help_test():
    assert set(COMMAND_HELP) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMAND_HELP))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_command_help_lists_groups_and_options(command, flag, capsys):
    groups, options = COMMAND_HELP[command]
    assert main([command, flag]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith(f"usage: python -m kprtrack {command}") and captured.err == ""
    assert COMMANDS[command][1] in out
    for group, choices in groups.items():
        [line] = [l for l in out.splitlines() if l.startswith(f"  {group} ")]
        listed = [c.strip() for c in line.split(None, 1)[1].split(",")]
        assert set(choices) <= set(listed), (group, listed)
    if not groups:
        assert "config groups" not in out
    for option in options:
        assert option in out, option


def test_help_wins_over_other_arguments(capsys):
    # Hydra would reject --help as an override (lexer error); nothing runs, nothing is written.
    assert main(["run", "dataset=video", "--help"]) == 0
    assert main(["dataset=video", "-h"]) == 0  # the implicit `run`
    assert main(["help", "eval"]) == 0
    out = capsys.readouterr().out
    assert out.count("usage: python -m kprtrack run") == 2 and "usage: python -m kprtrack eval" in out
    assert "dataset=posetrack21 also picks detector=yolox" in out


def test_help_through_the_real_entry_point():
    for flag in ("--help", "-h"):
        result = run_cli("run", flag)
        assert result.returncode == 0 and result.stdout.startswith("usage: python -m kprtrack run"), result.stderr
        assert "LexerNoViableAltException" not in result.stderr


@pytest.mark.slow
def test_demo_run_without_arguments(tmp_path):
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = run_folder(result.stdout)
    assert out.is_relative_to(tmp_path / "outputs")
    jsons = sorted((out / "posetrack21/sequences").glob("*.json"))
    txts = sorted((out / "mot").glob("*.txt"))
    assert len(jsons) >= 2 and [p.stem for p in jsons] == [p.stem for p in txts]
    data = json.loads(jsons[0].read_text())
    assert data["annotations"] and {"track_id", "keypoints", "scores", "bbox"} <= set(data["annotations"][0])
    assert (out / "config.yaml").is_file()


@pytest.mark.slow
def test_posetrack18_with_oracle_stages(shared, tmp_path):
    args = ["dataset=posetrack21", f"dataset.root={shared / 'data/posetrack18'}", "dataset.annotations_dir=annotations",
            "detector=groundtruth", "pose=groundtruth", "reid=part_colors", "run.progress=false"]
    result = run_cli(*args, "output.filters.enabled=false", f"output.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "run/posetrack21/sequences").glob("*.json"))
    assert files == ["003418_mpii_test.json", "009473_mpii_test.json", "012834_mpii_test.json"]
    data = json.loads((tmp_path / "run/posetrack21/sequences/012834_mpii_test.json").read_text())
    # one frame each: ByteTrack confirms every track born on the first frame
    assert len(data["annotations"]) == 11 and data["images"][0]["id"] == 10128340000

    # dataset=posetrack21 filters by default (TrackLab's protocol): 1-frame tracks are all dropped
    result = run_cli(*args, f"output.dir={tmp_path / 'filtered'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "output filters: 0 of 14 tracked detections written" in result.stdout
    data = json.loads((tmp_path / "filtered/posetrack21/sequences/012834_mpii_test.json").read_text())
    assert data["annotations"] == [] and len(data["images"]) == 1
    state = json.loads((tmp_path / "filtered/state.json").read_text())
    assert state["output_filters"]["total"]["dropped_short_tracklets"] == 14
    assert "enabled: true" in (tmp_path / "filtered/config.yaml").read_text().split("filters:")[1]


@pytest.mark.slow
def test_posetrack_defaults_to_the_paper_models_and_says_how_to_get_weights(shared, tmp_path):
    result = run_cli("dataset=posetrack21", f"dataset.root={shared / 'data/posetrack18'}",
                     "dataset.annotations_dir=annotations", "detector=groundtruth", "pose=groundtruth",
                     f"output.dir={tmp_path / 'run'}", env={"KPRTRACK_HOME": str(tmp_path / "home")})
    assert result.returncode == 2
    assert "kpr_occ_pt_IN" in result.stderr and "reid=part_colors" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_data_root_exit_2(tmp_path):
    result = run_cli("dataset=posetrack21", f"dataset.root={tmp_path / 'nope'}", f"output.dir={tmp_path / 'o'}")
    assert result.returncode == 2
    assert "data root not found" in result.stderr and str(tmp_path / "nope") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_truncated_json_keeps_finished_sequences(shared, tmp_path):
    root = tmp_path / "pt"
    (root / "annotations/val").mkdir(parents=True)
    (root / "images").symlink_to(shared / "data/posetrack18/images")
    src = shared / "data/posetrack18/annotations/val"
    for name in ("003418_mpii_test", "009473_mpii_test"):
        (root / f"annotations/val/{name}.json").write_text((src / f"{name}.json").read_text())
    text = (src / "012834_mpii_test.json").read_text()
    (root / "annotations/val/012834_mpii_test.json").write_text(text[: len(text) // 2])
    result = run_cli("dataset=posetrack21", f"dataset.root={root}", "dataset.annotations_dir=annotations",
                     "detector=groundtruth", "pose=groundtruth", "reid=part_colors", f"output.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "012834_mpii_test.json" in result.stderr and "truncated" in result.stderr
    assert sorted(p.stem for p in (tmp_path / "run/posetrack21/sequences").glob("*.json")) == [
        "003418_mpii_test", "009473_mpii_test"]


@pytest.mark.slow
def test_video_with_oracle_detector_is_a_clear_error(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (32, 32))
    writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.release()
    result = run_cli("dataset=video", f"dataset.path={path}", "detector=groundtruth", "pose=groundtruth",
                     "reid=part_colors", f"output.dir={tmp_path / 'o'}")
    # refused before any frame is decoded, naming both oracle stages at once
    assert result.returncode == 2, result.stderr
    assert "detector (GroundTruthDetector) needs ground truth" in result.stderr
    assert "pose (GroundTruthPose) needs ground truth" in result.stderr


@pytest.mark.slow
def test_bad_stage_value_is_one_line(tmp_path):
    result = run_cli("tracker.ema_alpha=2", "run.progress=false", f"output.dir={tmp_path / 'o'}")
    assert result.returncode == 2
    assert "bad configuration for kprtrack.tracker.KPRTracker: ema_alpha must be in [0, 1]" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_every_missing_weights_file_is_named_in_one_go(tmp_path):
    """A first run on a new machine: the detector's and the pose model's files are not there and KPR's
    is not in the cache. One run names all three (not one per attempt) and writes nothing."""
    import cv2
    import numpy as np

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.release()
    result = run_cli("dataset=video", f"dataset.path={path}", f"detector.weights={tmp_path / 'no_yolox.onnx'}",
                     f"pose.weights={tmp_path / 'no_hrnet.pth'}", "reid.download=false",
                     f"output.dir={tmp_path / 'o'}", env={"KPRTRACK_HOME": str(tmp_path / "home")})
    assert result.returncode == 2, result.stderr[-3000:]
    err = result.stderr
    assert "3 stages cannot start" in err and "Traceback" not in err
    assert f"detector: {tmp_path / 'no_yolox.onnx'}" in err and f"pose: {tmp_path / 'no_hrnet.pth'}" in err
    assert "reid: " in err and "kpr_dancetrack_sportsmot_posetrack21_occludedduke_market_split0.pth.tar" in err
    assert not list((tmp_path / "o").rglob("*.json")) and not list((tmp_path / "o").rglob("*.mp4"))


@pytest.mark.slow
def test_official_kit_reads_a_run_folder_as_the_readme_says(tmp_path):
    """README "Outputs": the kit's own script, pointed at <run>/posetrack21/sequences, gives the run's numbers."""
    from tests.kit.oracle import kit_python, kit_root

    python = kit_python()  # skips with the reason where the kit's venv cannot be built
    run_dir = tmp_path / "run"
    result = run_cli("run.progress=false", "output.render=false", f"output.dir={run_dir}",
                     "output.filters.enabled=true", "pose.score_jitter=0.5", "detector.drop_rate=0.3",
                     "dataset.num_sequences=2", "dataset.num_frames=30", env={"KPRTRACK_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    ours = json.loads((run_dir / "eval/metrics.json").read_text())
    kit = subprocess.run([str(python), "scripts/run_posetrack_challenge.py", "--GT_FOLDER", ours["gt"],
                          "--TRACKERS_FOLDER", str(run_dir / "posetrack21/sequences"), "--USE_PARALLEL", "False"],
                         cwd=kit_root() / "eval/posetrack21", capture_output=True, text=True, timeout=300)
    assert kit.returncode == 0, kit.stderr[-3000:]
    header, values = (run_dir / "posetrack21/sequences/pose_hota_results.txt").read_text().splitlines()[:2]
    table = dict(zip([h.strip() for h in header.split("&")], [v.strip() for v in values.split("&")]))
    combined = ours["keypoints"]["combined"]
    for name in ("HOTA", "DetA", "AssA", "DetRe", "AssRe"):
        assert float(table[name]) == pytest.approx(100 * combined[name], abs=5e-3), name
    assert 0 < float(table["HOTA"]) < 100
