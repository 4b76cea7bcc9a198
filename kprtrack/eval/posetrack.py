"""PoseTrack21 evaluation: box HOTA/CLEAR/Identity and keypoint (pose-tracking) HOTA.

Only ``is_labeled`` frames count. Every metric is computed by trackeval's metric classes.
Keypoint HOTA follows the PoseTrack21 kit (hota_pose.py / posetrack.py): ears dropped (15 joints),
joints inside ignore regions removed, similarity max(0, 1 - d / (0.5 * head_size)) with head size
0.6 x head-box diagonal, each joint type evaluated as its own set of detections, then combined
as the kit does (see ``combine_joints``).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from kprtrack.errors import InputError
from kprtrack.eval.geometry import box_region_overlaps, points_in_polygons
from kprtrack.eval.metrics import box_iou_xyxy, hota_metric, sequence_data
from kprtrack.eval.posetrack_files import FrameTruth, People
from kprtrack.record import POSETRACK_KEYPOINTS

EARS = (3, 4)
JOINTS = [j for j in range(len(POSETRACK_KEYPOINTS)) if j not in EARS]
JOINT_NAMES = [POSETRACK_KEYPOINTS[j] for j in JOINTS]


def unmatched_in_ignore(ious: np.ndarray, boxes: np.ndarray, regions: list[np.ndarray],
                        rule: str, threshold: float) -> np.ndarray:
    """Predictions matched to no GT box (IoU >= 0.5, Hungarian, as trackeval's preprocessing) that lie
    in an ignore region: 'majority' = region covers > threshold of the box; 'kit' = box/region IoU > threshold."""
    remove = np.zeros(len(boxes), bool)
    if not regions or not len(boxes):
        return remove
    matched = np.zeros(len(boxes), bool)
    if ious.size:
        scores = np.where(ious >= 0.5 - np.finfo(float).eps, ious, 0.0)
        rows, cols = linear_sum_assignment(-scores)
        matched[cols[scores[rows, cols] > np.finfo(float).eps]] = True
    for i in np.flatnonzero(~matched):
        iou, cover = box_region_overlaps(boxes[i], regions)
        remove[i] = (cover > threshold) if rule == "majority" else (iou > threshold)
    return remove


def box_sequence_data(name: str, truth: list[FrameTruth], preds: list[People], rule: str = "majority",
                      threshold: float = 0.5) -> dict:
    gt_ids, tr_ids, sims = [], [], []
    for frame, pred in zip(truth, preds):
        if not frame.is_labeled:
            continue
        g = frame.gt.subset(np.isfinite(frame.gt.boxes).all(1))
        p = pred.subset(np.isfinite(pred.boxes).all(1))
        ious = box_iou_xyxy(g.boxes, p.boxes)
        drop = unmatched_in_ignore(ious, p.boxes, frame.ignore_regions, rule, threshold)
        gt_ids.append(g.track_ids)
        tr_ids.append(p.track_ids[~drop])
        sims.append(ious[:, ~drop])
    return sequence_data(name, gt_ids, tr_ids, sims)


def _valid_joints(people: People, regions: list[np.ndarray], need_score: bool) -> np.ndarray:
    """[N, 15] usable joints: x > 0, y > 0 (and score > 0 for predictions), not in an ignore region."""
    kp = people.keypoints[:, JOINTS]
    valid = (kp[..., 0] > 0) & (kp[..., 1] > 0)
    if need_score:
        valid &= kp[..., 2] > 0
    if regions and valid.any():
        inside = points_in_polygons(kp[..., :2].reshape(-1, 2), regions).reshape(valid.shape)
        valid &= ~inside
    return valid


def keypoint_sequence_data(name: str, truth: list[FrameTruth], preds: list[People], gt_path,
                           distance_threshold: float = 0.5) -> list[dict]:
    """One trackeval data dict per joint type (15): detections are the joints of that type."""
    per_joint = [([], [], []) for _ in JOINTS]
    for frame, pred in zip(truth, preds):
        if not frame.is_labeled:
            continue
        gt_valid = _valid_joints(frame.gt, frame.ignore_regions, need_score=False)
        pr_valid = _valid_joints(pred, frame.ignore_regions, need_score=True)
        needs_head = gt_valid.any(1)
        bad = needs_head & ~(frame.gt.head_sizes > 0)
        if bad.any():
            raise InputError(f"image {frame.image_id}: track {frame.gt.track_ids[bad][0]} has keypoints but no "
                             "usable bbox_head (needed for the head-size normalisation)", gt_path)
        gt_xy = frame.gt.keypoints[:, JOINTS, :2]
        pr_xy = pred.keypoints[:, JOINTS, :2]
        # [n_gt, n_pred, 15] head-normalised distances
        dist = np.linalg.norm(gt_xy[:, None] - pr_xy[None], axis=-1)
        heads = np.where(needs_head, frame.gt.head_sizes, 1.0)
        sim = np.maximum(0.0, 1.0 - dist / (distance_threshold * heads[:, None, None]))
        for k, (gt_ids, tr_ids, sims) in enumerate(per_joint):
            g, p = gt_valid[:, k], pr_valid[:, k]
            gt_ids.append(frame.gt.track_ids[g])
            tr_ids.append(pred.track_ids[p])
            sims.append(sim[np.ix_(g, p, [k])][..., 0] if g.any() and p.any() else np.zeros((g.sum(), p.sum())))
    return [sequence_data(name, *lists) for lists in per_joint]


def evaluate_joints(datas: list[dict]) -> list[dict]:
    metric = hota_metric()
    return [metric.eval_sequence(d) for d in datas]


def combine_joints(results: list[dict], datas: list[dict]) -> dict:
    """One sequence's 'Total' over joints, as the kit's ``compute_avg``: float arrays averaged over joints,
    counts summed. Difference (deliberate): joints absent from both GT and predictions of the sequence are
    left out of the average (the kit counts them as HOTA 0, so GT against itself would score below 100)."""
    metric = hota_metric()
    active = [r for r, d in zip(results, datas) if d["num_gt_dets"] + d["num_tracker_dets"] > 0]
    if not active:
        return results[0]  # trackeval's empty-sequence result: zeros, LocA 1
    total = {}
    for field in metric.float_array_fields + metric.float_fields:
        total[field] = np.mean([np.asarray(r[field], float) for r in active], axis=0)
    for field in metric.integer_array_fields:
        total[field] = np.sum([np.asarray(r[field], float) for r in results], axis=0)
    return total


def combine_sequences_hota(per_seq: dict[str, dict]) -> dict | None:
    """Across sequences: trackeval's HOTA.combine_sequences (sum counts, TP-weighted AssA and LocA)."""
    return hota_metric().combine_sequences(per_seq) if per_seq else None
