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
from collections import Counter
from typing import Iterator, Sequence

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


def _keypoint_mask(people: Detections, cfg: FilterConfig) -> np.ndarray:
    """Rule 1: the detections with enough keypoints above the threshold."""
    visible = (_keypoints(people)[:, :, 2] > cfg.keypoint_threshold).sum(1)
    return visible >= cfg.min_visible_keypoints


def _finish_frame(people: Detections, long_enough: set, cfg: FilterConfig, stats: dict) -> Detections:
    """Rules 2 and 3 on one frame's people (rule 1 applied already)."""
    keep = np.fromiter((t in long_enough for t in people.track_ids.tolist()), bool, len(people))
    stats["dropped_short_tracklets"] += int((~keep).sum())
    people = people.subset(keep)
    keypoints = _keypoints(people).copy()
    low = keypoints[:, :, 2] < cfg.keypoint_threshold
    stats["zeroed_keypoints"] += int((low & np.any(keypoints != 0, axis=2)).sum())
    keypoints[low] = 0.0
    stats["detections_out"] += len(people)
    return people.with_(keypoints=keypoints)


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
        keep = _keypoint_mask(people, cfg)
        stats["dropped_few_keypoints"] += int((~keep).sum())
        kept.append(people.subset(keep))
    ids = np.concatenate([p.track_ids for p in kept]) if kept else np.zeros(0, np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    long_enough = set(unique[counts >= cfg.min_tracklet_length].tolist())
    stats["detections_out"] = 0
    return [_finish_frame(people, long_enough, cfg, stats) for people in kept], stats


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


# Per frame, the few fields the track writers read (``Frame`` without its image, GT or regions).
FRAME_FIELDS = ("sequence", "index", "image_id", "file_name", "is_labeled", "width", "height")
SPILL_FRAMES = 256  # frames per chunk spilled to disk


class SequenceFilter:
    """Collects one sequence's tracked people and hands the filtered tracks back when the sequence
    ends. With filters off, the tracks pass unchanged.

    Memory stays flat over long videos: each frame is reduced to what the track files need (boxes,
    scores, keypoints, ids and the frame's names; no embeddings, no image) and spilled in chunks to
    an anonymous temporary file (in ``spill_dir``, the run folder; it vanishes with the process,
    even when killed). Only the per-track counts of the tracklet filter stay in memory."""

    def __init__(self, cfg: FilterConfig | None = None, spill_dir: str | None = None):
        self.cfg = cfg or FilterConfig(enabled=False)
        self.spill_dir = spill_dir
        self._spill = None
        self.begin()

    def begin(self) -> None:
        self.close()
        self._pending: list[tuple[tuple, Detections]] = []
        self._chunks = 0
        self._track_counts: Counter = Counter()
        self._stats = dict.fromkeys(STAT_KEYS, 0)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def add(self, frame: Frame, detections: Detections) -> None:
        """One frame's tracker output; rows without a track (id -1) are not written, so not kept."""
        if detections.track_ids is None:
            detections = detections.with_(track_ids=np.full(len(detections), -1, np.int64))
        # The writers need boxes, scores, keypoints and ids only: drop the heavy per-part features.
        people = Detections(detections.boxes, detections.scores, keypoints=detections.keypoints,
                            track_ids=detections.track_ids).subset(detections.track_ids >= 0)
        self._stats["detections_in"] += len(people)
        if self.cfg.enabled:  # rule 1 now: only the track counts of what remains are needed later
            keep = _keypoint_mask(people, self.cfg)
            self._stats["dropped_few_keypoints"] += int((~keep).sum())
            people = people.subset(keep)
            self._track_counts.update(people.track_ids.tolist())
        self._pending.append((tuple(getattr(frame, f) for f in FRAME_FIELDS), people))
        if len(self._pending) >= SPILL_FRAMES:
            self._flush()

    def _flush(self) -> None:
        import pickle
        import tempfile

        if not self._pending:
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(dir=self.spill_dir, prefix=".kprtrack-tracks.")
        frames = [meta for meta, _ in self._pending]
        people = [p for _, p in self._pending]
        offsets = np.cumsum([0] + [len(p) for p in people])
        keypoints = [p.keypoints for p in people]
        pickle.dump((frames, offsets, np.concatenate([p.boxes for p in people]),
                     np.concatenate([p.scores for p in people]), np.concatenate([p.track_ids for p in people]),
                     None if any(k is None for k in keypoints) else np.concatenate(keypoints)),
                    self._spill, protocol=pickle.HIGHEST_PROTOCOL)
        self._chunks += 1
        self._pending = []

    def _collected(self) -> Iterator[tuple[Frame, Detections]]:
        import pickle

        if self._spill is not None:
            self._spill.seek(0)
            for _ in range(self._chunks):
                frames, offsets, boxes, scores, track_ids, keypoints = pickle.load(self._spill)
                for meta, start, stop in zip(frames, offsets[:-1], offsets[1:]):
                    yield self._frame(meta), Detections(boxes[start:stop], scores[start:stop], keypoints=None
                                                        if keypoints is None else keypoints[start:stop],
                                                        track_ids=track_ids[start:stop])
        for meta, people in self._pending:
            yield self._frame(meta), people

    @staticmethod
    def _frame(meta: tuple) -> Frame:
        return Frame(**dict(zip(FRAME_FIELDS, meta)), image=None)

    def stream(self) -> tuple[Iterator[tuple[Frame, Detections]], dict]:
        """The sequence's filtered tracks, frame by frame (read back from the spill), and the counts
        (complete once the iterator is exhausted). The filter is ready for the next sequence after."""
        stats = dict(self._stats)
        cfg = self.cfg
        long_enough = {t for t, n in self._track_counts.items() if n >= cfg.min_tracklet_length}

        def tracks():
            try:
                for frame, people in self._collected():
                    if cfg.enabled:
                        people = _finish_frame(people, long_enough, cfg, stats)
                    else:
                        stats["detections_out"] += len(people)
                    yield frame, people
            finally:
                self.begin()

        return tracks(), stats

    def finish(self) -> tuple[list[tuple[Frame, Detections]], dict]:
        tracks, stats = self.stream()
        return list(tracks), stats
