"""PoseTrack21 evaluation: real PoseTrack18 files, a multi-frame sequence built from them, bad input."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kprtrack.errors import InputError
from kprtrack.eval import evaluate_posetrack
from kprtrack.eval.geometry import box_region_overlaps, points_in_polygons
from tests.conftest import shared_file

QUIET = {"progress": False}


def _real_gt_dir() -> Path:
    return shared_file("data/posetrack18/annotations/val")


def test_ground_truth_against_itself_scores_100(tmp_path):
    gt = _real_gt_dir()
    result = evaluate_posetrack(gt, gt, tmp_path, {**QUIET, "protocol": "corrected"})
    assert len(result["sequences"]) == 3
    for section in ("box", "keypoints"):
        combined = result[section]["combined"]
        for field in ("HOTA", "DetA", "AssA", "LocA"):
            assert combined[field] == pytest.approx(1.0), (section, field)
        for seq in result["sequences"]:
            assert result[section]["per_sequence"][seq]["HOTA"] == pytest.approx(1.0)
    # ears never count; 15 joint types reported
    assert len(result["keypoints"]["per_joint"]) == 15 and "left_ear" not in result["keypoints"]["per_joint"]


def test_kit_protocol_scores_unannotated_joint_types_zero(tmp_path):
    """The kit's sequence Total is the mean over all 15 joint types: GT against itself scores the
    fraction of joint types annotated in the sequence (003418 annotates 10 of 15)."""
    gt = _real_gt_dir()
    pred = tmp_path / "pred"
    for path in gt.glob("*.json"):
        data = json.loads(path.read_text())
        for ann in data["annotations"]:
            ann["scores"] = [1.0] * 17  # the kit crashes on the GT's empty "scores"
        _write(pred, path.stem, data)
    result = evaluate_posetrack(gt, pred, None, QUIET)
    joints = result["keypoints"]["per_sequence_joint"]["003418_mpii_test"]
    annotated = {name for name, row in joints.items() if row["HOTA_TP"] > 0}
    assert len(annotated) == 10 and "left_knee" not in annotated
    assert all(joints[name]["HOTA"] == (1.0 if name in annotated else 0.0) for name in joints)
    assert result["keypoints"]["per_sequence"]["003418_mpii_test"]["HOTA"] == pytest.approx(10 / 15)
    assert result["keypoints"]["per_sequence"]["012834_mpii_test"]["HOTA"] == pytest.approx(1.0)


def _sequence_from_real(frames: int = 6) -> dict:
    """A multi-frame sequence: the 11 people of the real 012834 frame, moving 6 px right per frame."""
    source = json.loads((_real_gt_dir() / "012834_mpii_test.json").read_text())
    image0, anns0 = source["images"][0], source["annotations"]
    images, annotations = [], []
    for t in range(frames):
        image = dict(image0, id=1000 + t, frame_id=1000 + t, file_name=f"images/val/synth/{t:06d}.jpg")
        images.append(image)
        for ann in anns0:
            ann = copy.deepcopy(ann)
            kp = np.asarray(ann["keypoints"], float).reshape(17, 3)
            kp[kp[:, 2] > 0, 0] += 6 * t
            ann.update(image_id=image["id"], keypoints=kp.reshape(-1).tolist(),
                       bbox=[ann["bbox"][0] + 6 * t, *ann["bbox"][1:]],
                       bbox_head=[ann["bbox_head"][0] + 6 * t, *ann["bbox_head"][1:]])
            annotations.append(ann)
    return {"images": images, "annotations": annotations, "categories": source["categories"]}


def _as_prediction(gt: dict) -> dict:
    pred = copy.deepcopy(gt)
    for ann in pred["annotations"]:
        ann["scores"] = [1.0 if v > 0 else 0.0 for v in ann["keypoints"][2::3]]
        ann["score"] = 1.0
    return pred


def _write(folder: Path, name: str, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data))
    return folder


def test_swapped_ids_on_half_the_frames_lower_assa_keep_deta(tmp_path):
    gt = _sequence_from_real()
    gt_dir = _write(tmp_path / "gt", "synth", gt)
    same = evaluate_posetrack(gt_dir, _write(tmp_path / "same", "synth", _as_prediction(gt)), None, QUIET)
    pred = _as_prediction(gt)
    late = {im["id"] for im in pred["images"][3:]}
    for ann in pred["annotations"]:  # swap tracks 1<->3 and 5<->7 on the second half
        if ann["image_id"] in late and ann["track_id"] in (1, 3, 5, 7):
            ann["track_id"] = {1: 3, 3: 1, 5: 7, 7: 5}[ann["track_id"]]
    swapped = evaluate_posetrack(gt_dir, _write(tmp_path / "swapped", "synth", pred), tmp_path / "out", QUIET)
    for section in ("box", "keypoints"):
        before, after = same[section]["combined"], swapped[section]["combined"]
        assert before["HOTA"] == pytest.approx(1.0) and before["AssA"] == pytest.approx(1.0)
        assert after["DetA"] == pytest.approx(before["DetA"])
        assert after["AssA"] < before["AssA"] - 0.05, section
    assert swapped["box"]["combined"]["IDSW"] == 4
    assert same["protocol"] == "kit"


@pytest.mark.parametrize("protocol, reach", [("kit", 0.5001), ("corrected", 0.5)])
def test_keypoint_similarity_uses_half_head_size(tmp_path, protocol, reach):
    gt = _sequence_from_real(frames=3)
    pred = _as_prediction(gt)
    for ann in pred["annotations"]:
        head = 0.6 * np.hypot(ann["bbox_head"][2], ann["bbox_head"][3])
        kp = np.asarray(ann["keypoints"], float).reshape(17, 3)
        kp[kp[:, 2] > 0, 1] += 0.25 * head  # a quarter head size down: similarity 1 - 0.25/0.5 = 0.5
        ann["keypoints"] = kp.reshape(-1).tolist()
    result = evaluate_posetrack(_write(tmp_path / "gt", "s", gt), _write(tmp_path / "pr", "s", pred), None,
                                {**QUIET, "protocol": protocol})
    curves = result["keypoints"]["alpha"]["combined"]
    det = np.asarray(curves["DetA"])
    alphas = np.asarray(result["alphas"])
    # (alpha 0.5 itself sits on the rounding edge of 1 - 0.25 / 0.5)
    assert det[alphas < 0.49].min() > 0.9 and det[alphas > 0.51].max() == 0
    assert result["keypoints"]["per_joint"]["nose"]["LocA(0)"] == pytest.approx(1 - 0.25 / reach, abs=1e-6)
    assert result["protocol"] == protocol


def test_detection_in_ignore_region_is_not_a_false_positive(tmp_path):
    gt = _sequence_from_real(frames=3)
    gt["images"] = [dict(im, ignore_regions_x=[[0, 100, 100, 0]], ignore_regions_y=[[0, 0, 100, 100]])
                    for im in gt["images"]]
    pred = _as_prediction(gt)
    extra = []
    for t, im in enumerate(pred["images"]):
        ghost = copy.deepcopy(pred["annotations"][0])
        ghost.update(image_id=im["id"], track_id=99, bbox=[10, 10, 50, 60])
        extra.append(ghost)
    pred["annotations"] += extra
    gt_dir, pr_dir = _write(tmp_path / "gt", "s", gt), _write(tmp_path / "pr", "s", pred)
    honoured = evaluate_posetrack(gt_dir, pr_dir, None, QUIET)["box"]["combined"]
    assert honoured["CLR_FP"] == 0 and honoured["DetA"] == pytest.approx(1.0)
    gt["images"] = [dict(im, ignore_regions_x=[], ignore_regions_y=[]) for im in gt["images"]]
    _write(gt_dir, "s", gt)
    ignored = evaluate_posetrack(gt_dir, pr_dir, None, QUIET)["box"]["combined"]
    assert ignored["CLR_FP"] == 3


def test_unlabeled_frames_do_not_count(tmp_path):
    gt = _sequence_from_real(frames=4)
    gt["images"][3]["is_labeled"] = False
    pred = _as_prediction(gt)
    pred["annotations"] = [a for a in pred["annotations"] if a["image_id"] != gt["images"][3]["id"]]
    gt_dir, pred_dir = _write(tmp_path / "gt", "s", gt), _write(tmp_path / "pr", "s", pred)
    corrected = evaluate_posetrack(gt_dir, pred_dir, None, {**QUIET, "protocol": "corrected"})
    assert corrected["box"]["combined"]["HOTA"] == pytest.approx(1.0)
    assert corrected["keypoints"]["combined"]["HOTA"] == pytest.approx(1.0)
    # The kit's box metrics (run_mot.py) count every frame with boxes, labeled or not: frame 4 is all misses.
    kit = evaluate_posetrack(gt_dir, pred_dir, None, QUIET)
    assert kit["keypoints"]["combined"]["HOTA"] == pytest.approx(1.0)
    assert kit["box"]["combined"]["DetA"] == pytest.approx(0.75) and kit["box"]["combined"]["CLR_FN"] == 11


def test_eval_refuses_filters_it_no_longer_applies(tmp_path):
    gt = _real_gt_dir()
    with pytest.raises(InputError, match="output.filters"):
        evaluate_posetrack(gt, gt, None, {"progress": False, "filters": {"enabled": True}})


def test_compare_protocols_reports_both_and_the_difference(tmp_path):
    gt = _sequence_from_real(frames=4)
    pred = _as_prediction(gt)
    for ann in pred["annotations"]:  # scores of 0 on half the joints: only the corrected protocol drops them
        ann["scores"] = [0.0 if k % 2 else 0.9 for k in range(17)]
    result = evaluate_posetrack(_write(tmp_path / "gt", "s", gt), _write(tmp_path / "pr", "s", pred),
                                tmp_path / "out", {**QUIET, "compare_protocols": True})
    kit, corrected = result["keypoints"]["combined"]["HOTA"], result["other_protocol"]["keypoints"]["combined"]["HOTA"]
    assert kit == pytest.approx(1.0) and corrected < 0.9
    row = result["comparison"]["per_sequence"]["s"]["keypoints"]
    corrected_s = result["other_protocol"]["keypoints"]["per_sequence"]["s"]["HOTA"]
    assert row == {"kit": pytest.approx(1.0), "corrected": corrected_s, "difference": pytest.approx(1 - corrected_s)}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "protocol: kit" in report and "Protocols compared: kit vs corrected" in report


def test_empty_predictions_give_zeros(tmp_path):
    gt = _sequence_from_real(frames=3)
    pred = _as_prediction(gt)
    pred["annotations"] = []
    result = evaluate_posetrack(_write(tmp_path / "gt", "s", gt), _write(tmp_path / "pr", "s", pred), tmp_path / "o",
                                QUIET)
    assert result["keypoints"]["combined"]["HOTA"] == 0 and result["box"]["combined"]["HOTA"] == 0
    assert (tmp_path / "o" / "report.html").is_file()


def _bad(tmp_path, mutate) -> InputError:
    gt = _sequence_from_real(frames=3)
    pred = _as_prediction(gt)
    mutate(pred)
    with pytest.raises(InputError) as err:
        evaluate_posetrack(_write(tmp_path / "gt", "s", gt), _write(tmp_path / "pr", "s", pred), None, QUIET)
    return err.value


def test_bad_inputs_name_file_and_place(tmp_path):
    def drop_last_image(p):
        last = p["images"].pop()["id"]
        p["annotations"] = [a for a in p["annotations"] if a["image_id"] != last]

    err = _bad(tmp_path, drop_last_image)
    assert "image ids differ" in str(err) and "s.json" in str(err)
    err = _bad(tmp_path, lambda p: p["annotations"][1].update(track_id=p["annotations"][0]["track_id"]))
    assert "image 1000: track_id 0 appears 2 times" in str(err) and str(tmp_path / "pr" / "s.json") in str(err)
    err = _bad(tmp_path, lambda p: p["annotations"][2].pop("track_id"))
    assert "image 1000, annotation 2: missing or non-integer track_id" in str(err)
    err = _bad(tmp_path, lambda p: p["annotations"][2].update(keypoints=[1, 2, "x"] * 17))
    assert "annotation 2" in str(err)


def test_missing_prediction_file(tmp_path):
    gt = _real_gt_dir()
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(gt / "003418_mpii_test.json", pred)
    with pytest.raises(InputError, match="missing prediction file.*009473_mpii_test.json"):
        evaluate_posetrack(gt, pred, None, QUIET)


def test_geometry_helpers():
    square = [np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)]
    inside = points_in_polygons(np.array([[5, 5], [10, 5], [11, 5], [0.5, 9.5]]), square)
    assert inside.tolist() == [True, False, False, True]  # boundary excluded, like shapely contains
    iou, cover = box_region_overlaps(np.array([5, 5, 15, 15]), square)
    assert cover == pytest.approx(0.25) and iou == pytest.approx(25 / 175)
    # a non-convex (U-shaped) region: the box sits in the notch
    u_shape = [np.array([[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]], float)]
    _, cover = box_region_overlaps(np.array([11, 11, 19, 29]), u_shape)
    assert cover == 0
