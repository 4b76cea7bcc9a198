"""Optional spatio-temporal cue: constant-velocity Kalman filter, IoU cost, gates."""
from __future__ import annotations

import numpy as np
import pytest

from kprtrack.record import Detections
from kprtrack.tracker import KPRTracker
from kprtrack.tracker import kalman
from kprtrack.tracker.matching import assign, iou_matrix

BOX_ONLY = dict(appearance_weight=0.0, iou_weight=1.0, match_thresh=0.8, second_match_thresh=0.5,
                unconfirmed_match_thresh=0.7)


def test_box_conversions_round_trip():
    boxes = np.array([[10, 20, 50, 120], [0, 0, 1, 2]], np.float32)
    np.testing.assert_allclose(kalman.xyah_to_boxes(kalman.boxes_to_xyah(boxes)), boxes, atol=1e-4)


def test_filter_learns_constant_velocity():
    mean, cov = kalman.initiate(np.array([[100.0, 50.0, 0.5, 80.0]]))
    for step in range(1, 15):
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, np.array([[100.0 + 7 * step, 50.0 - 2 * step, 0.5, 80.0]]))
    np.testing.assert_allclose(mean[0, 4:6], [7, -2], atol=0.3)
    mean, cov = kalman.predict(mean, cov)
    np.testing.assert_allclose(mean[0, :2], [100 + 7 * 15, 50 - 2 * 15], atol=1.0)
    dense = kalman.dense_covariance(cov)
    assert np.allclose(dense, dense.transpose(0, 2, 1)) and (np.linalg.eigvalsh(dense) > 0).all()


def _textbook_step(mean, cov, z):
    """One predict + update of the dense 8x8 filter, straight from the equations (F, Q, H, R matrices)."""
    h = mean[3]
    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    q = np.diag(np.square([h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160]))
    mean, cov = f @ mean, f @ cov @ f.T + q
    hm = np.eye(4, 8)
    r = np.diag(np.square([mean[3] / 20, mean[3] / 20, 1e-1, mean[3] / 20]))
    s = hm @ cov @ hm.T + r
    gain = cov @ hm.T @ np.linalg.inv(s)
    return mean + gain @ (z - hm @ mean), (np.eye(8) - gain @ hm) @ cov


def test_block_filter_equals_the_dense_textbook_filter():
    rng = np.random.default_rng(3)
    z0 = rng.uniform([50, 50, 0.3, 60], [500, 400, 0.6, 200], size=(5, 4))
    mean, cov = kalman.initiate(z0)
    ref = [(mean[i].copy(), kalman.dense_covariance(cov)[i]) for i in range(5)]
    for step in range(20):
        z = z0 + step * np.array([6.0, -3.0, 0.0, 1.0]) + rng.normal(0, 2, size=z0.shape) * [1, 1, 0.01, 1]
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, z)
        ref = [_textbook_step(m, c, z[i]) for i, (m, c) in enumerate(ref)]
    np.testing.assert_allclose(mean, np.stack([m for m, _ in ref]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(kalman.dense_covariance(cov), np.stack([c for _, c in ref]), rtol=1e-9, atol=1e-12)


def test_batched_filter_equals_one_track_at_a_time():
    rng = np.random.default_rng(0)
    z = rng.uniform(50, 200, size=(4, 4))
    mean, cov = kalman.initiate(z)
    mean, cov = kalman.predict(mean, cov)
    z2 = z + rng.normal(size=z.shape)
    batch = kalman.update(mean, cov, z2)
    for i in range(4):
        single = kalman.update(mean[i : i + 1], cov[i : i + 1], z2[i : i + 1])
        np.testing.assert_allclose(batch[0][i], single[0][0])
        np.testing.assert_allclose(batch[1][i], single[1][0])


def test_gating_distance_is_mahalanobis():
    mean, cov = kalman.initiate(np.array([[100.0, 100.0, 0.5, 100.0]]))
    near, far = [101.0, 100.0, 0.5, 100.0], [180.0, 100.0, 0.5, 100.0]
    distance = kalman.gating_distance(mean, cov, np.array([near, far]))
    proj_cov = kalman.dense_covariance(cov)[0, :4, :4] + np.diag([5.0, 5.0, 0.1, 5.0]) ** 2
    diff = np.array(far) - mean[0, :4]
    assert distance[0, 1] == pytest.approx(diff @ np.linalg.solve(proj_cov, diff), rel=1e-6)
    assert distance[0, 0] < kalman.CHI2_95_4DOF < distance[0, 1]


def test_iou_matrix_and_assign():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 100, 100]])
    iou = iou_matrix(a, b)
    np.testing.assert_allclose(iou, [[1, 50 / 150, 0], [0, 0, 0]])
    matches, rows, cols = assign(1 - iou, 0.8)
    assert matches.tolist() == [[0, 0]] and rows.tolist() == [1] and cols.tolist() == [1, 2]
    matches, rows, cols = assign(np.array([[np.inf, 0.2]]), 0.5)
    assert matches.tolist() == [[0, 1]]
    assert assign(np.zeros((0, 3)), 0.5)[2].tolist() == [0, 1, 2]


def accelerating_people(frames: int):
    """Three people speeding up to 30 px/frame, boxes 40 px wide: last-box IoU soon drops to ~0.1."""
    x, velocity = np.zeros(3), np.zeros(3)
    y = np.array([0.0, 200.0, 400.0])
    for _ in range(frames):
        velocity = np.minimum(velocity + 1.5, 30)
        x = x + velocity
        yield Detections(np.stack([x, y, x + 40, y + 120], axis=1), np.full(3, 0.9))


def test_kalman_and_iou_track_boxes_without_embeddings():
    tracker = KPRTracker(kalman=True, motion_gating=True, **BOX_ONLY)
    for detections in accelerating_people(40):
        assert tracker.update(detections).track_ids.tolist() == [1, 2, 3]


def test_without_kalman_the_last_box_cannot_follow_fast_motion():
    tracker = KPRTracker(kalman=False, **BOX_ONLY)
    last = [tracker.update(d).track_ids.tolist() for d in accelerating_people(40)][-1]
    assert last != [1, 2, 3]  # proves the previous test needs the motion model


def test_motion_gate_forbids_a_jump_even_with_a_loose_threshold():
    tracker = KPRTracker(kalman=True, motion_gating=True, appearance_weight=0, iou_weight=1, match_thresh=1.0,
                         second_match_thresh=1.0, unconfirmed_match_thresh=1.0)
    assert tracker.update(Detections(np.array([[0, 0, 40, 100]]), [0.9])).track_ids.tolist() == [1]
    assert tracker.update(Detections(np.array([[600, 0, 640, 100]]), [0.9])).track_ids.tolist() == [-1]


def test_min_iou_gate_with_appearance():
    feats = np.ones((1, 2, 4), np.float32)
    first = Detections(np.array([[0, 0, 40, 100]]), [0.9], embeddings=feats)
    jump = Detections(np.array([[600, 0, 640, 100]]), [0.9], embeddings=feats)
    gated = KPRTracker(min_iou=0.1)
    gated.update(first)
    assert gated.update(jump).track_ids.tolist() == [-1]
    free = KPRTracker()
    free.update(first)
    assert free.update(jump).track_ids.tolist() == [1]  # appearance alone ignores position


def test_fused_cost_is_the_weighted_mean():
    feats_a = np.zeros((1, 1, 2), np.float32)
    feats_a[0, 0, 0] = 1
    feats_b = np.array([[[1.0, 1.0]]], np.float32)  # appearance distance sin(22.5 deg) ~ 0.383
    box = np.array([[0, 0, 10, 10]])
    shifted = np.array([[5, 0, 15, 10]])  # IoU 1/3 -> IoU cost 2/3
    expected = (1 * 0.3827 + 3 * (2 / 3)) / 4  # ~0.596
    for thresh, matched in ((0.58, False), (0.61, True)):
        tracker = KPRTracker(appearance_weight=1, iou_weight=3, match_thresh=thresh)
        tracker.update(Detections(box, [0.9], embeddings=feats_a))
        got = tracker.update(Detections(shifted, [0.9], embeddings=feats_b)).track_ids.tolist()
        assert got == ([1] if matched else [-1]), (thresh, expected)


def test_lost_track_keeps_moving_but_stops_growing():
    """ByteTrack zeroes the height rate of lost tracks so an unseen box does not balloon."""
    tracker = KPRTracker(kalman=True, **BOX_ONLY)
    for step in range(12):  # moving right 10 px/frame and growing 4 px/frame
        box = np.array([[10.0 * step, 0, 10.0 * step + 40, 100 + 4.0 * step]])
        assert tracker.update(Detections(box, [0.9])).track_ids.tolist() == [1]
    heights, centres = [], []
    for _ in range(3):
        tracker.update(Detections.empty())
        predicted = tracker.tracks.predicted_boxes()[0]
        heights.append(predicted[3] - predicted[1])
        centres.append((predicted[0] + predicted[2]) / 2)
    assert np.ptp(heights[1:]) < 0.5  # after the first lost frame the height is frozen
    assert centres[2] - centres[1] > 5  # ... while the box keeps its horizontal velocity
