"""``dataset=video`` (one file or a folder of videos) and ``dataset=images`` (a folder of frames).

Frames are decoded once, streaming, and shared by every stage. No ground truth.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from kprtrack.data.content_hash import file_digest, files_digests, named_digest
from kprtrack.errors import InputError
from kprtrack.record import Frame

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class VideoSource:
    has_ground_truth = False

    def __init__(self, path: Path):
        import cv2

        self.path = path
        self.name = path.stem
        capture = cv2.VideoCapture(str(path))
        ok, _ = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            capture.release()
            raise InputError("cannot read video (missing, corrupt or an unsupported codec)", path)
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        self.expected_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        capture.release()

    def __len__(self) -> int:
        return self.expected_frames

    @property
    def meta(self) -> dict:
        return {"fps": self.fps, "source": str(self.path)}

    def fingerprint(self) -> str:
        """The video's bytes (see kprtrack.data.content_hash): any other content is another input."""
        try:
            return "video:" + file_digest(self.path)
        except OSError as err:
            raise InputError(f"cannot read video ({err.strerror or err})", self.path) from None

    def frames(self, decode: bool = True) -> Iterator[Frame]:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        index = 0
        try:
            while True:
                # Without decode (all model outputs cached) frames are only counted, not decoded.
                ok, image = capture.read() if decode else (capture.grab(), None)
                if not ok or (decode and image is None):
                    break
                yield Frame(sequence=self.name, index=index, image=image,
                            file_name=f"{self.name}/{index:06d}.jpg")
                index += 1
        finally:
            capture.release()
        # The container's frame count is a hint, not a promise; only a large shortfall means damage.
        if self.expected_frames and index < self.expected_frames - max(2, self.expected_frames // 100):
            raise InputError(f"video stops decoding at frame {index} of {self.expected_frames}: "
                             f"truncated or corrupt (frames up to there were tracked)", self.path)


class ImageFolderSource:
    has_ground_truth = False

    def __init__(self, folder: Path, files: list[Path], fps: float):
        self.path = folder
        self.name = folder.name
        self.files = files
        self.fps = fps

    def __len__(self) -> int:
        return len(self.files)

    @property
    def meta(self) -> dict:
        return {"fps": self.fps, "source": str(self.path)}

    def fingerprint(self) -> str:
        """Every frame's name and bytes, in order."""
        try:
            digests = files_digests(self.files)
        except OSError as err:
            raise InputError(f"cannot read image ({err.strerror or err})", err.filename or self.path) from None
        return named_digest("images", (p.name for p in self.files), digests)

    def frames(self, decode: bool = True) -> Iterator[Frame]:
        from kprtrack.data.posetrack import read_image

        for index, path in enumerate(self.files):
            image: np.ndarray | None = read_image(path) if decode else None
            yield Frame(sequence=self.name, index=index, image=image,
                        file_name=f"{self.name}/{path.name}")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class VideoDataset:
    """A video file, or every video in a folder (one sequence each)."""

    has_ground_truth = False
    gt_dir = None

    def __init__(self, path: str):
        if not path:
            raise InputError("no video given: add dataset.path=<file or folder>")
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not self.files:
                raise InputError(f"folder holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})", self.path)
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise InputError("video not found", self.path)

    def __len__(self) -> int:
        return len(self.files)

    def sequences(self) -> Iterator[VideoSource]:
        for path in self.files:
            yield VideoSource(path)


class ImageFolderDataset:
    """A folder of frames (one sequence), or a folder of such folders (one sequence each)."""

    has_ground_truth = False
    gt_dir = None
    files = None  # a sequence is a folder: an unreadable frame fails its own sequence only

    def __init__(self, path: str, fps: float = 25.0):
        if not path:
            raise InputError("no image folder given: add dataset.path=<folder>")
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise InputError("image folder not found", self.path)
        self.fps = fps
        direct = _images_in(self.path)
        if direct:
            self.groups = [(self.path, direct)]
        else:
            subfolders = sorted(p for p in self.path.iterdir() if p.is_dir())
            self.groups = [(p, files) for p in subfolders if (files := _images_in(p))]
        if not self.groups:
            raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder or its "
                             f"sub-folders", self.path)

    def __len__(self) -> int:
        return len(self.groups)

    def sequences(self) -> Iterator[ImageFolderSource]:
        for folder, files in self.groups:
            yield ImageFolderSource(folder, files, self.fps)
