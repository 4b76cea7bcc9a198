import cv2
import numpy as np

from kprtrack.record import Detections, Frame
from kprtrack.reid.part_colors import PartColorsReID
from kprtrack.tracker.part_distance import part_distance


def stick_person(image, x, shirt, trousers, head=(80, 120, 200)):
    """Draw a simple figure with its 17 PoseTrack keypoints; returns (box, keypoints)."""
    k = np.zeros((17, 3), np.float32)
    pts = {0: (x, 40), 1: (x, 52), 2: (x, 22), 5: (x - 15, 60), 6: (x + 15, 60), 7: (x - 22, 90),
           8: (x + 22, 90), 9: (x - 25, 118), 10: (x + 25, 118), 11: (x - 10, 125), 12: (x + 10, 125),
           13: (x - 12, 165), 14: (x + 12, 165), 15: (x - 12, 200), 16: (x + 12, 200)}
    for j, (px, py) in pts.items():
        k[j] = (px, py, 1.0)
    cv2.circle(image, (x, 36), 14, head, -1)
    cv2.rectangle(image, (x - 17, 56), (x + 17, 128), shirt, -1)
    for a, b in [(5, 7), (7, 9), (6, 8), (8, 10)]:
        cv2.line(image, pts[a], pts[b], shirt, 9)
    for a, b in [(11, 13), (13, 15), (12, 14), (14, 16)]:
        cv2.line(image, pts[a], pts[b], trousers, 11)
    return np.array([x - 32, 18, x + 32, 208], np.float32), k


def frame_with(people, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 140, (230, 400, 3)).astype(np.uint8)
    boxes, kps = zip(*[stick_person(image, *p) for p in people])
    return Frame("s", 0, image), Detections(np.stack(boxes), np.ones(len(boxes)), keypoints=np.stack(kps))


def test_contract_shapes_and_visibility():
    reid = PartColorsReID()
    frame, dets = frame_with([(80, (0, 0, 200), (200, 0, 0)), (250, (0, 200, 0), (30, 30, 30))])
    out = reid.embed(frame, dets)
    assert out.embeddings.shape == (2, 1 + reid.num_parts, reid.dim)
    assert out.visibility.shape == (2, 1 + reid.num_parts)
    assert np.all(out.visibility == 1)
    assert out.embeddings.dtype == np.float32 and np.isfinite(out.embeddings).all()


def test_same_clothes_closer_than_different_clothes():
    reid = PartColorsReID()
    red_blue, green_black = ((0, 0, 200), (200, 0, 0)), ((0, 200, 0), (30, 30, 30))
    f1, d1 = frame_with([(80, *red_blue), (250, *green_black)], seed=1)
    f2, d2 = frame_with([(120, *green_black), (300, *red_blue)], seed=2)  # moved, order swapped
    e1, e2 = reid.embed(f1, d1), reid.embed(f2, d2)
    dist = part_distance(e1.embeddings, e1.visibility, e2.embeddings, e2.visibility)
    assert dist[0, 1] < dist[0, 0] and dist[1, 0] < dist[1, 1]
    assert dist[0, 1] < 0.2 and dist[0, 0] > 0.3


def test_low_confidence_and_outside_keypoints_make_parts_invisible():
    reid = PartColorsReID()
    frame, dets = frame_with([(80, (0, 0, 200), (200, 0, 0))])
    kps = dets.keypoints.copy()
    kps[0, [11, 12, 13, 14, 15, 16], 2] = 0.1        # legs and feet not confident
    kps[0, [5, 7, 9], :2] = [[395, 5], [399, 2], [390, 1]]  # left arm outside the box
    out = reid.embed(frame, dets.with_(keypoints=kps))
    names = ["foreground", *reid.parts]
    visible = {n for n, v in zip(names, out.visibility[0]) if v}
    # the torso needs two of its joints: the left shoulder is outside and the hips are not confident
    assert visible == {"foreground", "head", "right_arm"}
    assert np.all(out.embeddings[0, out.visibility[0] == 0] == 0)


def test_no_keypoints_nan_and_degenerate_boxes_do_not_crash():
    reid = PartColorsReID()
    frame, dets = frame_with([(80, (0, 0, 200), (200, 0, 0)), (250, (0, 200, 0), (30, 30, 30))])
    boxes = dets.boxes.copy()
    boxes[1] = [np.nan, 0, 10, 10]
    out = reid.embed(frame, Detections(boxes, dets.scores))  # no keypoints at all
    assert out.visibility[0, 0] == 1 and out.visibility[0, 1:].sum() == 0
    assert out.visibility[1].sum() == 0
    tiny = reid.embed(frame, Detections(np.array([[5, 5, 6, 6]], np.float32), np.ones(1)))
    assert tiny.visibility.sum() == 0
    empty = reid.embed(frame, Detections.empty())
    assert empty.embeddings.shape == (0, 9, reid.dim)
