"""``run source=<file|folder|glob>``: the data set type is picked from what the path holds."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from kprtrack.config import compose
from kprtrack.data.auto import ImageFiles, VideoFiles, dataset_for, source_overrides
from kprtrack.errors import InputError


def _video(path, frames=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path


def _frames(folder, count=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), np.full((48, 64, 3), 30 * i, np.uint8))
    return folder


@pytest.fixture
def media(tmp_path):
    _video(tmp_path / "clips" / "a.mp4")
    _video(tmp_path / "clips" / "b.avi")
    _frames(tmp_path / "frames")
    _frames(tmp_path / "shots" / "s1")
    _frames(tmp_path / "shots" / "s2", 2)
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("source, kind", [
    ("clips/a.mp4", "video"), ("clips", "video"), ("clips/*.mp4", "video"), ("clips/*", "video"),
    ("frames", "images"), ("frames/0001.jpg", "images"), ("frames/*.jpg", "images"),
    ("shots", "images"), ("shots/*", "images"), ("shots/*/*.jpg", "images"),
])
def test_the_kind_follows_from_the_path(media, source, kind):
    assert dataset_for(str(media / source)) == kind


@pytest.mark.parametrize("source, message", [
    ("missing.mp4", "source not found"), ("empty", "holds no videos"), ("nothing/*.mp4", "no file or folder matches"),
    ("*", "different kinds"),
])
def test_what_it_cannot_read_is_one_message(media, source, message):
    with pytest.raises(InputError, match=message):
        dataset_for(str(media / source))


def test_source_becomes_the_dataset_overrides(media):
    clip = media / "clips" / "a.mp4"
    assert source_overrides(["preset=fast", f"source={clip}"]) == ["dataset=video", "preset=fast", f"dataset.path={clip}"]
    assert source_overrides(["dataset=images", f"source={media / 'frames'}"]) == [
        "dataset=images", f"dataset.path={media / 'frames'}"]
    assert source_overrides(["dataset=video", "x=1"]) == ["dataset=video", "x=1"]  # the old form is untouched
    spaced = media / "my clips" / "c d.mp4"
    _video(spaced)
    cfg = compose("run", source_overrides([f"source={spaced}"]))
    assert cfg.dataset.name == "video" and cfg.dataset.path == str(spaced)
    cfg = compose("run", source_overrides([f"source={media / 'shots' / '*'}"]))
    assert cfg.dataset.name == "images" and cfg.dataset.path == str(media / "shots" / "*")


@pytest.mark.parametrize("argv, message", [
    (["source=a", "source=b"], "give one source="), (["source="], "needs a value"),
    (["source=x.mp4", "dataset.path=y"], "both given"), (["dataset=posetrack21", "source=x"], "dataset=posetrack21"),
])
def test_conflicting_arguments(argv, message):
    with pytest.raises(InputError, match=message):
        source_overrides(argv)


def test_globs_and_single_images_as_data_sets(media):
    videos = VideoFiles(str(media / "clips" / "*"))
    assert [s.name for s in videos.sequences()] == ["a", "b"]
    assert len(VideoFiles(str(media / "clips")).files) == 2  # the folder form as before
    shots = ImageFiles(str(media / "shots" / "*" / "*.jpg"))
    assert [(s.name, len(s)) for s in shots.sequences()] == [("s1", 3), ("s2", 2)]
    assert [(s.name, len(s)) for s in ImageFiles(str(media / "shots" / "*")).sequences()] == [("s1", 3), ("s2", 2)]
    [single] = ImageFiles(str(media / "frames" / "0002.jpg")).sequences()
    assert len(single) == 1 and next(single.frames()).image.shape == (48, 64, 3)
    with pytest.raises(InputError, match="no video files"):
        VideoFiles(str(media / "frames" / "*.jpg"))
