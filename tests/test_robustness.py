"""Robustness of video tracking through the real CLI and real models (issue 7, item 6).

Damaged, empty, one-frame and huge videos, run as ``python -m kprtrack run`` subprocesses with the
YOLOX-nano ONNX detector, MoveNet and the OpenVINO ReID model from the shared folder. The SIGKILL +
resume case lives in test_resume_cache.py.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO, shared_file

pytestmark = pytest.mark.slow  # real CLI runs with real models in subprocesses

# The child reports its own peak memory so the huge-resolution test can bound it.
CHILD = ("import resource, sys\n"
         "from kprtrack.cli import main\n"
         "code = main(sys.argv[1:])\n"
         "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(code)\n")


def real_stages() -> list[str]:
    pytest.importorskip("onnxruntime", reason="the YOLOX and ReID ONNX models need onnxruntime")
    pytest.importorskip("ai_edge_litert", reason="MoveNet needs the ai-edge-litert package")
    return ["detector=yolox_onnx", f"detector.weights={shared_file('models/yolox_nano_416.onnx')}",
            "pose=movenet", f"pose.weights={shared_file('models/movenet_singlepose_lightning_int8.tflite')}",
            "reid=onnx", f"reid.model={shared_file('models/person-reidentification-retail-0287.onnx')}"]


def run_cli(video: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, int]:
    """``kprtrack run`` on a video file or folder; returns the process and its peak RSS in MB."""
    args = ["run", "dataset=video", f"dataset.path={video}", f"output.dir={out}", "run.progress=false",
            "run.cache=false", *real_stages(), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=120)
    peak = [line for line in result.stderr.splitlines() if line.startswith("peak_rss_kb")]
    return result, int(peak[-1].split()[1]) // 1024 if peak else -1


@functools.lru_cache(maxsize=1)
def _demo_frames() -> tuple[np.ndarray, ...]:
    capture = cv2.VideoCapture(str(shared_file("data/media/mmpose_demo.mp4")))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    assert len(frames) == 5
    return tuple(frames)


def demo_frames() -> tuple[np.ndarray, ...]:
    shared_file("data/media/mmpose_demo.mp4")  # skip (not cache a failure) where it is absent
    return _demo_frames()


def write_video(path: Path, frames, fps: float = 10, fourcc: str | None = None) -> Path:
    fourcc = fourcc or ("MJPG" if path.suffix == ".avi" else "mp4v")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} {width}x{height}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def decodable_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def read_outputs(run_dir: Path, name: str) -> tuple[dict, list[list[float]]]:
    tracks = json.loads((run_dir / "posetrack21" / "sequences" / f"{name}.json").read_text())
    mot_text = (run_dir / "mot" / f"{name}.txt").read_text()
    mot = [[float(v) for v in line.split(",")] for line in mot_text.splitlines() if line]
    return tracks, mot


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error" in line.lower()]


def assert_one_clear_message(result: subprocess.CompletedProcess, file_name: str, *phrases: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    [message] = [line for line in result.stderr.splitlines() if line.startswith("kprtrack run: error:")]
    assert file_name in message and all(p in message for p in phrases), message
    return message


def test_truncated_avi_tracks_frames_before_the_damage_and_keeps_finished_videos(tmp_path):
    frames = demo_frames()
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a_intact.avi", frames)
    full = write_video(tmp_path / "b_cut.avi", [frames[i % 5] for i in range(20)])
    data = full.read_bytes()
    (videos / "b_cut.avi").write_bytes(data[: len(data) // 2])  # header kept, second half and index gone
    decodable = decodable_frames(videos / "b_cut.avi")
    # OpenCV stops silently here: only the frame count reveals the damage. A frame count that is
    # not a multiple of the batch size (8) checks that a last partial batch is not lost.
    assert 5 < decodable < 18 and decodable % 8

    out = tmp_path / "run"
    result, _ = run_cli(videos, out)
    message = assert_one_clear_message(result, "b_cut.avi", "truncated or corrupt",
                                       f"frame {decodable} of 20")
    assert len(error_lines(result)) == 1, result.stderr

    # The finished video is complete and recorded as finished, the damaged one is not.
    state = json.loads((out / "state.json").read_text())
    assert set(state["finished"]) == {"a_intact"}
    intact, intact_mot = read_outputs(out, "a_intact")
    assert len(intact["images"]) == 5 and len(intact_mot) > 0

    # The damaged video's decodable frames were tracked and written, in every output.
    tracks, mot = read_outputs(out, "b_cut")
    assert [im["id"] for im in tracks["images"]] == list(range(decodable)), message
    labelled = {a["image_id"] for a in tracks["annotations"]}
    assert labelled and max(labelled) < decodable
    assert mot and {int(row[0]) for row in mot} <= set(range(1, decodable + 1))
    assert len(mot) == len(tracks["annotations"])
    assert decodable_frames(out / "render" / "b_cut.mp4") == decodable

    # Tracking is causal: the frames before the damage get the same tracks as an undamaged run.
    # (The last decoded frame is the one the cut goes through: OpenCV returns it half garbage.)
    clean = tmp_path / "clean"
    reference, _ = run_cli(full, clean, "output.render=false")
    assert reference.returncode == 0, reference.stderr[-3000:]
    _, clean_mot = read_outputs(clean, "b_cut")
    before_damage = [row for row in clean_mot if row[0] < decodable]
    assert before_damage and [row for row in mot if row[0] < decodable] == before_damage


def test_truncated_mp4_is_one_clear_message(tmp_path):
    full = write_video(tmp_path / "full.mp4", demo_frames())
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # OpenCV writes the index (moov) last: it is gone
    result, _ = run_cli(cut, tmp_path / "run")
    assert_one_clear_message(result, "cut.mp4", "cannot read video")
    assert not list((tmp_path / "run").glob("posetrack21/**/*.json"))


def test_video_without_people_writes_empty_tracks(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((240, 320, 3), 128, np.uint8)] * 3
    frames += [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(5)]
    video = write_video(tmp_path / "empty_street.mp4", frames)
    out = tmp_path / "run"
    result, _ = run_cli(video, out)
    assert result.returncode == 0, result.stderr[-3000:]
    tracks, mot = read_outputs(out, "empty_street")
    assert len(tracks["images"]) == 8 and tracks["annotations"] == []
    assert all((im["width"], im["height"]) == (320, 240) for im in tracks["images"])
    assert tracks["categories"][0]["name"] == "person"
    assert mot == [] and (out / "mot" / "empty_street.txt").stat().st_size == 0
    assert decodable_frames(out / "render" / "empty_street.mp4") == 8


def test_one_frame_video_confirms_tracks_at_once(tmp_path):
    video = write_video(tmp_path / "still.mp4", demo_frames()[:1])
    out = tmp_path / "run"
    result, _ = run_cli(video, out)
    assert result.returncode == 0, result.stderr[-3000:]
    tracks, mot = read_outputs(out, "still")
    # ByteTrack's frame-1 rule: confident detections of the first frame are confirmed tracks at once.
    assert len(mot) >= 3
    assert [int(row[1]) for row in mot] == list(range(1, len(mot) + 1))
    assert {int(row[0]) for row in mot} == {1}
    assert sorted(a["track_id"] for a in tracks["annotations"]) == list(range(1, len(mot) + 1))
    assert len(tracks["images"]) == 1 and all(len(a["keypoints"]) == 51 for a in tracks["annotations"])
    assert decodable_frames(out / "render" / "still.mp4") == 1


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ltwh boxes, [len(a), len(b)]."""
    a_lo, b_lo = a[:, None, :2], b[None, :, :2]
    a_hi, b_hi = a_lo + a[:, None, 2:], b_lo + b[None, :, 2:]
    inter = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0, None).prod(-1)
    return inter / (a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter)


def test_huge_resolution_finds_the_same_people_with_sane_memory(tmp_path):
    scale = 8  # 960x540 -> 7680x4320 (8K)
    small = demo_frames()[:2]
    big = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) for f in small]
    frame_mb = big[0].nbytes / 2**20
    video = write_video(tmp_path / "eight_k.avi", big)
    reference = write_video(tmp_path / "small.avi", small)
    del big

    out, ref_out = tmp_path / "run", tmp_path / "ref"
    result, peak_mb = run_cli(video, out)
    assert result.returncode == 0, result.stderr[-3000:]
    small_result, small_peak_mb = run_cli(reference, ref_out)
    assert small_result.returncode == 0, small_result.stderr[-3000:]

    tracks, mot = read_outputs(out, "eight_k")
    _, small_mot = read_outputs(ref_out, "small")
    assert tracks["images"][0]["width"] == 7680 and tracks["images"][0]["height"] == 4320
    # The detector sees the same letterboxed pixels: the same people, boxes scaled by 8.
    assert len(mot) == len(small_mot) >= 3
    for frame in (1, 2):
        boxes = np.array([r[2:6] for r in mot if r[0] == frame]) / scale
        small_boxes = np.array([r[2:6] for r in small_mot if r[0] == frame])
        iou = box_iou(boxes, small_boxes)
        assert (iou.max(axis=1) > 0.85).all(), iou
    # MoveNet sees the same crops too: confident keypoints are the small run's, scaled by 8 (the
    # int8 model moves a joint by a few % of the person's height between the two resamplings).
    small_tracks, _ = read_outputs(ref_out, "small")
    assert len(tracks["annotations"]) == len(small_tracks["annotations"])
    errors = []
    for ann in tracks["annotations"]:
        same_frame = [a for a in small_tracks["annotations"] if a["image_id"] == ann["image_id"]]
        overlap = box_iou(np.array([ann["bbox"]]) / scale, np.array([a["bbox"] for a in same_frame]))[0]
        small_ann = same_frame[int(overlap.argmax())]
        kps = np.array(ann["keypoints"]).reshape(17, 3)
        small_kps = np.array(small_ann["keypoints"]).reshape(17, 3)
        both = (kps[:, 2] > 0.3) & (small_kps[:, 2] > 0.3)
        error = np.linalg.norm(kps[both, :2] / scale - small_kps[both, :2], axis=1) / small_ann["bbox"][3]
        assert both.sum() >= 3 and np.median(error) < 0.15, (error, small_ann["bbox"])
        errors.append(error)
    assert np.median(np.concatenate(errors)) < 0.05
    assert decodable_frames(out / "render" / "eight_k.mp4") == 2
    # Memory: a handful of full-resolution frames at most (decode, render, encoder), never one per
    # detection or per stage copy. The small run measures everything that is not frame-sized.
    assert peak_mb - small_peak_mb < 8 * frame_mb, (peak_mb, small_peak_mb, frame_mb)
