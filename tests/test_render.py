import cv2
import numpy as np

from kprtrack.record import Detections, Frame
from kprtrack.render import VideoRenderWriter, track_color


def test_rendered_video_has_every_frame_and_coloured_boxes(tmp_path):
    writer = VideoRenderWriter(dir=str(tmp_path), trail_length=5)
    writer.begin_sequence("clip", {"fps": 12})
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, 5:7] = [[30, 30, 1], [50, 30, 1]]
    for i in range(20):
        dets = Detections(np.array([[20 + i, 20, 60 + i, 100]], np.float32), np.ones(1), keypoints=kps,
                          track_ids=np.array([4 if i < 10 else 9]))
        writer.write(Frame("clip", i, np.zeros((120, 160, 3), np.uint8)), dets)
    assert not (tmp_path / "render/clip.mp4").exists()  # only the partial file before the end
    [path] = writer.end_sequence()
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    assert capture.get(cv2.CAP_PROP_FPS) == 12
    ok, image = capture.read()
    assert ok and image[20:100, 20].mean() > 40  # the box edge is drawn
    # old ids' trails are forgotten: memory does not grow with the number of ids
    assert set(writer._trails) == {9}
    assert track_color(4) != track_color(9)


def test_disabled_render_writes_nothing(tmp_path):
    writer = VideoRenderWriter(dir=str(tmp_path), enabled=False)
    writer.begin_sequence("clip", {})
    writer.write(Frame("clip", 0, np.zeros((8, 8, 3), np.uint8)), Detections.empty())
    assert writer.end_sequence() == [] and not (tmp_path / "render").exists()
