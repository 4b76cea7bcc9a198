"""YOLOX pre/post-processing and NMS, on synthetic inputs with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from kprtrack.detector.yolox_processing import (
    PostprocessConfig, check_input_size, decode, letterbox, num_anchors, postprocess, preprocess)
from kprtrack.errors import InputError
from kprtrack.nms import box_iou, nms


def brute_force_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(box_iou(boxes[i], boxes[k])[0, 0] <= thr for k in keep):
            keep.append(i)
    return keep


@pytest.mark.slow
def test_nms_matches_brute_force_on_random_boxes():
    rng = np.random.default_rng(3)
    for _ in range(20):
        xy = rng.uniform(0, 100, (40, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (40, 2))], 1)
        scores = rng.uniform(0, 1, 40)
        for thr in (0.3, 0.5, 0.7):
            assert nms(boxes, scores, thr).tolist() == brute_force_nms(boxes, scores, thr)


def test_nms_edge_cases():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    same = np.array([[0, 0, 10, 10]] * 3, float)
    assert nms(same, np.array([0.2, 0.9, 0.5]), 0.5).tolist() == [1]
    assert box_iou(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == 0


def test_letterbox_keeps_aspect_and_pads_114():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, ratio = letterbox(image, (416, 416))
    assert ratio == pytest.approx(416 / 200)
    assert canvas.shape == (416, 416, 3)
    assert (canvas[:208] == 7).all() and (canvas[208:] == 114).all()


def test_preprocess_layouts():
    image = np.zeros((64, 64, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    batch, ratios = preprocess([image, image], (64, 64), "yolox")
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == np.float32
    assert batch[0, 0].max() == 255 and batch[0, 2].max() == 0  # BGR kept, 0-255, no mean/std
    assert ratios.tolist() == [1.0, 1.0]
    normed, _ = preprocess([image], (64, 64), "bytetrack")
    # RGB order: blue is the last channel; ImageNet mean/std applied
    assert normed[0, 2, 0, 0] == pytest.approx((1 - 0.406) / 0.225, rel=1e-5)
    assert normed[0, 0, 0, 0] == pytest.approx((0 - 0.485) / 0.229, rel=1e-5)
    with pytest.raises(InputError, match="preprocess"):
        preprocess([image], (64, 64), "rgb")


def test_input_size_must_be_multiple_of_32():
    assert check_input_size([608, 1088]) == (608, 1088)
    assert check_input_size(416) == (416, 416)
    with pytest.raises(InputError, match="multiples of 32"):
        check_input_size([400, 416])
    assert num_anchors((416, 416)) == 3549  # the official nano export's row count
    assert num_anchors((640, 640)) == 8400


def _raw_with_one_box(input_hw, level_index, cell_xy, obj, cls_probs, log_wh=(0.0, 0.0)):
    """Raw rows where exactly one anchor carries a box; everything else scores 0."""
    raw = np.zeros((1, num_anchors(input_hw), 5 + len(cls_probs)), np.float32)
    offset, strides = 0, (8, 16, 32)
    for level in range(level_index):
        offset += (input_hw[0] // strides[level]) * (input_hw[1] // strides[level])
    width = input_hw[1] // strides[level_index]
    row = offset + cell_xy[1] * width + cell_xy[0]
    raw[0, row, :4] = [0.5, 0.25, *log_wh]
    raw[0, row, 4] = obj
    raw[0, row, 5:] = cls_probs
    return raw, row


def test_decode_grid_and_stride():
    raw, row = _raw_with_one_box((64, 96), 1, (2, 1), 0.9, [0.8], log_wh=(np.log(2.0), 0.0))
    out = decode(raw, (64, 96))
    # level 1 = stride 16: cx = (2 + 0.5) * 16, cy = (1 + 0.25) * 16, w = 2 * 16, h = 16
    assert out[0, row, :4] == pytest.approx([40.0, 20.0, 32.0, 16.0])
    assert out[0, row, 4:].tolist() == pytest.approx([0.9, 0.8])


def test_postprocess_maps_back_clips_and_keeps_low_scores():
    input_hw = (64, 64)
    raw, row = _raw_with_one_box(input_hw, 2, (1, 1), 0.5, [0.3, 0.2], log_wh=(np.log(3.0), np.log(1.0)))
    decoded = decode(raw, input_hw)[0]
    # frame 128 x 96 (h x w) letterboxed into 64x64: ratio 0.5
    cfg = PostprocessConfig(person_class=0, score_thresh=0.1)
    dets = postprocess(decoded, 0.5, (128, 96), cfg)
    # cx=(1.5)*32=48, cy=(1.25)*32=40, w=96, h=32 in input px -> /0.5 -> x 0..192 clipped to 96
    assert len(dets) == 1
    assert dets.boxes[0].tolist() == pytest.approx([0.0, 48.0, 96.0, 112.0])
    assert dets.scores[0] == pytest.approx(0.15)  # obj x person-class prob, kept at 0.1
    assert dets.keypoints is None
    assert len(postprocess(decoded, 0.5, (128, 96), PostprocessConfig(score_thresh=0.2))) == 0
    # person_class picks the class column (e.g. a fine-tune with person at index 1); as in YOLOX's
    # postprocess a box counts for its best class only: class 1 (0.2 < 0.3) gets no box here ...
    assert len(postprocess(decoded, 0.5, (128, 96), PostprocessConfig(person_class=1, score_thresh=0.05))) == 0
    decoded[row, 5:7] = [0.3, 0.9]  # ... and once class 1 wins, class 0 (person) gives none
    assert postprocess(decoded, 0.5, (128, 96), PostprocessConfig(person_class=1)).scores[0] == pytest.approx(0.45)
    assert len(postprocess(decoded, 0.5, (128, 96), cfg)) == 0


def test_postprocess_suppresses_duplicates_and_caps_candidates():
    input_hw = (64, 64)
    rows = num_anchors(input_hw)
    raw = np.zeros((rows, 6), np.float32)
    raw[:, 4] = np.linspace(0.2, 0.9, rows)  # every anchor is a candidate
    raw[:, 5] = 1.0
    decoded = decode(raw[None], input_hw)[0]
    decoded[:, :4] = [32, 32, 20, 20]  # all the same box
    dets = postprocess(decoded, 1.0, (64, 64), PostprocessConfig(max_candidates=10))
    assert len(dets) == 1 and dets.scores[0] == pytest.approx(0.9)


def test_bytetrack_preprocess_pads_with_114_before_normalising():
    """ByteTrack's preproc pads the BGR canvas with 114, then RGB, /255, ImageNet mean/std on everything."""
    image = np.full((32, 64, 3), 200, np.uint8)
    batch, ratios = preprocess([image], (64, 64), "bytetrack")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(batch[0, :, 63, 0], (114 / 255 - mean) / std, rtol=1e-5)  # padding row
    np.testing.assert_allclose(batch[0, :, 0, 0], (200 / 255 - mean) / std, rtol=1e-5)
    assert ratios[0] == 1.0
