"""Prediction filters of ``run``'s output stage (``output.filters``; TrackLab's PoseTrack21 protocol).

Applied to a whole sequence's tracks before the track files are written, so the files a run writes
are the files it evaluates (and anyone can re-evaluate them, with kprtrack or the official kit):

1. detections with fewer than ``min_visible_keypoints`` keypoints scoring above
   ``keypoint_threshold`` are dropped;
2. tracklets (track ids) with fewer than ``min_tracklet_length`` remaining detections in the
   sequence are dropped;
3. keypoints scoring below ``keypoint_threshold`` are zeroed (x, y and score).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from kprtrack.errors import InputError
from kprtrack.record import NUM_KEYPOINTS, Detections, Frame

STAT_KEYS = ("detections_in", "dropped_few_keypoints", "dropped_short_tracklets", "zeroed_keypoints",
             "detections_out")


@dataclass
class FilterConfig:
    enabled: bool = True
    keypoint_threshold: float = 0.3
    min_visible_keypoints: int = 3
    min_tracklet_length: int = 3

    @classmethod
    def from_node(cls, node) -> "FilterConfig":
        """From ``output.filters``; a value of the wrong kind is one InputError naming the key."""
        node = dict(node or {})
        cfg = cls(**{k: node[k] for k in cls.__dataclass_fields__ if k in node})
        if not isinstance(cfg.enabled, bool):
            raise InputError(f"output.filters.enabled must be true or false, not {cfg.enabled!r}")
        number = isinstance(cfg.keypoint_threshold, (int, float)) and not isinstance(cfg.keypoint_threshold, bool)
        if not number:
            raise InputError(f"output.filters.keypoint_threshold must be a number, not {cfg.keypoint_threshold!r}")
        for key in ("min_visible_keypoints", "min_tracklet_length"):
            value = getattr(cfg, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"output.filters.{key} must be an integer >= 0, not {value!r}")
        return cfg


def _keypoints(people: Detections) -> np.ndarray:
    if people.keypoints is None:  # no pose stage: no keypoint is visible
        return np.zeros((len(people), NUM_KEYPOINTS, 3), np.float32)
    return people.keypoints


def filter_sequence(frames: Sequence[Detections], cfg: FilterConfig) -> tuple[list[Detections], dict]:
    """Filtered copies of one sequence's tracked people (one ``Detections`` with ``track_ids`` per
    frame) and counts of what was removed."""
    frames = list(frames)
    stats = dict.fromkeys(STAT_KEYS, 0)
    stats["detections_in"] = stats["detections_out"] = int(sum(len(p) for p in frames))
    if not cfg.enabled:
        return frames, stats
    kept = []
    for people in frames:
        visible = (_keypoints(people)[:, :, 2] > cfg.keypoint_threshold).sum(1)
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
        keypoints = _keypoints(people).copy()
        low = keypoints[:, :, 2] < cfg.keypoint_threshold
        stats["zeroed_keypoints"] += int((low & np.any(keypoints != 0, axis=2)).sum())
        keypoints[low] = 0.0
        out.append(people.with_(keypoints=keypoints))
    stats["detections_out"] = int(sum(len(p) for p in out))
    return out, stats


def summarise(cfg: FilterConfig, per_sequence: dict[str, dict]) -> dict:
    """The settings, the totals over sequences and the per-sequence counts (for state.json)."""
    total = {k: int(sum(s.get(k, 0) for s in per_sequence.values())) for k in STAT_KEYS}
    return {**dataclasses.asdict(cfg), "total": total, "per_sequence": per_sequence}


def describe(summary: dict) -> str:
    """One line for the end of a run."""
    t = summary["total"]
    if not summary["enabled"]:
        return f"output filters: off ({t['detections_out']} tracked detections written)"
    return (f"output filters: {t['detections_out']} of {t['detections_in']} tracked detections written; dropped "
            f"{t['dropped_few_keypoints']} with < {summary['min_visible_keypoints']} keypoints above "
            f"{summary['keypoint_threshold']}, {t['dropped_short_tracklets']} in tracks shorter than "
            f"{summary['min_tracklet_length']} frames; zeroed {t['zeroed_keypoints']} keypoints")


class SequenceFilter:
    """Collects one sequence's tracked people (frame by frame, without embeddings) and hands the
    filtered tracks back when the sequence ends. With filters off, the tracks pass unchanged."""

    def __init__(self, cfg: FilterConfig | None = None):
        self.cfg = cfg or FilterConfig(enabled=False)
        self._frames: list[Frame] = []
        self._people: list[Detections] = []

    def begin(self) -> None:
        self._frames, self._people = [], []

    def add(self, frame: Frame, detections: Detections) -> None:
        """One frame's tracker output; rows without a track (id -1) are not written, so not kept."""
        if detections.track_ids is None:
            detections = detections.with_(track_ids=np.full(len(detections), -1, np.int64))
        # The writers need boxes, scores, keypoints and ids only: drop the heavy per-part features.
        people = detections.with_(embeddings=None, visibility=None).subset(detections.track_ids >= 0)
        self._frames.append(frame)
        self._people.append(people)

    def finish(self) -> tuple[list[tuple[Frame, Detections]], dict]:
        people, stats = filter_sequence(self._people, self.cfg)
        frames, self._frames, self._people = self._frames, [], []
        return list(zip(frames, people)), stats
