"""Keypoint prompts: heatmaps, grouping, negatives, fallbacks."""
import numpy as np
import pytest

from kprtrack.reid.prompts import (PROMPT_GROUPS, build_prompt, empty_prompt, frame_prompts, gaussian_kernel,
                                   keypoint_heatmaps, to_crop_coordinates)

SIZE = (256, 128)


def _person(x0, y0, h=200, w=80, conf=0.9):
    """A crude upright skeleton in frame pixels: head at the top, ankles at the bottom."""
    rel = np.array([[.5, .05], [.5, .12], [.5, .0], [.45, .05], [.55, .05], [.3, .2], [.7, .2], [.2, .35], [.8, .35],
                    [.15, .5], [.85, .5], [.35, .55], [.65, .55], [.35, .75], [.65, .75], [.35, .95], [.65, .95]])
    k = np.zeros((17, 3), np.float32)
    k[:, 0] = x0 + rel[:, 0] * w
    k[:, 1] = y0 + rel[:, 1] * h
    k[:, 2] = conf
    return k


def test_gaussian_kernel_radius_and_peak():
    k = gaussian_kernel(128)
    assert k.shape == (23, 23)  # radius int(128 / 11) = 11
    assert k[11, 11] == pytest.approx(1.0) and k.max() == k[11, 11]
    assert k[0, 11] == pytest.approx(np.exp(-0.5 * (11 / (23 / 4)) ** 2), rel=1e-5)


def test_heatmaps_skip_low_confidence_and_outside():
    k = np.array([[10, 20, 0.9], [10, 20, 0.3], [500, 20, 0.9], [-1, 5, 0.9]] + [[0, 0, 0]] * 13, np.float32)
    heat = keypoint_heatmaps(k, SIZE)
    assert heat[0, 20, 10] == pytest.approx(1.0)
    assert heat[1:].max() == 0.0  # conf 0.3 is not > 0.3; outside points ignored


def test_prompt_channel_order_and_background():
    k = _person(20, 20, h=220, w=90)
    p = build_prompt(k, None, SIZE, "cck8", negative=True)
    assert p.shape == (1 + 1 + 8, *SIZE)
    assert p[1].max() == 0.0  # no negatives
    head = list(PROMPT_GROUPS["cck8"]).index("head") + 2
    nose_x, nose_y = int(k[0, 0]), int(k[0, 1])
    assert p[head, nose_y, nose_x] == pytest.approx(1.0)
    np.testing.assert_allclose(p[0], np.clip(1 - p[1:].sum(0), 0, 1), atol=1e-6)
    assert p[0, 255, 0] == 1.0  # far corner is background


def test_two_overlapping_people_see_each_other_as_negative():
    a, b = _person(100, 50), _person(130, 60)  # heavily overlapping boxes
    boxes = np.array([[90, 40, 190, 260], [120, 50, 220, 270]], np.float32)
    prompts = frame_prompts(np.stack([a, b]), boxes, SIZE, "cck8")
    assert prompts.shape == (2, 10, *SIZE)
    for me, other in ((0, 1), (1, 0)):
        other_in_my_crop = to_crop_coordinates(np.stack([a, b])[other], boxes[me], SIZE)
        mine_in_my_crop = to_crop_coordinates(np.stack([a, b])[me], boxes[me], SIZE)
        inside = other_in_my_crop[other_in_my_crop[:, 2] > 0.3]
        assert len(inside) >= 5
        for x, y, _ in inside:  # every joint of the other person lights the negative channel
            assert prompts[me, 1, int(y), int(x)] == pytest.approx(1.0)
        x, y = mine_in_my_crop[0, :2].astype(int)  # own nose: positive head channel, not a negative peak
        assert prompts[me, 2, y, x] == pytest.approx(1.0)


def test_negatives_outside_the_crop_are_ignored():
    a, far = _person(100, 50), _person(600, 50)
    prompts = frame_prompts(np.stack([a, far]), np.array([[90, 40, 190, 260], [590, 40, 690, 260]]), SIZE)
    assert prompts[0, 1].max() == 0.0 and prompts[1, 1].max() == 0.0


def test_no_own_keypoint_keeps_the_negative_channel():
    """Upstream builds the negative mask whatever the target's keypoints: heavy occlusion is KPR's case."""
    k = _person(100, 50, conf=0.2)
    other = _person(110, 60)
    boxes = np.array([[90, 40, 190, 260], [100, 50, 200, 270]], np.float32)
    p = frame_prompts(np.stack([k, other]), boxes, SIZE)
    assert p[0, 2:].max() == 0.0  # no own joint above the threshold: every positive channel empty
    inside = to_crop_coordinates(other, boxes[0], SIZE)
    for x, y, _ in inside[inside[:, 2] > 0.3]:
        assert p[0, 1, int(y), int(x)] == pytest.approx(1.0)  # the other person is the negative prompt
    np.testing.assert_allclose(p[0, 0], np.clip(1 - p[0, 1], 0, 1), atol=1e-6)  # background = 1 - negative
    assert p[1, 1].max() == 0.0  # low-confidence joints are no negatives either


def test_nobody_confident_is_the_empty_prompt():
    p = frame_prompts(np.stack([_person(100, 50, conf=0.2), _person(110, 60, conf=0.1)]),
                      np.array([[90, 40, 190, 260], [100, 50, 200, 270]]), SIZE)
    for prompt in p:
        np.testing.assert_array_equal(prompt, empty_prompt(SIZE, "cck8"))
    np.testing.assert_array_equal(build_prompt(None, None, SIZE, "cck6", negative=False),
                                  empty_prompt(SIZE, "cck6", negative=False))


def test_cck6_and_no_negative_channel_count():
    p = build_prompt(_person(10, 10), None, SIZE, "cck6", negative=False)
    assert p.shape == (1 + 6, *SIZE)
    with pytest.raises(ValueError, match="unknown prompt grouping"):
        build_prompt(_person(10, 10), None, SIZE, "cck99")
