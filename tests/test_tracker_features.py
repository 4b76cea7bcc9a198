"""Visibility-masked moving average of tracklet part features, alone and inside the tracker."""
from __future__ import annotations

import numpy as np
import pytest

from kprtrack.record import Detections
from kprtrack.tracker import KPRTracker
from kprtrack.tracker.masked_ema import masked_ema


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_each_visibility_case():
    track = unit([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]])
    det = unit([[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]])
    track_vis = np.array([True, True, False, False])
    det_vis = np.array([True, False, True, False])
    feats, vis = masked_ema(track, track_vis, det, det_vis, alpha=0.9)
    np.testing.assert_allclose(feats[0], unit([0.9, 0.1, 0]), atol=1e-6)  # both: blended, re-normalised
    np.testing.assert_allclose(feats[1], track[1])  # hidden in the detection: tracklet's kept
    np.testing.assert_allclose(feats[2], det[2])  # new in the detection: taken as is
    np.testing.assert_allclose(feats[3], track[3])  # seen by neither: unchanged
    assert vis.tolist() == [1, 1, 1, 0]
    np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), 1.0, atol=1e-6)


def test_float_visibility_threshold_and_max():
    track = unit([[1, 0], [1, 0]])
    det = unit([[0, 1], [0, 1]])
    feats, vis = masked_ema(track, np.array([0.9, 0.2]), det, np.array([0.3, 0.7]), 0.9, visible_threshold=0.5)
    np.testing.assert_allclose(feats[0], track[0])  # 0.3 < 0.5: not visible in the detection
    np.testing.assert_allclose(feats[1], det[1])  # 0.2 < 0.5 in the track: detection's taken
    np.testing.assert_allclose(vis, [0.9, 0.7])


def test_leading_layout_does_not_matter():
    rng = np.random.default_rng(0)
    track, det = unit(rng.normal(size=(4, 3, 5))), unit(rng.normal(size=(4, 3, 5)))
    tv, dv = rng.random((4, 3)) > 0.5, rng.random((4, 3)) > 0.5
    row_major = masked_ema(track, tv, det, dv)
    part_major = masked_ema(track.transpose(1, 0, 2), tv.T, det.transpose(1, 0, 2), dv.T)
    np.testing.assert_allclose(part_major[0].transpose(1, 0, 2), row_major[0], atol=1e-6)


def stored_features(tracker: KPRTracker, track_id: int):
    store = tracker.tracks
    row = int(np.flatnonzero(store.column("ids") == track_id)[0])
    return store.column("feats")[:, row], store.column("vis")[:, row]


def detection(feats, vis, score=0.9):
    return Detections(np.array([[0, 0, 50, 100]]), np.array([score]), embeddings=feats[None], visibility=np.array([vis]))


def test_tracker_updates_global_part_always_and_keeps_hidden_parts():
    """Part 0 (global/foreground) is visible in every detection, so it follows each match; a part hidden
    in the new detection keeps the tracklet's feature; visibility becomes the max."""
    tracker = KPRTracker(match_thresh=0.5, ema_alpha=0.9)
    first = unit([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    assert tracker.update(detection(first, [True, True, False])).track_ids.tolist() == [1]
    second = unit([[1, 0.5, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]])
    assert tracker.update(detection(second, [True, False, True])).track_ids.tolist() == [1]
    feats, vis = stored_features(tracker, 1)
    np.testing.assert_allclose(feats[0], unit(0.9 * first[0] + 0.1 * second[0]), atol=1e-6)  # global: EMA
    np.testing.assert_allclose(feats[1], first[1], atol=1e-6)  # hidden now: kept
    np.testing.assert_allclose(feats[2], second[2], atol=1e-6)  # first seen now: taken
    assert vis.tolist() == [1, 1, 1]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_alpha_extremes(alpha):
    tracker = KPRTracker(match_thresh=0.5, ema_alpha=alpha)
    a, b = unit([[1, 0, 0]]), unit([[1, 0.6, 0]])
    tracker.update(detection(a, [True]))
    tracker.update(detection(b, [True]))
    feats, _ = stored_features(tracker, 1)
    np.testing.assert_allclose(feats[0], unit(alpha * a[0] + (1 - alpha) * b[0]), atol=1e-6)


def test_low_confidence_match_updates_features_too():
    tracker = KPRTracker(match_thresh=0.5, second_match_thresh=0.5)
    a, b = unit([[1, 0, 0]]), unit([[1, 0.6, 0]])
    tracker.update(detection(a, [True]))
    assert tracker.update(detection(b, [True], score=0.3)).track_ids.tolist() == [1]
    feats, _ = stored_features(tracker, 1)
    assert not np.allclose(feats[0], a[0])


def test_inplace_update_matches_a_per_pair_loop():
    from kprtrack.tracker.masked_ema import PartFeatures, masked_ema_update

    rng = np.random.default_rng(5)
    parts, n_tracks, n_dets, dim = 4, 7, 6, 8
    feats = unit(rng.normal(size=(parts, n_tracks, dim)))
    vis = rng.random((parts, n_tracks)).astype(np.float32)
    det_feats = unit(rng.normal(size=(parts, n_dets, dim)))
    det_vis = rng.random((parts, n_dets)).astype(np.float32)
    rows, det_rows = np.array([5, 0, 3]), np.array([2, 4, 0])
    expected_feats, expected_vis = feats.copy(), vis.copy()
    for r, d in zip(rows, det_rows):
        for p in range(parts):
            seen_t, seen_d = vis[p, r] >= 0.5, det_vis[p, d] >= 0.5
            if seen_t and seen_d:
                expected_feats[p, r] = unit(0.8 * feats[p, r] + 0.2 * det_feats[p, d])
            elif seen_d:
                expected_feats[p, r] = det_feats[p, d]
            expected_vis[p, r] = max(vis[p, r], det_vis[p, d])
    masked_ema_update(PartFeatures(feats, vis), rows, PartFeatures(det_feats, det_vis), det_rows, 0.8, 0.5)
    np.testing.assert_allclose(feats, expected_feats, atol=1e-6)
    np.testing.assert_allclose(vis, expected_vis)


def reference_ema(track, track_vis, det, det_vis, alpha, threshold=0.5):
    """The rule in float64, one part vector at a time: both seen -> unit(alpha t + (1 - alpha) unit(d)),
    detection only -> unit(d), otherwise t; visibility -> the max."""
    track, det = np.asarray(track, np.float64), np.asarray(det, np.float64)
    d = det / np.linalg.norm(det)
    if track_vis >= threshold and det_vis >= threshold:
        blend = alpha * track + (1 - alpha) * d
        return blend / np.linalg.norm(blend), max(track_vis, det_vis)
    if det_vis >= threshold:
        return d, max(track_vis, det_vis)
    return track, max(track_vis, det_vis)


def test_near_cancelling_blend_is_measured_not_derived_from_the_dot_products():
    """With the cost's dot products the EMA derives each blend's norm from |t|^2, |d|^2 and t.d; for a
    blend that nearly cancels (alpha 0.5, a part turned almost opposite) that formula loses its digits,
    so the whole batch falls back to measuring the blended vectors. Raw detection vectors with
    1/norm scales, as the tracker hands them over."""
    from kprtrack.tracker.masked_ema import PartFeatures, masked_ema_update

    rng = np.random.default_rng(7)
    parts, n_tracks, n_dets, dim, alpha = 3, 4, 3, 6, 0.5
    track_feats = unit(rng.normal(size=(parts, n_tracks, dim)))
    track_vis = np.array([[1.0, 0.9, 0.2, 1.0], [1.0, 1.0, 1.0, 0.7], [0.8, 1.0, 0.0, 1.0]], np.float32)
    det_raw = rng.normal(size=(parts, n_dets, dim)).astype(np.float32) * rng.uniform(0.5, 3.0, (parts, n_dets, 1))
    det_vis = np.array([[1.0, 0.9, 1.0], [0.3, 1.0, 1.0], [1.0, 0.6, 0.9]], np.float32)
    rows, det_rows = np.array([3, 0, 2]), np.array([0, 1, 2])
    # Track 0 takes detection 1, whose part 1 points almost opposite the track's: the blend keeps
    # about 0.1% of the vectors' length (|blend|^2 ~ 1e-6, far below the formula's 1e-2 limit).
    perpendicular = unit(np.r_[-track_feats[1, 0, 1], track_feats[1, 0, 0], np.zeros(dim - 2)])
    det_raw[1, 1] = 2.5 * (-track_feats[1, 0] + 0.002 * perpendicular)
    expected = [[reference_ema(track_feats[p, r], track_vis[p, r], det_raw[p, d], det_vis[p, d], alpha)
                 for r, d in zip(rows, det_rows)] for p in range(parts)]

    norms = np.linalg.norm(det_raw, axis=-1)
    tracks = PartFeatures(track_feats.copy(), track_vis.copy(), sq_norms=np.ones((parts, n_tracks), np.float32))
    dets = PartFeatures(det_raw, det_vis, sq_norms=np.ones((parts, n_dets), np.float32),
                        scale=(1.0 / norms).astype(np.float32))
    pair_dots = np.einsum("ptd,pnd->ptn", tracks.feats, det_raw)
    masked_ema_update(tracks, rows, dets, det_rows, alpha, 0.5, pair_dots)

    for p in range(parts):
        for (feat, vis), r in zip(expected[p], rows):
            np.testing.assert_allclose(tracks.feats[p, r], feat, atol=2e-4, err_msg=f"part {p}, track {r}")
            assert tracks.vis[p, r] == vis
            assert tracks.sq_norms[p, r] == pytest.approx(np.sum(tracks.feats[p, r].astype(np.float64) ** 2), abs=1e-5)
    np.testing.assert_allclose(np.linalg.norm(tracks.feats[:, rows], axis=-1), 1.0, atol=1e-5)  # all kept unit
    np.testing.assert_array_equal(tracks.feats[:, 1], track_feats[:, 1])  # track 1 took in nothing
    # The other parts and pairs are well conditioned: there the values are tight.
    np.testing.assert_allclose(tracks.feats[0, rows], [f for f, _ in expected[0]], atol=1e-6)


def test_tracker_keeps_a_part_that_turned_around_a_unit_vector():
    """Inside the tracker: alpha 0.5 and a second detection whose part 1 points almost opposite; the
    other parts match, so the pair is matched and part 1's blend nearly cancels."""
    tracker = KPRTracker(match_thresh=0.5, ema_alpha=0.5)
    first = unit([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    second = np.array([[1, 0, 0, 0], [0.002, -1, 0, 0], [0, 0, 1, 0]], np.float32) * 3.0  # raw, not unit
    assert tracker.update(detection(first, [True, True, True])).track_ids.tolist() == [1]
    assert tracker.update(detection(second, [True, True, True])).track_ids.tolist() == [1]
    feats, vis = stored_features(tracker, 1)
    for p in range(3):
        expected, _ = reference_ema(first[p], 1.0, second[p], 1.0, 0.5)
        np.testing.assert_allclose(feats[p], expected, atol=2e-4)
    assert abs(feats[1, 0]) > 0.9  # what is left of the blend: the small sideways component, normalised
    row = int(np.flatnonzero(tracker.tracks.column("ids") == 1)[0])
    np.testing.assert_allclose(tracker.tracks.column("sq_norms")[:, row], 1.0, atol=1e-5)
