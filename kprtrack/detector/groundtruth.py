"""``detector=groundtruth``: the data set's GT boxes, optionally degraded to imitate a detector."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from kprtrack.boxes import clip_boxes, frame_rng
from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from kprtrack.stages import GROUND_TRUTH


class GroundTruthDetector:
    """Oracle detections for tracker research and the demo.

    box_noise: std of box corner noise, as a fraction of box width/height.
    score_jitter: scores are 1 - |N(0, score_jitter)| clipped to [min_score, 1], so some GT people
        fall below the tracker's high threshold and exercise its second round.
    drop_rate: probability that a person is missed in a frame.
    """

    requires = frozenset({GROUND_TRUTH})
    # GT identities travel along for analysis (ReID data sets, debugging); stages ignore them.
    provides = frozenset({"boxes", "scores", "person_ids"})
    weights_path = None

    def __init__(self, box_noise: float = 0.0, score_jitter: float = 0.0, drop_rate: float = 0.0,
                 min_score: float = 0.05, seed: int = 0):
        self.box_noise = float(box_noise)
        self.score_jitter = float(score_jitter)
        self.drop_rate = float(drop_rate)
        self.min_score = float(min_score)
        self.seed = int(seed)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        return [self._one(frame) for frame in frames]

    def _one(self, frame: Frame) -> Detections:
        if frame.gt is None:
            raise InputError("detector=groundtruth needs a data set with ground-truth boxes "
                             "(use a real detector, e.g. detector=yolox_onnx)", frame.sequence)
        gt = frame.gt
        rng = frame_rng(self.seed, frame.sequence, frame.index)
        n = len(gt)
        keep = rng.random(n) >= self.drop_rate
        boxes = gt.boxes.copy()
        if self.box_noise > 0:
            size = np.repeat(boxes[:, 2:] - boxes[:, :2], 2, axis=0).reshape(n, 4)
            boxes = boxes + rng.normal(0.0, self.box_noise, (n, 4)).astype(np.float32) * size
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = np.ones(n, np.float32)
        if self.score_jitter > 0:
            scores = np.clip(1 - np.abs(rng.normal(0.0, self.score_jitter, n)), self.min_score, 1)
        boxes = clip_boxes(boxes, frame.width, frame.height)
        # A person outside the frame is not something a detector could see.
        keep &= (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        return Detections(boxes=boxes, scores=scores.astype(np.float32),
                          person_ids=gt.person_ids).subset(keep)
