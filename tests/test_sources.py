import cv2
import numpy as np
import pytest

from kprtrack.data.video import ImageFolderDataset, VideoDataset
from kprtrack.errors import InputError


def write_video(path, n, size=(64, 48), fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), (i * 20) % 255, np.uint8))
    writer.release()
    return path


def test_video_streams_every_frame_once(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 12)
    [source] = list(VideoDataset(str(path)).sequences())
    assert source.name == "clip" and source.fps == pytest.approx(10)
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (48, 64, 3) and frames[0].width == 64
    assert frames[0].gt is None and frames[3].file_name == "clip/000003.jpg"


def test_one_frame_video_and_folder_of_videos(tmp_path):
    write_video(tmp_path / "a.mp4", 1)
    write_video(tmp_path / "b.mp4", 3)
    (tmp_path / "notes.txt").write_text("not a video")
    sources = list(VideoDataset(str(tmp_path)).sequences())
    assert [s.name for s in sources] == ["a", "b"]
    assert [len(list(s.frames())) for s in sources] == [1, 3]


def test_bad_videos_name_the_file(tmp_path):
    with pytest.raises(InputError, match="video not found"):
        VideoDataset(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="no video files"):
        VideoDataset(str(tmp_path))
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00not really a video" * 100)
    with pytest.raises(InputError, match="cannot read video") as info:
        list(VideoDataset(str(garbage)).sequences())
    assert "broken.mp4" in str(info.value)
    with pytest.raises(InputError, match="dataset.path"):
        VideoDataset("")


def test_image_folders(tmp_path):
    for seq in ("s1", "s2"):
        (tmp_path / seq).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / seq / f"{i:04d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    ds = ImageFolderDataset(str(tmp_path))
    assert [s.name for s in ds.sequences()] == ["s1", "s2"]
    single = ImageFolderDataset(str(tmp_path / "s1"))
    [source] = list(single.sequences())
    assert [f.file_name for f in source.frames()] == ["s1/0000.jpg", "s1/0001.jpg", "s1/0002.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        ImageFolderDataset(str(tmp_path / "empty"))
    (tmp_path / "s1" / "0003.jpg").write_bytes(b"broken")
    with pytest.raises(InputError, match="cannot read image"):
        list(next(ImageFolderDataset(str(tmp_path / "s1")).sequences()).frames())
