"""ByteTrack life-cycle rules of KPRTracker, each pinned by a small hand-made sequence.

People are one-hot part features: the same person is at distance 0, two different people at
sqrt(2)/2 ~ 0.71, far above every matching threshold, so each test controls matches exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from kprtrack.record import Detections
from kprtrack.stages import Tracker
from kprtrack.tracker import KPRTracker
from kprtrack.tracker.track_store import LOST, NEW, TRACKED

PARTS, DIM = 3, 16


def person_feature(person: int) -> np.ndarray:
    feats = np.zeros((PARTS, DIM), np.float32)
    feats[:, person % DIM] = 1.0
    return feats


def frame(*people: tuple[int, float], vis=None) -> Detections:
    """Detections for (person, score) pairs; boxes far apart so only appearance decides."""
    n = len(people)
    boxes = np.array([[100 * p, 0, 100 * p + 50, 100] for p, _ in people], np.float32).reshape(n, 4)
    return Detections(
        boxes=boxes,
        scores=np.array([s for _, s in people], np.float32),
        embeddings=np.stack([person_feature(p) for p, _ in people]) if n else np.zeros((0, PARTS, DIM), np.float32),
        visibility=np.ones((n, PARTS), bool) if vis is None else np.asarray(vis),
    )


def ids(tracker: KPRTracker, detections: Detections) -> list[int]:
    return tracker.update(detections).track_ids.tolist()


def states(tracker: KPRTracker) -> dict[int, int]:
    """Confirmed id -> state of every stored track."""
    store = tracker.tracks
    return {int(i): int(s) for i, s in zip(store.column("ids"), store.column("state")) if i >= 0}


def test_satisfies_the_stage_protocol_and_keeps_rows():
    tracker = KPRTracker()
    assert isinstance(tracker, Tracker)
    dets = frame((3, 0.9), (1, 0.9), (2, 0.05))
    out = tracker.update(dets)
    np.testing.assert_array_equal(out.boxes, dets.boxes)  # same rows, same order
    assert out.track_ids.dtype == np.int64
    assert out.track_ids.tolist() == [1, 2, -1]  # ids from 1 in row order; too weak -> -1


def test_first_frame_tracks_are_confirmed_at_once_and_keep_ids():
    tracker = KPRTracker()
    assert ids(tracker, frame((0, 0.9), (1, 0.9))) == [1, 2]
    assert ids(tracker, frame((1, 0.9), (0, 0.9))) == [2, 1]


def test_track_born_later_is_unconfirmed_until_matched_next_frame():
    tracker = KPRTracker()
    assert ids(tracker, frame((0, 0.9))) == [1]
    assert ids(tracker, frame((0, 0.9), (5, 0.9))) == [1, -1]  # born at frame 2: not reported yet
    assert {int(s) for s in tracker.tracks.column("state")} == {TRACKED, NEW}
    assert ids(tracker, frame((0, 0.9), (5, 0.9))) == [1, 2]  # matched again: confirmed, next id


def test_unconfirmed_track_unmatched_next_frame_is_removed():
    tracker = KPRTracker()
    ids(tracker, frame((0, 0.9)))
    assert ids(tracker, frame((0, 0.9), (5, 0.9))) == [1, -1]
    assert ids(tracker, frame((0, 0.9))) == [1]
    assert tracker.tracks.size == 1  # the tentative track is gone, not lost
    # Seen again later it starts over as a new tentative track, and ids have no gap.
    assert ids(tracker, frame((0, 0.9), (5, 0.9))) == [1, -1]
    assert ids(tracker, frame((0, 0.9), (5, 0.9))) == [1, 2]


def test_round_two_low_confidence_keeps_a_tracked_track():
    tracker = KPRTracker(det_high_thresh=0.5, det_low_thresh=0.1)
    ids(tracker, frame((0, 0.9)))
    assert ids(tracker, frame((0, 0.3))) == [1]  # low score, still matched to its tracked track
    assert states(tracker) == {1: TRACKED}


def test_round_two_never_uses_low_detections_for_lost_tracks():
    tracker = KPRTracker()
    ids(tracker, frame((0, 0.9)))
    ids(tracker, frame())  # nobody: track 1 becomes lost
    assert states(tracker) == {1: LOST}
    assert ids(tracker, frame((0, 0.3))) == [-1]  # a weak box cannot resurrect a lost track
    assert states(tracker) == {1: LOST} and tracker.tracks.size == 1  # nor start a track
    assert ids(tracker, frame((0, 0.9))) == [1]  # a confident one re-activates it with the old id
    assert states(tracker) == {1: TRACKED}


def test_low_detections_never_start_tracks_and_very_low_are_ignored():
    tracker = KPRTracker(det_high_thresh=0.5, det_low_thresh=0.1, new_track_thresh=0.6)
    assert ids(tracker, frame((0, 0.3), (1, 0.55), (2, 0.05))) == [-1, -1, -1]
    assert tracker.tracks.size == 0  # 0.55 is "high" but below new_track_thresh
    ids(tracker, frame((3, 0.9)))  # born at frame 2: tentative
    assert ids(tracker, frame((3, 0.9))) == [1]  # confirmed
    tracker.update(frame())  # track of person 3 lost
    assert ids(tracker, frame((3, 0.55))) == [1]  # a high detection below new_track_thresh can still re-match


def test_lost_track_reactivated_with_old_id_after_a_long_gap():
    tracker = KPRTracker(track_buffer=100)
    assert ids(tracker, frame((0, 0.9), (1, 0.9))) == [1, 2]
    for _ in range(60):
        assert ids(tracker, frame((1, 0.9))) == [2]
    assert states(tracker) == {1: LOST, 2: TRACKED}
    assert ids(tracker, frame((1, 0.9), (0, 0.9))) == [2, 1]


def test_lost_tracks_removed_after_track_buffer_frames():
    buffer = 3
    tracker = KPRTracker(track_buffer=buffer)
    ids(tracker, frame((0, 0.9), (1, 0.9)))  # frame 1: person 0 last seen
    for _ in range(buffer):  # frames 2..4: lost for 1..3 frames, kept
        ids(tracker, frame((1, 0.9)))
    assert states(tracker) == {1: LOST, 2: TRACKED}
    ids(tracker, frame((1, 0.9)))  # frame 5: lost for 4 > 3 frames -> removed
    assert states(tracker) == {2: TRACKED}
    assert ids(tracker, frame((1, 0.9), (0, 0.9))) == [2, -1]  # comes back as a new (tentative) track
    assert ids(tracker, frame((1, 0.9), (0, 0.9))) == [2, 3]


def test_lost_track_still_there_at_exactly_track_buffer_frames():
    tracker = KPRTracker(track_buffer=3)
    ids(tracker, frame((0, 0.9), (1, 0.9)))
    for _ in range(2):
        ids(tracker, frame((1, 0.9)))
    assert ids(tracker, frame((1, 0.9), (0, 0.9))) == [2, 1]  # gap of 3 frames: re-matched


def test_cost_above_the_round_threshold_is_not_matched():
    tracker = KPRTracker(match_thresh=0.1)
    ids(tracker, frame((0, 0.9)))
    half = person_feature(0) + person_feature(1) * 0.5  # distance ~0.23 to person 0
    dets = frame((0, 0.9)).with_(embeddings=half[None])
    assert ids(tracker, dets) == [-1]
    tracker = KPRTracker(match_thresh=0.3)
    ids(tracker, frame((0, 0.9)))
    assert ids(tracker, dets) == [1]


def test_no_mutually_visible_part_is_never_matched():
    tracker = KPRTracker(match_thresh=1.0, second_match_thresh=1.0, unconfirmed_match_thresh=1.0)
    ids(tracker, frame((0, 0.9), vis=[[True, False, False]]))
    assert ids(tracker, frame((0, 0.9), vis=[[False, True, True]])) == [-1]  # same features, nothing in common
    assert ids(tracker, frame((0, 0.9), vis=[[True, False, False]])) == [1]


def test_assignment_is_globally_optimal_not_greedy():
    tracker = KPRTracker(match_thresh=0.6)
    ids(tracker, frame((0, 0.9), (1, 0.9)))
    # Detection A is closest to track 1 but detection B can only go to track 1; Hungarian gives A -> 2.
    f0, f1 = person_feature(0), person_feature(1)
    det_a = f0 * 1.0 + f1 * 0.9  # ~0.30 from track 1, ~0.34 from track 2
    det_b = f0 * 1.0 + f1 * 0.05  # ~0.02 from track 1, ~0.69 from track 2 (above 0.6)
    dets = frame((0, 0.9), (1, 0.9)).with_(embeddings=np.stack([det_a, det_b]))
    assert ids(tracker, dets) == [2, 1]


def test_nan_rows_are_ignored_without_crashing():
    tracker = KPRTracker()
    ids(tracker, frame((0, 0.9), (1, 0.9)))
    dets = frame((0, 0.9), (1, 0.9), (2, 0.9), (3, 0.9))
    dets.boxes[1, 2] = np.nan
    dets.scores[2] = np.nan
    dets.embeddings[3, 1, 4] = np.inf
    assert ids(tracker, dets) == [1, -1, -1, -1]
    assert tracker.tracks.size == 2  # no track started from a broken row
    assert ids(tracker, frame((1, 0.9))) == [2]  # track 2 was only lost for one frame


def test_embeddings_required_when_appearance_is_on():
    tracker = KPRTracker()
    with pytest.raises(ValueError, match="no embeddings"):
        tracker.update(Detections(np.array([[0, 0, 10, 10]]), np.array([0.9])))
    assert tracker.update(Detections.empty()).track_ids.tolist() == []  # nothing to embed: fine


def test_missing_visibility_means_every_part_visible():
    tracker = KPRTracker()
    assert ids(tracker, frame((0, 0.9)).with_(visibility=None)) == [1]
    assert ids(tracker, frame((0, 0.9)).with_(visibility=None)) == [1]


def test_embedding_layout_change_within_a_sequence_is_an_error_and_reset_clears_it():
    tracker = KPRTracker()
    ids(tracker, frame((0, 0.9)))
    other = Detections(np.array([[0, 0, 10, 10]]), np.array([0.9]), embeddings=np.ones((1, 2, 8)))
    with pytest.raises(ValueError, match="changed layout"):
        tracker.update(other)
    tracker.reset()
    assert ids(tracker, other) == [1]


def test_reset_restarts_ids_and_frame_one_rule():
    tracker = KPRTracker()
    ids(tracker, frame((0, 0.9)))
    ids(tracker, frame((0, 0.9), (1, 0.9)))
    tracker.reset()
    assert tracker.tracks.size == 0
    assert ids(tracker, frame((7, 0.9), (8, 0.9))) == [1, 2]


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError, match="at least one cue"):
        KPRTracker(appearance_weight=0, iou_weight=0)
    with pytest.raises(ValueError, match="needs the Kalman"):
        KPRTracker(motion_gating=True)
