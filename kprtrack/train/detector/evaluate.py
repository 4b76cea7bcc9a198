"""Person-detector validation: COCO-style AP on a PoseTrack split, and recall at the tracker's
score thresholds.

The checkpoint is loaded by the inference stage itself (:class:`kprtrack.detector.yolox.YOLOXDetector`),
so every evaluation also proves that the file loads and runs with its recorded recipe.

Ignore regions (PoseTrack's unannotated crowds): a ground-truth box whose centre lies inside one
is dropped, and so is a detection whose centre lies inside one (neither counts); the same rule
(:func:`kprtrack.train.detector.data.centres_in_regions`) drops such people from the training boxes.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.boxes import iou_matrix
from kprtrack.data.posetrack import PoseTrackDataset
from kprtrack.detector.yolox import YOLOXDetector
from kprtrack.errors import InputError
from kprtrack.io import write_json
from kprtrack.train.detector.data import centres_in_regions

# configs/tracker/kprtrack.yaml: det_low_thresh, det_high_thresh, new_track_thresh.
TRACKER_THRESHOLDS = (0.1, 0.5, 0.6)


def greedy_matches(gt: np.ndarray, boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> int:
    """How many GT boxes are matched, detections taken by decreasing score, each to the unmatched
    GT it overlaps most (IoU >= ``iou_thresh``), as COCO's matching."""
    if not len(gt) or not len(boxes):
        return 0
    ious = iou_matrix(boxes[np.argsort(-scores, kind="stable")], gt)
    taken = np.zeros(len(gt), bool)
    for row in ious:
        row = np.where(taken, -1.0, row)
        best = int(row.argmax())
        if row[best] >= iou_thresh:
            taken[best] = True
    return int(taken.sum())


def coco_ap(images: list[dict], gts: list[np.ndarray], dets: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """AP, AP50, AP75, AR100 (pycocotools COCOeval, bbox, one "person" category)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise InputError("person AP needs pycocotools: pip install 'kprtrack[train]' (or eval_every=0)") from None

    annotations, rows = [], []
    for image, gt, (boxes, scores) in zip(images, gts, dets):
        for box in gt:
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": 1,
                                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0})
        for box, score in zip(boxes, scores):
            rows.append([image["id"], box[0], box[1], box[2] - box[0], box[3] - box[1], score, 1])
    nan = float("nan")
    if not annotations:
        return {"AP": nan, "AP50": nan, "AP75": nan, "AR100": nan}
    if not rows:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR100": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations,
                           "categories": [{"id": 1, "name": "person"}]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(np.asarray(rows, np.float64))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [float(v) if v >= 0 else nan for v in evaluator.stats]
    return {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR100": stats[8]}


def detection_metrics(frames_gt: list[np.ndarray], frames_dets: list[tuple[np.ndarray, np.ndarray]],
                      frames_regions: list[list[np.ndarray]], image_sizes: list[tuple[int, int]],
                      recall_thresholds: Sequence[float] = TRACKER_THRESHOLDS, recall_iou: float = 0.5) -> dict:
    """Metrics of detections against GT, per frame lists of (x1, y1, x2, y2) boxes in frame pixels;
    ignore regions applied here."""
    images, gts, dets = [], [], []
    for i, (gt, (boxes, scores), regions, (height, width)) in enumerate(
            zip(frames_gt, frames_dets, frames_regions, image_sizes)):
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        gt = gt[(gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])]
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        gt = gt[~centres_in_regions(gt, regions)]
        keep = ~centres_in_regions(boxes, regions)
        images.append({"id": i + 1, "width": int(width), "height": int(height)})
        gts.append(gt)
        dets.append((boxes[keep], scores[keep]))
    metrics = coco_ap(images, gts, dets)
    num_gt = sum(len(g) for g in gts)
    for thresh in recall_thresholds:
        kept = [(b[s >= thresh], s[s >= thresh]) for b, s in dets]
        matched = sum(greedy_matches(g, b, s, recall_iou) for g, (b, s) in zip(gts, kept))
        num_dets = sum(len(b) for b, _ in kept)
        metrics[f"recall@{thresh:g}"] = matched / num_gt if num_gt else float("nan")
        metrics[f"precision@{thresh:g}"] = matched / num_dets if num_dets else float("nan")
    metrics.update(num_images=float(len(images)), num_gt=float(num_gt),
                   num_detections=float(sum(len(b) for b, _ in dets)))
    return metrics


def evaluate_detector(checkpoint_path: str | os.PathLike, root: str | os.PathLike, split: str = "val",
                      annotations_dir: str = "posetrack_data", input_size: Sequence[int] | None = None,
                      device: str = "cpu", score_thresh: float = 0.01, nms_thresh: float | None = None,
                      recall_thresholds: Sequence[float] = TRACKER_THRESHOLDS, recall_iou: float = 0.5,
                      batch_size: int = 8, sequences: Sequence[str] | None = None,
                      output_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Run the checkpoint through ``detector=yolox`` on the split's labelled frames -> metrics:
    ``AP``/``AP50``/``AP75``/``AR100`` (COCO, person), ``recall@t``/``precision@t`` at IoU
    ``recall_iou`` for detections scoring >= t (the tracker's thresholds), counts. With
    ``output_dir``, also writes ``detector_eval.json`` there.

    ``input_size``/``nms_thresh`` None: the checkpoint's recorded recipe. ``score_thresh``: as
    upstream's COCO evaluation (test_conf 0.01); the recall thresholds must not be below it.
    """
    if recall_thresholds and min(recall_thresholds) < score_thresh:
        raise InputError(f"recall thresholds {list(recall_thresholds)} go below score_thresh={score_thresh}")
    detector = YOLOXDetector(weights=os.fspath(checkpoint_path), input_size=input_size, score_thresh=score_thresh,
                             nms_thresh=nms_thresh, device=device, batch_size=batch_size, download=False)
    dataset = PoseTrackDataset(os.fspath(root), split, annotations_dir,
                               sequences=list(sequences) if sequences else None, labeled_only=True)
    frames_gt, frames_dets, frames_regions, sizes = [], [], [], []
    for source in dataset.sequences():
        chunk = []
        for frame in source.frames():
            chunk.append(frame)
            if len(chunk) == batch_size:
                _run(detector, chunk, frames_gt, frames_dets, frames_regions, sizes)
                chunk = []
        if chunk:
            _run(detector, chunk, frames_gt, frames_dets, frames_regions, sizes)
    metrics = detection_metrics(frames_gt, frames_dets, frames_regions, sizes, recall_thresholds, recall_iou)
    if output_dir is not None:
        write_json(Path(output_dir) / "detector_eval.json", {
            "checkpoint": os.fspath(checkpoint_path), "root": os.fspath(root), "split": split,
            "annotations_dir": annotations_dir, "input_size": list(getattr(detector, "input_hw", []) or []),
            "score_thresh": score_thresh, "recall_iou": recall_iou,
            "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()},
        }, indent=1)
    return metrics


def _run(detector, frames, frames_gt, frames_dets, frames_regions, sizes) -> None:
    for frame, found in zip(frames, detector.detect(frames)):
        frames_gt.append(frame.gt.boxes if frame.gt is not None else np.zeros((0, 4), np.float32))
        frames_dets.append((found.boxes, found.scores))
        frames_regions.append(frame.ignore_regions)
        sizes.append((frame.height, frame.width))
