import numpy as np

from kprtrack.detector.groundtruth import GroundTruthDetector
from kprtrack.pose.groundtruth import GroundTruthPose
from kprtrack.record import Detections, Frame


def make_frame(index=0, n=4, sequence="s"):
    boxes = np.array([[10 + 60 * i, 20, 50 + 60 * i, 120] for i in range(n)], np.float32)
    kps = np.zeros((n, 17, 3), np.float32)
    for i in range(n):
        kps[i, :, 0] = np.linspace(boxes[i, 0] + 2, boxes[i, 2] - 2, 17)
        kps[i, :, 1] = np.linspace(boxes[i, 1] + 2, boxes[i, 3] - 2, 17)
        kps[i, :, 2] = 1
    kps[:, 3:5] = 0  # ears unlabeled, as in PoseTrack
    gt = Detections(boxes, np.ones(n), keypoints=kps, track_ids=np.arange(n), person_ids=np.arange(n) + 100)
    return Frame(sequence=sequence, index=index, image=np.zeros((200, 300, 3), np.uint8), gt=gt)


def test_clean_oracle_returns_gt():
    frame = make_frame()
    dets = GroundTruthDetector().detect([frame])[0]
    np.testing.assert_array_equal(dets.boxes, frame.gt.boxes)
    assert np.all(dets.scores == 1)
    posed = GroundTruthPose().estimate(frame, dets)
    np.testing.assert_array_equal(posed.keypoints, frame.gt.keypoints)


def test_noise_is_seeded_per_frame_not_per_call_order():
    det = GroundTruthDetector(box_noise=0.05, score_jitter=0.3, drop_rate=0.3, seed=3)
    a = det.detect([make_frame(0), make_frame(1)])
    b = GroundTruthDetector(box_noise=0.05, score_jitter=0.3, drop_rate=0.3, seed=3).detect([make_frame(1)])
    np.testing.assert_array_equal(a[1].boxes, b[0].boxes)
    np.testing.assert_array_equal(a[1].scores, b[0].scores)
    other_seed = GroundTruthDetector(box_noise=0.05, score_jitter=0.3, drop_rate=0.3, seed=4).detect([make_frame(1)])
    assert len(other_seed[0]) != len(b[0]) or not np.array_equal(other_seed[0].boxes, b[0].boxes)


def test_drops_jitter_and_bounds():
    det = GroundTruthDetector(box_noise=0.02, score_jitter=0.4, drop_rate=0.25, min_score=0.05)
    frames = [make_frame(i, n=4) for i in range(100)]
    out = det.detect(frames)
    kept = sum(len(d) for d in out) / (100 * 4)
    assert 0.6 < kept < 0.9
    scores = np.concatenate([d.scores for d in out])
    assert scores.min() >= 0.05 and scores.max() <= 1 and (scores < 0.6).any()
    boxes = np.concatenate([d.boxes for d in out])
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= 300
    assert np.all(boxes[:, 2] > boxes[:, 0])


def test_people_outside_the_frame_are_not_detected():
    frame = make_frame(n=7)  # the last two boxes start beyond the 300 px wide image
    dets = GroundTruthDetector().detect([frame])[0]
    assert len(dets) == 5 and dets.boxes[:, 2].max() <= 300


def test_oracle_pose_follows_noisy_dropped_boxes():
    frame = make_frame(n=4)
    dets = Detections(frame.gt.boxes[[2, 0]] + 3, np.ones(2))
    extra = Detections(np.array([[250, 150, 290, 195]], np.float32), np.ones(1))  # matches nobody
    both = Detections(np.concatenate([dets.boxes, extra.boxes]), np.ones(3))
    posed = GroundTruthPose().estimate(frame, both)
    np.testing.assert_array_equal(posed.keypoints[0], frame.gt.keypoints[2])
    np.testing.assert_array_equal(posed.keypoints[1], frame.gt.keypoints[0])
    assert np.all(posed.keypoints[2] == 0)


def test_oracle_pose_noise_keeps_unlabeled_joints_zero():
    frame = make_frame()
    posed = GroundTruthPose(keypoint_noise=0.05, score_jitter=0.2).estimate(frame, frame.gt)
    assert np.all(posed.keypoints[:, 3:5] == 0)
    assert not np.allclose(posed.keypoints[:, 0, :2], frame.gt.keypoints[:, 0, :2])
    assert np.all((posed.keypoints[:, 5:, 2] > 0) & (posed.keypoints[:, 5:, 2] <= 1))


def test_oracle_needs_ground_truth():
    import pytest

    from kprtrack.errors import InputError

    frame = Frame(sequence="clip", index=0, image=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError, match="detector=groundtruth needs"):
        GroundTruthDetector().detect([frame])
    with pytest.raises(InputError, match="pose=groundtruth needs"):
        GroundTruthPose().estimate(frame, Detections.empty())
