"""MoveNet SinglePose on real COCO people: the real-weights check of crop/warp/back-projection."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kprtrack.errors import InputError, MissingModelError
from kprtrack.record import Detections, Frame
from tests.conftest import shared_file

pytest.importorskip("ai_edge_litert", reason="pose=movenet needs ai-edge-litert")
cv2 = pytest.importorskip("cv2")

from kprtrack.pose.movenet import MoveNetPose  # noqa: E402

COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                        1.07, 1.07, .87, .87, .89, .89]) / 10.0


def oks(pred: np.ndarray, gt: np.ndarray, area: float) -> float:
    """COCO object keypoint similarity over the labelled joints of one person."""
    visible = gt[:, 2] > 0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(axis=1)
    e = d2 / (2 * COCO_SIGMAS) ** 2 / (area + np.spacing(1)) / 2
    return float(np.exp(-e)[visible].mean())


@pytest.fixture(scope="module")
def movenet():
    return MoveNetPose(str(shared_file("models/movenet_singlepose_lightning_int8.tflite")))


def _coco_people():
    path = shared_file("data/coco_kpts/test_coco.json")
    data = json.loads(path.read_text())
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"] and a["num_keypoints"] > 0]
        if anns:
            yield path.parent / image["file_name"], anns


def test_mean_oks_on_coco_gt_boxes(movenet):
    scores = []
    for file, anns in _coco_people():
        frame = Frame("coco", 0, cv2.imread(str(file)), file_name=file.name)
        boxes = np.array([a["bbox"] for a in anns], np.float32)
        boxes[:, 2:] += boxes[:, :2]
        native = movenet.estimate_native(frame, boxes)
        for ann, pred in zip(anns, native):
            scores.append(oks(pred, np.array(ann["keypoints"], float).reshape(17, 3), ann["area"]))
        # the PoseTrack-order output keeps the shared joints where the native prediction put them
        out = movenet.estimate(frame, Detections(boxes, np.ones(len(boxes)))).keypoints
        shared = [0] + list(range(3, 17))
        np.testing.assert_allclose(out[:, shared], native[:, shared], atol=1e-4)
    assert len(scores) == 12
    assert np.mean(scores) >= 0.65, scores


def test_bad_boxes_give_no_keypoints(movenet):
    image = np.full((120, 160, 3), 127, np.uint8)
    frame = Frame("s", 0, image)
    boxes = np.array([[np.nan, 0, 10, 10], [5, 5, 6, 6], [200, 200, 300, 300], [150, 100, 170, 140]], np.float32)
    out = movenet.estimate(frame, Detections(boxes, np.ones(4))).keypoints
    assert (out[:3] == 0).all() and np.isfinite(out).all()
    assert movenet.estimate(frame, Detections.empty()).keypoints.shape == (0, 17, 3)


def test_missing_or_wrong_model_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        MoveNetPose(str(tmp_path / "missing.tflite"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="TFLite"):
        MoveNetPose(str(junk))


def test_runtime_missing_message(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(MissingModelError, match="pip install ai-edge-litert"):
        MoveNetPose("movenet_lightning_int8")


def test_approximate_head_joints_beat_copying_the_eyes_on_posetrack18(movenet):
    """The documented COCO -> PoseTrack head approximation, on real PoseTrack18 people."""
    from kprtrack.pose.layouts import coco_to_posetrack

    root = shared_file("data/posetrack18/annotations/test_posetrack18_val.json").parent.parent
    data = json.loads((root / "annotations" / "test_posetrack18_val.json").read_text())
    hits = {"approx": [], "eyes": []}
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"] and a.get("bbox_head")]
        if not anns:
            continue
        frame = Frame("pt", 0, cv2.imread(str(root / image["file_name"])))
        boxes = np.array([a["bbox"] for a in anns], np.float32)
        boxes[:, 2:] += boxes[:, :2]
        native = movenet.estimate_native(frame, boxes)
        approx = coco_to_posetrack(native)
        for ann, eyes, guess in zip(anns, native, approx):
            gt = np.array(ann["keypoints"], float).reshape(17, 3)
            head = 0.6 * np.hypot(*ann["bbox_head"][2:])  # PoseTrack's head size
            for joint in (1, 2):
                if gt[joint, 2] > 0:
                    hits["approx"].append(np.linalg.norm(guess[joint, :2] - gt[joint, :2]) < 0.5 * head)
                    hits["eyes"].append(np.linalg.norm(eyes[joint, :2] - gt[joint, :2]) < 0.5 * head)
    assert len(hits["approx"]) >= 20
    assert np.mean(hits["approx"]) >= 0.7 > np.mean(hits["eyes"]) + 0.3, hits
