import json

import numpy as np

from kprtrack.record import Detections, Frame
from kprtrack.writers import MotWriter, PoseTrackWriter


def dets(track_ids):
    n = len(track_ids)
    kps = np.tile(np.array([[10, 20, 0.9]], np.float32), (n, 17, 1))
    return Detections(np.array([[10, 20, 40, 100]] * n, np.float32), np.full(n, 0.8),
                      keypoints=kps, track_ids=np.array(track_ids))


def test_posetrack_writer_keeps_gt_image_ids(tmp_path):
    images = [{"id": 100, "file_name": "images/val/s/000000.jpg", "is_labeled": True},
              {"id": 101, "file_name": "images/val/s/000001.jpg", "is_labeled": False}]
    writer = PoseTrackWriter(dir=str(tmp_path))
    writer.begin_sequence("s", {"images": images, "categories": []})
    writer.write(Frame("s", 0, None, image_id=100), dets([3, -1]))
    writer.write(Frame("s", 1, None, image_id=101), dets([3]))
    assert not (tmp_path / "posetrack21/sequences/s.json").exists()  # nothing before the sequence ends
    [path] = writer.end_sequence()
    data = json.loads(path.read_text())
    assert [im["id"] for im in data["images"]] == [100, 101]
    anns = data["annotations"]
    assert [(a["image_id"], a["track_id"]) for a in anns] == [(100, 3), (101, 3)]  # -1 not written
    assert anns[0]["bbox"] == [10, 20, 30, 80] and len(anns[0]["keypoints"]) == 51
    assert len(anns[0]["scores"]) == 17 and abs(anns[0]["scores"][0] - 0.9) < 1e-6
    assert data["categories"][0]["keypoints"][1] == "head_bottom"  # empty GT categories -> ours


def test_posetrack_writer_builds_images_for_videos(tmp_path):
    writer = PoseTrackWriter(dir=str(tmp_path))
    writer.begin_sequence("clip", {"fps": 30})
    for i in range(3):
        writer.write(Frame("clip", i, np.zeros((4, 6, 3), np.uint8), file_name=f"clip/{i:06d}.jpg"), dets([1]))
    data = json.loads(writer.end_sequence()[0].read_text())
    assert [im["id"] for im in data["images"]] == [0, 1, 2]
    assert data["images"][0]["width"] == 6 and data["images"][0]["height"] == 4


def test_mot_writer_format(tmp_path):
    writer = MotWriter(dir=str(tmp_path))
    writer.begin_sequence("s", {})
    writer.write(Frame("s", 0, None), dets([7, -1]))
    writer.write(Frame("s", 4, None), Detections.empty())
    [path] = writer.end_sequence()
    rows = path.read_text().splitlines()
    assert rows == ["1,7,10.00,20.00,30.00,80.00,0.8000,-1,-1,-1"]
    assert list(tmp_path.glob("mot/.*")) == []  # no temp files left
