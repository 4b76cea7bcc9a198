"""Prediction filters applied before evaluation (TrackLab's PoseTrack21 protocol).

1. detections with fewer than ``min_visible_keypoints`` keypoints scoring above the threshold
   are dropped; 2. tracklets (track ids) with fewer than ``min_tracklet_length`` remaining
   detections in the sequence are dropped; 3. keypoints scoring below the threshold are zeroed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kprtrack.eval.posetrack_files import People


@dataclass
class FilterConfig:
    enabled: bool = True
    keypoint_threshold: float = 0.3
    min_visible_keypoints: int = 3
    min_tracklet_length: int = 3

    @classmethod
    def from_node(cls, node) -> "FilterConfig":
        node = dict(node or {})
        return cls(**{k: node[k] for k in cls.__dataclass_fields__ if k in node})


def filter_sequence(frames: list[People], cfg: FilterConfig) -> tuple[list[People], dict]:
    """Filtered copies of one sequence's predictions and counts of what was removed."""
    stats = {"detections_in": int(sum(len(p) for p in frames)), "dropped_few_keypoints": 0,
             "dropped_short_tracklets": 0, "zeroed_keypoints": 0}
    if not cfg.enabled:
        stats["detections_out"] = stats["detections_in"]
        return frames, stats
    kept = []
    for people in frames:
        visible = (people.keypoints[:, :, 2] > cfg.keypoint_threshold).sum(1)
        keep = visible >= cfg.min_visible_keypoints
        stats["dropped_few_keypoints"] += int((~keep).sum())
        kept.append(people.subset(keep))
    ids = np.concatenate([p.track_ids for p in kept]) if kept else np.zeros(0, np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    long_enough = set(unique[counts >= cfg.min_tracklet_length].tolist())
    out = []
    for people in kept:
        keep = np.fromiter((t in long_enough for t in people.track_ids.tolist()), bool, len(people))
        stats["dropped_short_tracklets"] += int((~keep).sum())
        people = people.subset(keep)
        keypoints = people.keypoints.copy()
        low = keypoints[:, :, 2] < cfg.keypoint_threshold
        stats["zeroed_keypoints"] += int((low & np.any(keypoints != 0, axis=2)).sum())
        keypoints[low] = 0.0
        out.append(People(people.track_ids, people.boxes, keypoints, people.head_sizes))
    stats["detections_out"] = int(sum(len(p) for p in out))
    return out, stats
