"""``python -m kprtrack run source=<file|folder|glob>``: the data set type follows from what the path holds.

- a video file (or any file that is not an image: OpenCV decides) -> ``dataset=video``;
- an image file -> ``dataset=images`` (one frame);
- a folder: frames directly in it -> ``images``; else videos directly in it -> ``video``; else
  sub-folders of frames -> ``images`` (one sequence each);
- a glob (``'clips/*.mp4'``, ``'frames/*.jpg'``, ``'shots/*/'``; quote it for the shell): video
  files -> ``video`` (one sequence each), image files -> ``images`` (one sequence per folder),
  folders of frames -> ``images``.

``source=X`` becomes ``dataset=<video|images> dataset.path=X`` before Hydra composes the config, so
``--cfg`` shows what runs and every ``dataset.*`` key still applies. ``dataset=video``/``images``
with ``dataset.path=<glob>`` work too (``VideoFiles``/``ImageFiles`` below are their targets).
"""
from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Sequence

from kprtrack.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageFolderDataset, VideoDataset
from kprtrack.errors import InputError

SOURCE_KEY = "source"
SOURCE_DATASETS = ("video", "images")
_PLAIN_VALUE = re.compile(r"[\w/+.*?@%-]+", re.ASCII)  # passes Hydra's override grammar unquoted


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and _is_image(p) for p in folder.iterdir())


def _matches(pattern: str) -> list[Path]:
    return [Path(m) for m in sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))]


def is_pattern(text: str) -> bool:
    """A glob (``*``, ``?`` or ``[...]``) that is not the name of an existing file or folder."""
    return glob.has_magic(text) and not Path(text).expanduser().exists()


def dataset_for(source: str) -> str:
    """``video`` or ``images``: the data set type that reads ``source``; InputError when none does."""
    if is_pattern(source):
        matches = _matches(source)
        if not matches:
            raise InputError("no file or folder matches this pattern", source)
        kinds = {"images" if (m.is_file() and _is_image(m)) or (m.is_dir() and _has_images(m))
                 else "video" if m.is_file() else "other" for m in matches}
        if kinds == {"images"} or kinds == {"video"}:
            return kinds.pop()
        raise InputError(f"the pattern matches {len(matches)} paths of different kinds (videos, images, "
                         f"folders without frames): give one kind", source)
    path = Path(source).expanduser()
    if path.is_file():
        return "images" if _is_image(path) else "video"
    if path.is_dir():
        entries = [p for p in path.iterdir()]
        if any(p.is_file() and _is_image(p) for p in entries):
            return "images"
        if any(p.is_file() and _is_video(p) for p in entries):
            return "video"
        if any(p.is_dir() and _has_images(p) for p in entries):
            return "images"
        raise InputError(f"folder holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))}), no frames "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))}) and no folders of frames", path)
    raise InputError("source not found (a video, a folder of videos or frames, or a quoted glob)", path)


def _hydra_value(text: str) -> str:
    if _PLAIN_VALUE.fullmatch(text):
        return text
    return "'" + text.replace("'", "\\'") + "'"  # Hydra: a backslash escapes only quotes


def source_overrides(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``source=X`` replaced by ``dataset=<video|images> dataset.path=X`` (unchanged without one)."""
    argv = list(argv)
    sources = [a for a in argv if a.split("=", 1)[0].lstrip("+") == SOURCE_KEY and "=" in a]
    if not sources:
        return argv
    if len(sources) > 1:
        raise InputError(f"give one source= (got {len(sources)}); a folder or a quoted glob takes several videos")
    value = sources[0].split("=", 1)[1].strip().strip("'\"")
    if not value:
        raise InputError("source= needs a value: a video, a folder of videos or frames, or a quoted glob")
    if any(a.startswith("dataset.path=") for a in argv):
        raise InputError("source= and dataset.path= both given: keep one")
    chosen = [a.split("=", 1)[1] for a in argv if a.startswith("dataset=")]
    if chosen and chosen[-1] not in SOURCE_DATASETS:
        raise InputError(f"source= reads videos and frames (dataset=video or images); dataset={chosen[-1]} "
                         f"takes its own keys (e.g. dataset.root=)")
    rest = [a for a in argv if a != sources[0]]
    dataset = [] if chosen else [f"dataset={dataset_for(value)}"]
    return dataset + rest + [f"dataset.path={_hydra_value(value)}"]


class VideoFiles(VideoDataset):
    """``dataset=video``: a video file, a folder of videos, or a glob of video files (one sequence each)."""

    def __init__(self, path: str):
        if not (path and is_pattern(str(path))):
            super().__init__(path)
            return
        self.path = Path(path).expanduser()
        self.files = [m for m in _matches(str(path)) if m.is_file() and _is_video(m)]
        if not self.files:
            raise InputError(f"the pattern matches no video files ({', '.join(sorted(VIDEO_SUFFIXES))})", path)


class ImageFiles(ImageFolderDataset):
    """``dataset=images``: a folder of frames, a folder of such folders, one image, or a glob of image
    files (one sequence per folder, frames in name order) or of frame folders."""

    def __init__(self, path: str, fps: float = 25.0):
        single = bool(path) and Path(path).expanduser().is_file() and _is_image(Path(path).expanduser())
        if not (path and (single or is_pattern(str(path)))):
            super().__init__(path, fps)
            return
        self.path, self.fps = Path(path).expanduser(), fps
        groups: dict[Path, list[Path]] = {}
        for match in [self.path] if single else _matches(str(path)):
            if match.is_file() and _is_image(match):
                groups.setdefault(match.parent, []).append(match)
            elif match.is_dir():
                groups.setdefault(match, []).extend(p for p in sorted(match.iterdir()) if p.is_file() and _is_image(p))
        self.groups = [(folder, sorted(set(files))) for folder, files in groups.items() if files]
        if not self.groups:
            raise InputError(f"the pattern matches no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or folders "
                             f"of images", path)
