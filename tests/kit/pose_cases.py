"""Generated PoseTrack21 evaluation cases built from a real PoseTrack18 frame, for the kit comparisons.

Each case is one sequence (GT JSON + prediction JSON, same image ids): the 11 real people of
``012834_mpii_test`` walking across 8 frames (2 unlabeled, ignore regions in some), and one
perturbation of the predictions per case. Everything is seeded, so the cases are fixed.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import numpy as np

FRAMES = 8
UNLABELED = (2, 5)
SQUARE = ([[100.0, 700.0, 700.0, 100.0]], [[100.0, 100.0, 600.0, 600.0]])
BOWTIE = ([[900.0, 1500.0, 900.0, 1500.0]], [[100.0, 700.0, 700.0, 100.0]])  # self-intersecting


def base_sequence(real_gt: Path, frames: int = FRAMES, regions: dict[int, tuple] | None = None) -> dict:
    source = json.loads((real_gt / "012834_mpii_test.json").read_text())
    image0, anns0 = source["images"][0], source["annotations"]
    regions = {3: SQUARE, 4: SQUARE, 6: BOWTIE} if regions is None else regions
    images, annotations = [], []
    for t in range(frames):
        xs, ys = regions.get(t, ([], []))
        image = dict(image0, id=10_000 + t, frame_id=10_000 + t, file_name=f"images/val/case/{t:06d}.jpg",
                     is_labeled=t not in UNLABELED, ignore_regions_x=xs, ignore_regions_y=ys)
        images.append(image)
        for ann in anns0:
            ann = copy.deepcopy(ann)
            kp = np.asarray(ann["keypoints"], float).reshape(17, 3)
            kp[kp[:, 2] > 0, 0] += 7 * t
            ann.update(image_id=image["id"], id=len(annotations), keypoints=kp.reshape(-1).tolist(),
                       bbox=[ann["bbox"][0] + 7 * t, *ann["bbox"][1:]],
                       bbox_head=[ann["bbox_head"][0] + 7 * t, *ann["bbox_head"][1:]])
            annotations.append(ann)
    return {"images": images, "annotations": annotations, "categories": source["categories"]}


def as_prediction(gt: dict) -> dict:
    """GT turned into a prediction file: scores from visibility (the kit crashes on ``"scores": []``)."""
    pred = copy.deepcopy(gt)
    for ann in pred["annotations"]:
        ann["scores"] = [0.9 if v > 0 else 0.0 for v in ann["keypoints"][2::3]]
        ann["score"] = 0.9
        ann.pop("bbox_head", None)
    return pred


def _keypoints(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"], float).reshape(17, 3)


def _set_keypoints(ann: dict, kp: np.ndarray) -> None:
    ann["keypoints"] = kp.reshape(-1).tolist()


def _noise(sigma: float) -> Callable:
    def apply(gt, pred, rng):
        for ann in pred["annotations"]:
            kp = _keypoints(ann)
            seen = kp[:, 0] > 0
            kp[seen, :2] += rng.normal(0, sigma, (seen.sum(), 2))
            _set_keypoints(ann, kp)
    return apply


def _frame_of(pred: dict) -> dict:
    return {im["id"]: t for t, im in enumerate(pred["images"])}


def _swap_ids(gt, pred, rng):
    frame = _frame_of(pred)
    swap = {1: 3, 3: 1, 5: 7, 7: 5}
    for ann in pred["annotations"]:
        if frame[ann["image_id"]] >= 4 and ann["track_id"] in swap:
            ann["track_id"] = swap[ann["track_id"]]


def _fragment(gt, pred, rng):
    """Track 2 is predicted as ids 2, 50, 2, 50, ...: fragments and returns."""
    frame = _frame_of(pred)
    for ann in pred["annotations"]:
        if ann["track_id"] == 2 and frame[ann["image_id"]] % 2:
            ann["track_id"] = 50


def _drop_people(gt, pred, rng):
    frame = _frame_of(pred)
    pred["annotations"] = [a for a in pred["annotations"] if a["track_id"] != 4
                           and not (frame[a["image_id"]] in (1, 3, 6) and a["track_id"] in (0, 8, 9))]


def _false_positives(inside: bool) -> Callable:
    def apply(gt, pred, rng):
        extra = []
        for ann in pred["annotations"][:: 3]:
            ann = copy.deepcopy(ann)
            kp = _keypoints(ann)
            seen = kp[:, 0] > 0
            if inside:  # squeeze the person into the square region (frames 3, 4) or the bowtie (frame 6)
                kp[seen, 0] = 150 + (kp[seen, 0] - kp[seen, 0].min()) * 0.3
                kp[seen, 1] = 150 + (kp[seen, 1] - kp[seen, 1].min()) * 0.3
                if ann["track_id"] % 2:  # half of them stick out of the region with some joints
                    kp[:3, :2] = [[720.0, 300.0], [740.0, 320.0], [760.0, 340.0]]
                    kp[:3, 2] = 1
            else:
                kp[seen, 0] += 300 + rng.uniform(0, 20)
            _set_keypoints(ann, kp)
            ann["track_id"] += 100
            ann["scores"] = [0.5] * 17
            extra.append(ann)
        pred["annotations"] += extra
    return apply


def _zero_score_joints(gt, pred, rng):
    """Scores of 0 (coordinates kept: the kit never reads scores) and joints with x or y at 0."""
    for ann in pred["annotations"]:
        ann["scores"] = [0.0 if rng.random() < 0.3 else 0.05 for _ in range(17)]
        kp = _keypoints(ann)
        kp[rng.random(17) < 0.15, 0] = 0.0
        kp[rng.random(17) < 0.1, 1] = -3.0
        _set_keypoints(ann, kp)


def _zero_gt_keypoints(gt: dict, frames) -> None:
    for ann in gt["annotations"]:
        if _frame_of(gt)[ann["image_id"]] in frames:
            _set_keypoints(ann, np.zeros((17, 3)))


def _empty_labeled_frames(gt, pred, rng):
    """A labeled frame whose GT people have no keypoint (frame 1; the kit crashes on a labeled frame
    with no GT person at all) and labeled frames with no prediction (frames 4, 7)."""
    frame = _frame_of(gt)
    _zero_gt_keypoints(gt, [1])
    pred["annotations"] = [a for a in pred["annotations"] if frame[a["image_id"]] not in (4, 7)]
    _noise(4.0)(gt, pred, rng)


def _unannotated_joint_types(gt, pred, rng):
    """head_top, both wrists and both ankles never annotated; predictions still have them."""
    for ann in gt["annotations"]:
        kp = _keypoints(ann)
        kp[[2, 9, 10, 15, 16]] = 0.0
        _set_keypoints(ann, kp)
    _noise(3.0)(gt, pred, rng)


def _empty_people(gt, pred, rng):
    """Predicted people whose every joint is at 0, 0 (they still count as detections)."""
    extra = []
    for ann in pred["annotations"][::4]:
        ann = copy.deepcopy(ann)
        _set_keypoints(ann, np.zeros((17, 3)))
        ann["track_id"] += 200
        extra.append(ann)
    pred["annotations"] += extra


def _no_predictions(gt, pred, rng):
    pred["annotations"] = []


def _no_ground_truth_keypoints(gt, pred, rng):
    """No GT joint anywhere (regions removed: a region would then empty frames, which the kit refuses)."""
    _zero_gt_keypoints(gt, range(len(gt["images"])))
    for image in gt["images"]:
        image["ignore_regions_x"], image["ignore_regions_y"] = [], []


def _no_labeled_frames(gt, pred, rng):
    for image in gt["images"]:
        image["is_labeled"] = False


def _threshold_distances(gt, pred, rng):
    """Joints moved by exactly 0.5 and 0.5001 head sizes (the kit's similarity reaches 0 at 0.5001)."""
    heads = {(a["image_id"], a["track_id"]): 0.6 * np.hypot(*a["bbox_head"][2:]) for a in gt["annotations"]}
    for ann in pred["annotations"]:
        kp = _keypoints(ann)
        head = heads[(ann["image_id"], ann["track_id"])]
        seen = kp[:, 0] > 0
        kp[seen, 0] += head * np.where(np.arange(17)[seen] % 2, 0.5, 0.5001)
        _set_keypoints(ann, kp)


def _negative_id(gt, pred, rng):
    """Track 3 predicted as id -1 in frames 0-3 (track 10 absent there): the kit's id table wraps -1
    onto the largest id, so both count as one predicted identity."""
    frame = _frame_of(pred)
    early = [a for a in pred["annotations"] if frame[a["image_id"]] <= 3]
    pred["annotations"] = [a for a in pred["annotations"] if not (a in early and a["track_id"] == 10)]
    for ann in early:
        if ann["track_id"] == 3:
            ann["track_id"] = -1
    _noise(2.0)(gt, pred, rng)


def _minimal_prediction_fields(gt, pred, rng):
    """Only what the kit reads: image ids; image_id, track_id, keypoints and scores per person."""
    pred["images"] = [{"id": im["id"]} for im in pred["images"]]
    pred["annotations"] = [{k: a[k] for k in ("image_id", "track_id", "keypoints", "scores")}
                           for a in pred["annotations"]]
    _noise(3.0)(gt, pred, rng)


PERTURBATIONS: dict[str, Callable] = {
    "copy": lambda gt, pred, rng: None,
    "noise_2px": _noise(2.0),
    "noise_8px": _noise(8.0),
    "noise_25px": _noise(25.0),
    "noise_60px": _noise(60.0),
    "id_swap": _swap_ids,
    "fragments": _fragment,
    "dropped_people": _drop_people,
    "fp_outside_regions": _false_positives(inside=False),
    "fp_inside_regions": _false_positives(inside=True),
    "zero_score_joints": _zero_score_joints,
    "empty_labeled_frames": _empty_labeled_frames,
    "unannotated_joint_types": _unannotated_joint_types,
    "all_zero_people": _empty_people,
    "no_predictions": _no_predictions,
    "no_ground_truth_keypoints": _no_ground_truth_keypoints,
    "no_labeled_frames": _no_labeled_frames,
    "threshold_distances": _threshold_distances,
    "negative_id": _negative_id,
    "minimal_prediction_fields": _minimal_prediction_fields,
}


def write_cases(real_gt: Path, gt_dir: Path, pred_dir: Path, names=None) -> list[str]:
    """One sequence per perturbation (plus a 1-frame sequence) into gt_dir / pred_dir; returns the names."""
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (name, perturb) in enumerate(PERTURBATIONS.items()):
        if names is not None and name not in names:
            continue
        gt = base_sequence(real_gt)
        pred = as_prediction(gt)
        perturb(gt, pred, np.random.default_rng(k))
        _write(gt_dir, pred_dir, name, gt, pred)
        written.append(name)
    if names is None or "one_frame" in names:
        gt = base_sequence(real_gt, frames=1, regions={0: SQUARE})
        pred = as_prediction(gt)
        _noise(5.0)(gt, pred, np.random.default_rng(99))
        _write(gt_dir, pred_dir, "one_frame", gt, pred)
        written.append("one_frame")
    return written


def _write(gt_dir: Path, pred_dir: Path, name: str, gt: dict, pred: dict) -> None:
    (gt_dir / f"{name}.json").write_text(json.dumps(gt))
    (pred_dir / f"{name}.json").write_text(json.dumps(pred))
