"""Shared top-down geometry, heatmap decoding and keypoint layouts (no model weights needed)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from kprtrack.errors import InputError
from kprtrack.pose import layouts
from kprtrack.pose.heatmaps import decode_heatmaps, flip_back
from kprtrack.pose.topdown import (
    TopDownEstimator, box_to_center_scale, crop_batch, to_frame, to_input, usable_boxes, warp_matrices)
from kprtrack.record import Detections, Frame

SIZE = (256, 192)


def test_center_scale_pads_and_keeps_model_aspect():
    boxes = np.array([[10, 20, 110, 220], [0, 0, 300, 100]], np.float32)  # tall, wide
    centers, scales = box_to_center_scale(boxes, SIZE, padding=1.25)
    np.testing.assert_allclose(centers, [[60, 120], [150, 50]])
    np.testing.assert_allclose(scales[:, 0] / scales[:, 1], 0.75)
    np.testing.assert_allclose(scales[0, 1], 250)  # height drives the tall box
    np.testing.assert_allclose(scales[1, 0], 375)  # width drives the wide box


def test_affine_round_trip_of_points_and_pixels():
    rng = np.random.default_rng(0)
    image = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[50, 40, 150, 260], [200, 100, 390, 180], [-30, -20, 60, 90]], np.float32)
    centers, scales = box_to_center_scale(boxes, SIZE)
    points = rng.uniform([0, 0], [400, 300], size=(3, 5, 2))
    back = to_frame(to_input(points, centers, scales, SIZE), centers, scales, SIZE)
    np.testing.assert_allclose(back, points, atol=1e-9)
    # the matrices used for the pixel warp agree with to_input
    mats = warp_matrices(centers, scales, SIZE)
    mapped = np.einsum("nij,nkj->nki", mats[:, :, :2], points) + mats[:, None, :, 2]
    np.testing.assert_allclose(mapped, to_input(points, centers, scales, SIZE), atol=1e-9)
    # a real pixel: warp a bright dot, find it in the crop, map it back (< 0.5 px)
    dot = np.array([97.0, 151.0])
    image[int(dot[1]) - 1:int(dot[1]) + 2, int(dot[0]) - 1:int(dot[0]) + 2] = 255
    crops = crop_batch(image, centers[:1], scales[:1], SIZE)
    weights = crops[0, :, :, 0].astype(np.float64)
    ys, xs = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    found = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    back_dot = to_frame(found[None, None], centers[:1], scales[:1], SIZE)[0, 0]
    assert np.abs(back_dot - dot).max() < 0.5


def test_crop_is_rgb_and_black_outside_the_frame():
    image = np.zeros((100, 100, 3), np.uint8)
    image[..., 2] = 200  # red in BGR
    centers, scales = box_to_center_scale(np.array([[-100, -100, 50, 50]], np.float32), SIZE)
    crop = crop_batch(image, centers, scales, SIZE)[0]
    assert crop[200, 150, 0] == 200 and crop[200, 150, 2] == 0  # inside: red first (RGB)
    assert crop[0, 0].sum() == 0  # outside the frame: zeros


def test_usable_boxes_rejects_nan_degenerate_and_outside():
    boxes = np.array([[10, 10, 50, 90], [np.nan, 0, 10, 10], [5, 5, 6, 50], [200, 10, 250, 90],
                      [-50, -50, -1, -1], [-10, -10, 5, 5], [0, 0, np.inf, 10]], np.float32)
    assert usable_boxes(boxes, 100, 100).tolist() == [True, False, False, False, False, True, False]


def _gaussian(h, w, cx, cy, sigma=2.0):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_heatmap_decode_argmax_and_dark():
    true = [(20.3, 30.7), (5.8, 10.2), (40.5, 45.4)]
    maps = np.stack([_gaussian(64, 48, x, y) for x, y in true])[None]
    coarse = decode_heatmaps(maps, "argmax")[0]
    fine = decode_heatmaps(maps, "dark")[0]
    for (x, y), c, f in zip(true, coarse, fine):
        assert abs(c[0] - x) <= 0.3 and abs(c[1] - y) <= 0.3  # within the quarter shift
        assert abs(f[0] - x) < 0.1 and abs(f[1] - y) < 0.1
        assert c[2] == pytest.approx(maps[0].max(axis=(1, 2)).min(), abs=0.1)
    with pytest.raises(InputError, match="decode"):
        decode_heatmaps(maps, "softargmax")


def test_flip_back_swaps_pairs_and_mirrors():
    rng = np.random.default_rng(1)
    maps = rng.random((2, 17, 8, 6)).astype(np.float32)
    index = layouts.flip_index("coco")
    mirrored = maps[:, :, :, ::-1]
    back = flip_back(mirrored, index, shift=False)
    np.testing.assert_array_equal(back[:, 0], maps[:, 0])
    np.testing.assert_array_equal(back[:, 1], maps[:, 2])  # left eye <- mirrored right eye
    np.testing.assert_array_equal(back[:, 15], maps[:, 16])
    np.testing.assert_array_equal(flip_back(flip_back(maps, index, False), index, False), maps)
    shifted = flip_back(mirrored, index, shift=True)
    np.testing.assert_array_equal(shifted[..., 1:], back[..., :-1])


def test_posetrack_flip_keeps_head_joints():
    index = layouts.flip_index("posetrack")
    assert index[1] == 1 and index[2] == 2 and index[5] == 6 and index[16] == 15


def test_coco_to_posetrack_head_is_between_shoulders_and_above_eyes():
    kpts = np.zeros((1, 17, 3), np.float32)
    kpts[0, :, 2] = 0.9
    kpts[0, 0, :2] = (50, 40)  # nose
    kpts[0, 1, :2], kpts[0, 2, :2] = (55, 35), (45, 35)  # eyes
    kpts[0, 5, :2], kpts[0, 6, :2] = (70, 80), (30, 80)  # shoulders
    kpts[0, 1, 2] = 0.4
    out = layouts.coco_to_posetrack(kpts)
    np.testing.assert_array_equal(out[:, [0] + list(range(3, 17))], kpts[:, [0] + list(range(3, 17))])
    neck, top = out[0, 1], out[0, 2]
    assert neck[0] == pytest.approx(50) and 40 < neck[1] < 80
    assert top[0] == pytest.approx(50) and top[1] < 35
    assert top[2] == pytest.approx(0.4)  # as weak as the weakest eye
    assert layouts.coco_to_posetrack(np.zeros((0, 17, 3))).shape == (0, 17, 3)


class _Oracle(TopDownEstimator):
    """A 'model' that knows where the points are: returns fixed input-pixel keypoints.

    Exercises the same crop/back-projection code as real backends.
    """

    input_size = SIZE
    layout = "posetrack"

    def __init__(self):
        self.calls = []

    def _infer(self, crops):
        self.calls.append(crops.shape)
        kpts = np.zeros((len(crops), 17, 3))
        kpts[:, :, 0] = np.linspace(0, SIZE[1], 17)
        kpts[:, :, 1] = np.linspace(0, SIZE[0], 17)
        kpts[:, :, 2] = 0.8
        return kpts


def test_estimate_batches_once_and_projects_into_the_box_region():
    est = _Oracle()
    frame = Frame("seq", 0, np.zeros((200, 300, 3), np.uint8))
    dets = Detections(np.array([[10, 10, 70, 170], [np.nan] * 4, [100, 50, 101, 51],
                                [120, 20, 200, 180]], np.float32), np.ones(4))
    out = est.estimate(frame, dets)
    assert est.calls == [(2, 256, 192, 3)]  # the two usable boxes in one batch
    kp = out.keypoints
    assert kp.dtype == np.float32 and kp.shape == (4, 17, 3)
    assert (kp[[1, 2]] == 0).all()  # NaN and 1-px boxes: no keypoints, zero confidence
    centers, scales = box_to_center_scale(dets.boxes[[0, 3]], SIZE)
    np.testing.assert_allclose(kp[[0, 3], 0, :2], centers - scales / 2, atol=1e-3)  # input (0,0)
    np.testing.assert_allclose(kp[[0, 3], -1, :2], centers + scales / 2, atol=1e-3)


def test_estimate_empty_and_bad_frames():
    est = _Oracle()
    frame = Frame("seq", 0, np.zeros((50, 50, 3), np.uint8))
    assert est.estimate(frame, Detections.empty()).keypoints.shape == (0, 17, 3)
    assert est.calls == []
    with pytest.raises(InputError, match="no decoded image"):
        est.estimate(Frame("seq", 3, None, file_name="a.jpg"), Detections.empty())
    with pytest.raises(InputError, match="uint8"):
        est.estimate(Frame("seq", 0, np.zeros((5, 5), np.float32)), Detections.empty())


def test_coco_estimator_warns_once(monkeypatch):
    monkeypatch.setattr(layouts, "_warned", set())

    class CocoOracle(_Oracle):
        layout = "coco"

    est = CocoOracle()
    frame = Frame("seq", 0, np.zeros((100, 100, 3), np.uint8))
    dets = Detections(np.array([[10, 10, 50, 90]], np.float32), np.ones(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.estimate(frame, dets)
        est.estimate(frame, dets)
    assert sum("head_bottom" in str(w.message) for w in caught) == 1


def _mmpose1_rules(maps, kernel=11):
    """mmpose 1.x's MSRAHeatmap decode rules written out one keypoint at a time (the reading the
    vectorised decoder must agree with): quarter shift of x for 1 < x < W-1 and y > 0, of y for
    1 < y < H-1 and x > 0;
    DARK on the zero-padded, max-rescaled blur, inside 1 < x < W-2 and 1 < y < H-2 only."""
    import cv2

    k, h, w = maps.shape
    quarter, dark = np.zeros((k, 2)), np.zeros((k, 2))
    border = kernel // 2
    for j, hm in enumerate(maps):
        y, x = np.unravel_index(hm.argmax(), hm.shape)
        dx = hm[y, x + 1] - hm[y, x - 1] if 1 < x < w - 1 and 0 < y < h else 0.0
        dy = hm[y + 1, x] - hm[y - 1, x] if 1 < y < h - 1 and 0 < x < w else 0.0
        quarter[j] = [x + 0.25 * np.sign(dx), y + 0.25 * np.sign(dy)]
        blurred = cv2.GaussianBlur(np.pad(hm, border), (kernel, kernel), 0)[border:-border, border:-border]
        log = np.log(np.maximum(blurred * (hm.max() / blurred.max()), 1e-10)).astype(np.float64)
        dark[j] = [x, y]
        if 1 < x < w - 2 and 1 < y < h - 2:
            grad = np.array([0.5 * (log[y, x + 1] - log[y, x - 1]), 0.5 * (log[y + 1, x] - log[y - 1, x])])
            dxx = 0.25 * (log[y, x + 2] - 2 * log[y, x] + log[y, x - 2])
            dyy = 0.25 * (log[y + 2, x] - 2 * log[y, x] + log[y - 2, x])
            dxy = 0.25 * (log[y + 1, x + 1] - log[y - 1, x + 1] - log[y + 1, x - 1] + log[y - 1, x - 1])
            hess = np.array([[dxx, dxy], [dxy, dyy]])
            if np.linalg.det(hess) != 0:
                dark[j] += -np.linalg.inv(hess) @ grad
    return quarter, dark


def test_decoders_follow_mmpose1_rules_at_edges_too():
    rng = np.random.default_rng(3)
    centres = [(0, 5), (1, 30), (2, 2), (46, 63), (47, 0), (45, 61), (24, 1), (10, 62), (20.4, 30.6)]
    maps = np.stack([_gaussian(64, 48, x, y, sigma=2) + 0.05 * rng.random((64, 48), np.float32)
                     for x, y in centres]).astype(np.float32)
    quarter, dark = _mmpose1_rules(maps)
    np.testing.assert_allclose(decode_heatmaps(maps[None], "argmax")[0, :, :2], quarter, atol=1e-9)
    np.testing.assert_allclose(decode_heatmaps(maps[None], "dark")[0, :, :2], dark, atol=1e-6)
    edge = np.zeros((1, 1, 64, 48), np.float32)
    edge[0, 0, 40, 1], edge[0, 0, 40, 2] = 1.0, 0.5  # maximum in column 1: x stays (mmpose 1.x)
    assert decode_heatmaps(edge, "argmax")[0, 0, 0] == 1.0
