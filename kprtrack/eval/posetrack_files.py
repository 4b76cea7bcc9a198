"""PoseTrack21 JSON ground truth and predictions as per-frame arrays (through kprtrack.data.posetrack)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kprtrack.data.posetrack import PoseTrackSequence, load_sequence_json, polygons
from kprtrack.errors import InputError
from kprtrack.record import NUM_KEYPOINTS


@dataclass
class People:
    """Everyone annotated (or predicted) in one image."""

    track_ids: np.ndarray  # [N] int64
    boxes: np.ndarray  # [N, 4] x1 y1 x2 y2; NaN where the annotation has no usable box
    keypoints: np.ndarray  # [N, 17, 3] x, y, score (GT: visibility)
    head_sizes: np.ndarray  # [N] 0.6 x head-box diagonal (GT only; NaN where absent)

    def __len__(self) -> int:
        return len(self.track_ids)

    def subset(self, keep: np.ndarray) -> "People":
        return People(self.track_ids[keep], self.boxes[keep], self.keypoints[keep], self.head_sizes[keep])


@dataclass
class FrameTruth:
    image_id: object
    is_labeled: bool
    ignore_regions: list[np.ndarray]
    gt: People


def _box_xyxy(bbox) -> np.ndarray:
    if bbox is None or len(bbox) != 4:
        return np.full(4, np.nan)
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x, y, x + w, y + h]) if w > 0 and h > 0 else np.full(4, np.nan)


def _people(seq: PoseTrackSequence, image_id, is_gt: bool) -> People:
    anns = seq.annotations[image_id]
    n = len(anns)
    track_ids = np.zeros(n, np.int64)
    boxes = np.full((n, 4), np.nan)
    keypoints = np.zeros((n, NUM_KEYPOINTS, 3))
    head_sizes = np.full(n, np.nan)
    for i, ann in enumerate(anns):
        where = f"image {image_id}, annotation {i}"
        track = ann.get("track_id")
        if isinstance(track, float) and track.is_integer():
            track = int(track)
        if not isinstance(track, (int, np.integer)) or isinstance(track, bool):
            raise InputError(f"{where}: missing or non-integer track_id {track!r}", seq.path)
        track_ids[i] = track
        boxes[i] = _box_xyxy(ann.get("bbox"))
        try:
            if ann["keypoints"]:
                keypoints[i] = np.asarray(ann["keypoints"], float).reshape(NUM_KEYPOINTS, 3)
            scores = ann.get("scores")
            if not is_gt and scores is not None and len(scores) == NUM_KEYPOINTS:
                # Writers store per-joint confidence in 'scores' (as the PoseTrack21 kit reads it).
                keypoints[i, :, 2] = np.asarray(scores, float)
            if is_gt and ann.get("bbox_head") is not None and len(ann["bbox_head"]) == 4:
                w, h = float(ann["bbox_head"][2]), float(ann["bbox_head"][3])
                head_sizes[i] = 0.6 * np.hypot(w, h)
        except (TypeError, ValueError):
            raise InputError(f"{where}: keypoints/scores/bbox_head are not numbers", seq.path) from None
        if not np.all(np.isfinite(keypoints[i])):
            raise InputError(f"{where}: NaN or infinite keypoint value", seq.path)
    unique, counts = np.unique(track_ids, return_counts=True)
    if len(counts) and counts.max() > 1:
        raise InputError(f"image {image_id}: track_id {unique[counts > 1][0]} appears {counts.max()} times",
                         seq.path)
    return People(track_ids, boxes, keypoints, head_sizes)


def load_ground_truth(path: Path) -> tuple[PoseTrackSequence, list[FrameTruth]]:
    seq = load_sequence_json(path, need_files=False)
    frames = [FrameTruth(image["id"], bool(image.get("is_labeled", True)), polygons(image),
                         _people(seq, image["id"], is_gt=True)) for image in seq.images]
    return seq, frames


def load_predictions(path: Path, gt_seq: PoseTrackSequence) -> list[People]:
    """Predicted people per GT image (in GT order); the file must list exactly the GT's image ids."""
    return read_predictions(path, gt_seq)[1]


def read_predictions(path: Path, gt_seq: PoseTrackSequence) -> tuple[PoseTrackSequence, list[People]]:
    """The prediction file as loaded, and its people per GT image (see :func:`load_predictions`)."""
    if not path.is_file():
        raise InputError(f"no prediction file for sequence {gt_seq.name} (one <seq>.json per GT sequence)", path)
    seq = load_sequence_json(path, need_files=False)
    gt_ids = [image["id"] for image in gt_seq.images]
    pred_ids = [image["id"] for image in seq.images]
    if set(gt_ids) != set(pred_ids) or len(pred_ids) != len(set(pred_ids)):
        missing = [i for i in gt_ids if i not in set(pred_ids)][:3]
        extra = [i for i in pred_ids if i not in set(gt_ids)][:3]
        raise InputError(f"image ids differ from the ground truth {gt_seq.path.name} "
                         f"({len(pred_ids)} vs {len(gt_ids)} images; missing e.g. {missing}, unknown e.g. {extra}"
                         f"{', duplicates' if len(pred_ids) != len(set(pred_ids)) else ''})", path)
    return seq, [_people(seq, image_id, is_gt=False) for image_id in gt_ids]
