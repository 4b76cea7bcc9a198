"""``pose=groundtruth``: the GT keypoints of the person each detection covers."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from kprtrack.boxes import frame_rng, iou_matrix
from kprtrack.errors import InputError
from kprtrack.record import NUM_KEYPOINTS, Detections, Frame
from kprtrack.stages import GROUND_TRUTH


class GroundTruthPose:
    """Oracle keypoints. Each detection takes the keypoints of the GT person whose box it overlaps
    best (IoU >= min_iou, one-to-one); other detections get zero-confidence keypoints.

    keypoint_noise: std of keypoint noise as a fraction of the box height.
    score_jitter: keypoint confidences are 1 - |N(0, score_jitter)| for annotated joints.
    """

    requires = frozenset({GROUND_TRUTH, "boxes"})
    provides = frozenset({"keypoints"})
    weights_path = None

    def __init__(self, keypoint_noise: float = 0.0, score_jitter: float = 0.0, min_iou: float = 0.3,
                 seed: int = 0):
        self.keypoint_noise = float(keypoint_noise)
        self.score_jitter = float(score_jitter)
        self.min_iou = float(min_iou)
        self.seed = int(seed)

    def estimate(self, frame: Frame, detections: Detections) -> Detections:
        if frame.gt is None or frame.gt.keypoints is None:
            raise InputError("pose=groundtruth needs a data set with ground-truth keypoints "
                             "(use a real pose model, e.g. pose=hrnet)", frame.sequence)
        gt = frame.gt
        keypoints = np.zeros((len(detections), NUM_KEYPOINTS, 3), np.float32)
        if len(detections) and len(gt):
            iou = iou_matrix(detections.boxes, gt.boxes)
            rows, cols = linear_sum_assignment(-iou)
            ok = iou[rows, cols] >= self.min_iou
            keypoints[rows[ok]] = gt.keypoints[cols[ok]]
        rng = frame_rng(self.seed + 1, frame.sequence, frame.index)
        annotated = keypoints[..., 2] > 0
        if self.keypoint_noise > 0:
            height = (detections.boxes[:, 3] - detections.boxes[:, 1])[:, None, None]
            keypoints[..., :2] += rng.normal(0, self.keypoint_noise, keypoints[..., :2].shape) * height
        if self.score_jitter > 0:
            jitter = 1 - np.abs(rng.normal(0, self.score_jitter, annotated.shape))
            keypoints[..., 2] = np.where(annotated, np.clip(jitter, 0.01, 1), 0)
        keypoints[~annotated] = 0
        return detections.with_(keypoints=keypoints.astype(np.float32))
