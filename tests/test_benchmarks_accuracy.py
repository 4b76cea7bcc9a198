"""benchmarks/accuracy.py: frame ranges, ground-truth handling, the table, and short end-to-end runs
(PETS09's first frames through the real stages, kprtrack rows and Roboflow's ByteTrack if installed; BoxMOT,
which needs its own venv, is skipped here)."""
from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import shared_file

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def acc():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
    sys.path.remove(str(BENCH))


def gt_table(rows):
    """MOT15-style GT rows: frame, id, x, y, w, h, flag, world_x, world_y, -1."""
    return np.array([[f, i, x, 10, 20, 40, flag, -4.2, 7.5, 0] for f, i, x, flag in rows], np.float64)


# ------------------------------------------------------------------------------------- frames
@pytest.mark.parametrize("text, expected", [("1-400", (1, 400)), ("5", (5, 5)), ("3-", (3, None)),
                                            (" 2 - 9 ", (2, 9)), (None, None)])
def test_parse_frames(acc, text, expected):
    assert acc.parse_frames(text) == expected


@pytest.mark.parametrize("text", ["0-5", "9-3", "a-b", "1-2-3", "-4", ""])
def test_parse_frames_refuses(acc, text):
    with pytest.raises(ValueError, match="--frames"):
        acc.parse_frames(text)


def test_frame_range_defaults_to_the_ground_truth_and_stops_at_the_video(acc):
    gt = gt_table([(1, 1, 0, 1), (400, 1, 0, 1)])
    assert acc.frame_range(None, gt, 795) == (1, 400)
    assert acc.frame_range(None, None, 795) == (1, 795)
    assert acc.frame_range((10, None), gt, 795) == (10, 400)
    assert acc.frame_range((1, 400), gt, 20) == (1, 20)  # only 20 frames decoded
    with pytest.raises(ValueError, match="decoded"):
        acc.frame_range((30, 40), gt, 20)


def test_crop_rows_keeps_the_range_and_renumbers_from_one(acc):
    rows = gt_table([(f, 1, f, 1) for f in range(1, 11)])
    out = acc.crop_rows(rows, 4, 6)
    assert out[:, 0].tolist() == [1, 2, 3] and out[:, 2].tolist() == [4, 5, 6]
    assert rows[0, 0] == 1  # the input is not modified


def test_gt_against_itself_is_perfect_on_pets09(acc):
    gt = acc.read_gt(shared_file("data/pets09/gt_frames_1-400.txt"))
    assert gt.shape[1] == 10 and int(gt[:, 0].max()) == 400 and (gt[:, 6] == 0).any()  # some rows flagged 0
    m = acc.evaluate_range(gt, gt, 1, 400)
    assert m["HOTA"] == pytest.approx(1) and m["IDF1"] == pytest.approx(1) and m["MOTA"] == pytest.approx(1)
    assert m["IDSW"] == 0
    # As-is, the rows flagged 0 leave the GT but stay in a prediction: false positives, not 100.
    assert acc.evaluate_range(gt, gt, 1, 400, all_visible=False)["MOTA"] < 0.95


def test_only_the_evaluated_frames_count(acc):
    gt = gt_table([(f, k, 100 * k + f, 1) for f in range(1, 21) for k in (1, 2)])
    pred = gt.copy()
    pred[:, 6] = 0.9
    # Garbage outside frames 5-15 (a swapped id pair, a ghost box) does not change the score.
    outside = (pred[:, 0] < 5) | (pred[:, 0] > 15)
    pred[outside & (pred[:, 1] == 1), 1] = 7
    ghost = np.array([[18, 9, 600, 10, 20, 40, 0.9, -1, -1, -1]], np.float64)
    m = acc.evaluate_range(gt, np.vstack([pred, ghost]), 5, 15)
    assert m["HOTA"] == pytest.approx(1) and m["IDSW"] == 0
    # Inside the range an id switch is seen.
    pred[(pred[:, 0] >= 10) & (pred[:, 1] == 2), 1] = 8
    assert acc.evaluate_range(gt, pred, 5, 15)["IDSW"] == 1
    # And a sequence where the evaluated window holds no prediction at all scores 0, without error.
    assert acc.evaluate_range(gt, pred[pred[:, 0] > 15], 5, 15)["HOTA"] == 0


def test_mot_rows_roundtrip(acc, tmp_path):
    from kprtrack.eval.mot import read_mot_txt

    boxes = np.array([[10, 20, 30, 60], [0, 0, 5, 5], [1, 2, 3, 4]], np.float32)
    rows = acc.mot_rows(7, boxes, np.array([3, -1, 5]), np.array([0.9, 0.5, 0.25], np.float32))
    assert rows.shape == (2, 10) and rows[:, 1].tolist() == [3, 5]
    assert rows[0, 2:6].tolist() == [10, 20, 20, 40]
    acc.write_mot(tmp_path / "t.txt", rows)
    back = read_mot_txt(tmp_path / "t.txt").rows
    np.testing.assert_allclose(back, rows, atol=1e-6)
    acc.write_mot(tmp_path / "empty.txt", np.zeros((0, 10)))
    assert (tmp_path / "empty.txt").read_text() == ""


def test_table_sorts_by_hota_and_lists_skipped_rows_last(acc):
    metric = lambda h: {"HOTA": h, "AssA": h, "DetA": h, "MOTA": h, "IDF1": h, "IDSW": 3}  # noqa: E731
    results = [{"label": "low", "metrics": metric(0.4), "fps": 1000.0},
               {"label": "gone", "skipped": "not installed"},
               {"label": "high", "metrics": metric(0.55), "fps": 20.0}]
    text = acc.table(results)
    lines = text.splitlines()
    assert lines[0].split() == ["tracker", "HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDSW", "fps"]
    assert [line.split()[0] for line in lines[2:]] == ["high", "low", "gone"]
    assert "55.0" in lines[2] and "1,000" in lines[3]
    md = acc.table(results, markdown=True).splitlines()
    assert md[0] == "| tracker | HOTA | AssA | DetA | MOTA | IDF1 | IDSW | fps |"
    assert md[2].startswith("| high | 55.0 |") and md[-1].startswith("| gone | - |")


def test_rows_list_and_selection(acc):
    rows = acc.kprtrack_rows()
    assert len(rows) >= 4 and {r.embeddings for r in rows} == {"none", "osnet", "part_colors"}
    with pytest.raises(ValueError, match="embeddings"):
        acc.kprtrack_rows([("x", "kprtrack", "kpr", [])])
    args = acc.parse_args(["--tracker", "kprtrack", "--set", "kalman=true", "--set", "iou_weight=1"])
    assert args.rows == "kprtrack" and args.gt.endswith("gt_frames_1-400.txt")
    [row] = acc.select_rows(args)
    assert row.overrides == ["kalman=true", "iou_weight=1"] and row.embeddings == "osnet"
    # The row's tracker is the one `python -m kprtrack run tracker=... tracker.k=v` builds.
    tracker = acc.build_kprtrack(row.config, row.overrides)
    assert tracker.iou_weight == 1
    with pytest.raises(SystemExit):
        acc.parse_args(["--set", "kalman=true"])  # --set needs --tracker
    peers = acc.peers
    assert peers.boxmot_names(None) == list(peers.BOXMOT_TRACKERS)
    assert peers.boxmot_names("none") == [] and peers.boxmot_names("botsort, ocsort") == ["botsort", "ocsort"]
    with pytest.raises(ValueError, match="unknown"):
        peers.boxmot_names("sort3000")


def test_cache_key_follows_config_weights_code_and_input(acc, tmp_path):
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"one")
    config = {"_target_": "kprtrack.reid.onnx_reid.OnnxReID", "model": str(weights), "color": "rgb"}
    key = acc.cache_key("osnet", config, "up", "input")
    assert key == acc.cache_key("osnet", dict(config), "up", "input")
    assert key != acc.cache_key("osnet", {**config, "color": "bgr"}, "up", "input")
    assert key != acc.cache_key("osnet", config, "other upstream", "input")
    assert key != acc.cache_key("osnet", config, "up", "other input")
    weights.write_bytes(b"two!")  # same path, new weights
    assert key != acc.cache_key("osnet", config, "up", "input")
    # The code checksum covers the stage's package without importing it (no model runtime on a re-run).
    assert acc.code_checksum("kprtrack.reid.onnx_reid.OnnxReID") != acc.code_checksum("kprtrack.pose.movenet.MoveNetPose")


def test_missing_boxmot_venv_skips_its_rows_with_the_reason(acc, tmp_path):
    args = SimpleNamespace(boxmot="botsort", boxmot_venv=str(tmp_path / "nope"))
    rows = acc.peers.peer_rows(args, acc.Row)
    boxmot = [r for r in rows if r.kind == "boxmot"]
    assert len(boxmot) == 1 and "boxmot_env.sh" in boxmot[0].skipped and boxmot[0].embeddings == "osnet"


# ------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_pets09_first_frames_end_to_end_then_only_retracks(acc, tmp_path, capsys):
    video = shared_file("data/pets09/vtest.avi")
    gt = shared_file("data/pets09/gt_frames_1-400.txt")
    for name in ("yolox_nano_416.onnx", "osnet_x0_25_msmt17.onnx", "movenet_singlepose_lightning_int8.tflite"):
        shared_file(f"models/{name}")
    pytest.importorskip("ai_edge_litert")
    argv = ["--video", str(video), "--gt", str(gt), "--max-frames", "12", "--frames", "1-12", "--boxmot", "none",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--quiet"]
    assert acc.main(argv) == 0
    first = capsys.readouterr()
    assert "GT vs itself: HOTA 100.0 IDF1 100.0" in first.err and "on 12 frames" in first.err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    kpr = [r for r in results if r["kind"] == "kprtrack"]
    assert len(kpr) == len(acc.ROWS)
    for r in kpr:  # real detections and embeddings: the first frames are tracked well
        assert r["metrics"]["HOTA"] > 0.4 and r["metrics"]["DetA"] > 0.4 and r["fps"] > 0, r
        assert (tmp_path / "out" / "mot" / f"{acc.slug(r['label'])}.txt").is_file()
    [robo] = [r for r in results if r["kind"] == "roboflow"]
    if acc.peers.roboflow_version():
        assert robo["metrics"]["HOTA"] > 0.3
    else:
        assert "pip install" in robo["skipped"]
    assert "| tracker | HOTA |" in (tmp_path / "out" / "table.md").read_text()
    assert "fed:" in first.out and "OSNet" in first.out

    # Second run: every stage output comes from the cache (no stage runs), one kprtrack setting only.
    started = time.perf_counter()
    assert acc.main(argv + ["--tracker", "kprtrack", "--set", "kalman=true", "--set", "iou_weight=1"]) == 0
    second = capsys.readouterr()
    assert " frames in " not in second.err and time.perf_counter() - started < 15
    [row] = json.loads((tmp_path / "out" / "results.json").read_text())
    assert row["overrides"] == ["kalman=true", "iou_weight=1"] and row["metrics"]["HOTA"] > 0.4


def test_folder_of_frames_without_ground_truth(acc, tmp_path, capsys):
    import cv2

    model = shared_file("models/yolox_nano_416.onnx")
    video = shared_file("data/media/mmpose_demo.mp4")
    capture = cv2.VideoCapture(str(video))
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(frames / f"{index:04d}.jpg"), image)
    capture.release()
    argv = ["--video", str(frames), "--tracker", "kprtrack", "--embeddings", "none", "--set", "appearance_weight=0",
            "--set", "iou_weight=1", "--detector", str(model), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--quiet"]
    assert acc.main(argv) == 0
    assert "nothing evaluated" in capsys.readouterr().err
    tracks = (tmp_path / "out" / "mot" / f"{acc.slug('kprtrack appearance_weight=0 iou_weight=1')}.txt").read_text()
    assert {int(line.split(",")[0]) for line in tracks.splitlines()} == {1, 2, 3}


@pytest.mark.slow
def test_posetrack_mode_reports_keypoint_hota(acc, tmp_path, capsys):
    root = shared_file("data/posetrack18")
    shared_file("models/movenet_singlepose_lightning_int8.tflite")
    pytest.importorskip("ai_edge_litert")
    argv = ["--posetrack", str(root / "annotations" / "val"), "--images", str(root), "--tracker", "kprtrack",
            "--embeddings", "part_colors", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
            "--quiet"]
    assert acc.main(argv) == 0
    out = capsys.readouterr().out
    assert "kpHOTA" in out and "3 sequence(s)" in out
    [row] = json.loads((tmp_path / "out" / "results.json").read_text())
    assert 0 < row["metrics"]["kpHOTA"] <= 1 and 0 < row["metrics"]["HOTA"] <= 1
    assert len(list((tmp_path / "out" / "posetrack").rglob("*.json"))) == 3
