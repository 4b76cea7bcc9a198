"""The motion cue of KPRTracker: the box-height motion gate, IoU blended only for tracks seen in the
previous frame, IoU-only tracking, and the generic-video config that uses them."""
from __future__ import annotations

import numpy as np
import pytest

from kprtrack.config import compose
from kprtrack.record import Detections
from kprtrack.tracker import KPRTracker

PARTS, DIM = 1, 8


def people(*rows: tuple[int, float, float]) -> Detections:
    """(person, x, y) rows: a 20 x 50 box at (x, y), score 0.9, a one-hot appearance per person."""
    n = len(rows)
    boxes = np.array([[x, y, x + 20, y + 50] for _, x, y in rows], np.float32).reshape(n, 4)
    feats = np.zeros((n, PARTS, DIM), np.float32)
    for i, (person, _, _) in enumerate(rows):
        feats[i, :, person] = 1.0
    return Detections(boxes=boxes, scores=np.full(n, 0.9, np.float32), embeddings=feats,
                      visibility=np.ones((n, PARTS), np.float32))


def nobody() -> Detections:
    return people()


def test_motion_gate_forbids_a_far_lookalike_that_appearance_alone_would_take():
    gated, free = KPRTracker(motion_gate=2.0), KPRTracker()
    for tracker in (gated, free):
        assert tracker.update(people((0, 0, 0))).track_ids.tolist() == [1]
    # Same appearance, 3 box heights (150 px) away one frame later: only the ungated tracker takes it.
    assert free.update(people((0, 0, 150))).track_ids.tolist() == [1]
    assert gated.update(people((0, 0, 150))).track_ids.tolist() == [-1]
    # Within 2 heights (90 px) it is the same track.
    gated2 = KPRTracker(motion_gate=2.0)
    gated2.update(people((0, 0, 0)))
    assert gated2.update(people((0, 0, 90))).track_ids.tolist() == [1]


def test_motion_gate_grows_with_the_frames_a_track_went_unseen():
    tracker = KPRTracker(motion_gate=1.0, motion_gate_growth=0.5)
    tracker.update(people((0, 0, 0)))
    for _ in range(4):  # unseen for 5 frames at the next update: radius 1 + 0.5 * 4 = 3 heights = 150 px
        tracker.update(nobody())
    assert tracker.update(people((0, 0, 140))).track_ids.tolist() == [1]
    tracker = KPRTracker(motion_gate=1.0, motion_gate_growth=0.5)
    tracker.update(people((0, 0, 0)))
    for _ in range(4):
        tracker.update(nobody())
    assert tracker.update(people((0, 0, 160))).track_ids.tolist() == [-1]


def test_iou_blends_into_the_cost_of_tracks_seen_last_frame_only():
    """A track unseen for a frame (IoU 0 with its old box) is re-identified by appearance even with a
    strong IoU weight; blending IoU into every track would have put its cost at (0 + 1 * 1) / 2."""
    tracker = KPRTracker(iou_weight=1.0, match_thresh=0.4)
    tracker.update(people((0, 0, 0), (1, 100, 0)))
    tracker.update(people((1, 100, 0)))  # person 0 unseen
    assert tracker.update(people((0, 300, 0), (1, 100, 0))).track_ids.tolist() == [1, 2]


def test_iou_breaks_ties_between_lookalikes_for_a_continuing_track():
    tracker = KPRTracker(iou_weight=1.0)
    tracker.update(people((0, 0, 0)))
    # Two detections that look exactly like the track: the one overlapping its box continues it.
    out = tracker.update(people((0, 200, 0), (0, 2, 0)))
    assert out.track_ids.tolist() == [-1, 1]


def test_iou_only_tracking_without_embeddings():
    tracker = KPRTracker(appearance_weight=0, iou_weight=1, kalman=True, match_thresh=0.8)
    boxes = Detections(boxes=np.array([[0, 0, 20, 50], [200, 0, 220, 50]], np.float32),
                       scores=np.full(2, 0.9, np.float32))
    assert tracker.update(boxes).track_ids.tolist() == [1, 2]
    moved = Detections(boxes=boxes.boxes[::-1] + np.float32(3), scores=boxes.scores)
    assert tracker.update(moved).track_ids.tolist() == [2, 1]


def test_negative_gates_are_refused():
    with pytest.raises(ValueError, match="motion_gate"):
        KPRTracker(motion_gate=-1)


def test_video_datasets_default_to_the_video_tracker_and_posetrack_to_the_paper_tracker():
    video = compose("run", ["dataset=video", "dataset.path=clip.mp4"]).tracker
    images = compose("run", ["dataset=images", "dataset.path=frames"]).tracker
    paper = compose("run", ["dataset=posetrack21"]).tracker
    for cfg in (video, images):
        assert cfg.motion_gate > 0 and cfg.kalman and cfg.iou_weight > 0 and cfg.appearance_weight == 1
    assert paper.motion_gate == 0 and not paper.kalman and paper.iou_weight == 0  # the paper: appearance only
