"""A rendered video of the tracks: boxes coloured by track id, id labels, skeletons, short trails.

A Writer like the others: the mp4 is encoded into a temporary file beside the target (a unique
hidden name: runs never share it) and renamed when the sequence ends, after checking that the file
holds every frame (OpenCV's encoder does not report a full disk): a killed run or a full disk never
leaves a half-written video under the final name.

What the encoder cannot take is adapted with a warning: an fps that is not a number in
(0.01, 65535] (containers may report 90000 or NaN) becomes 25; frames smaller than 16 px or larger
than 8190 px a side are scaled (the video is a view of the tracks; the track files keep the
source's pixel coordinates).
"""
from __future__ import annotations

import colorsys
import errno
import math
import os
import tempfile
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from kprtrack.errors import OutputError, warn
from kprtrack.io import _umask
from kprtrack.record import POSETRACK_SKELETON, Detections, Frame
from kprtrack.stages import IMAGE


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-spread BGR colour per id (golden-ratio hue steps)."""
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_tracks(image: np.ndarray, detections: Detections, keypoint_threshold: float = 0.3,
                trails: dict[int, deque] | None = None, trail_length: int = 30) -> np.ndarray:
    """Draw in place; ``trails`` (id -> recent foot points) is updated when given."""
    thickness = max(1, round(max(image.shape[:2]) / 500))
    keep = detections.track_ids >= 0 if detections.track_ids is not None else np.zeros(len(detections), bool)
    for i in np.flatnonzero(keep):
        tid = int(detections.track_ids[i])
        color = track_color(tid)
        if not np.all(np.isfinite(detections.boxes[i])):
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in detections.boxes[i])
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
        label = str(tid)
        scale = 0.5 * thickness
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(image, (x1, y1 - h - base - 2), (x1 + w + 2, y1), color, -1)
        cv2.putText(image, label, (x1 + 1, y1 - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)
        if detections.keypoints is not None:
            kps = detections.keypoints[i]
            ok = (kps[:, 2] > keypoint_threshold) & np.isfinite(kps).all(axis=1)
            for a, b in POSETRACK_SKELETON:
                if ok[a - 1] and ok[b - 1]:
                    cv2.line(image, tuple(int(v) for v in kps[a - 1, :2]), tuple(int(v) for v in kps[b - 1, :2]),
                             color, thickness, cv2.LINE_AA)
            for x, y in kps[ok, :2]:
                cv2.circle(image, (int(x), int(y)), thickness + 1, color, -1, cv2.LINE_AA)
        if trails is not None:
            trail = trails.setdefault(tid, deque(maxlen=trail_length))
            trail.append(((x1 + x2) // 2, y2))
            if len(trail) > 1:
                cv2.polylines(image, [np.array(trail, np.int32)], False, color, thickness, cv2.LINE_AA)
    return image


FALLBACK_FPS = 25.0
MIN_FPS, MAX_FPS = 0.01, 65535.0  # mp4v: the time base denominator must fit 16 bits
MIN_SIDE, MAX_SIDE = 16, 8190  # mp4v: 13-bit sides (8192 fails)


def usable_fps(fps, source: str) -> float:
    """``fps`` when the encoder takes it, else 25 with a warning naming the source."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if fps is None:
        return FALLBACK_FPS
    if not (math.isfinite(value) and MIN_FPS < value <= MAX_FPS):
        warn(f"{source}: frame rate {fps!r} is not usable for the rendered video "
             f"(must be in ({MIN_FPS}, {MAX_FPS:g}]): rendering at {FALLBACK_FPS:g} fps")
        return FALLBACK_FPS
    return value


def render_size(width: int, height: int) -> tuple[int, int]:
    """The encoded size: the frame's, scaled (aspect kept) so both sides are within [16, 8190]."""
    scale = 1.0
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
    if min(width, height) * scale < MIN_SIDE:
        scale = MIN_SIDE / min(width, height)
    size = [min(MAX_SIDE, max(MIN_SIDE, round(v * scale))) for v in (width, height)]
    return size[0], size[1]


class VideoRenderWriter:
    """``output.render=true``: ``render/<seq>.mp4`` at the source fps."""

    def __init__(self, dir: str, subdir: str = "render", trail_length: int = 30, fourcc: str = "mp4v",
                 keypoint_threshold: float = 0.3, enabled: bool = True):
        self.out_dir = Path(dir) / subdir
        self.trail_length = int(trail_length)
        self.fourcc = fourcc
        self.keypoint_threshold = keypoint_threshold
        self.enabled = enabled
        self._writer = None

    filtered = False  # draws every frame's tracks as they come

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({IMAGE, "track_ids"} if self.enabled else {"track_ids"})

    def begin_sequence(self, name: str, meta: dict) -> None:
        self.abort()
        self._name, self._source = name, str(meta.get("source") or name)
        self._fps = usable_fps(meta.get("fps"), self._source) if self.enabled else FALLBACK_FPS
        self._writer, self._size, self._frame_size, self._tmp, self._frames = None, None, None, None, 0
        self._trails: dict[int, deque] | None = {} if self.trail_length > 0 else None
        self._last_seen: dict[int, int] = {}

    def _open(self, width: int, height: int) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self._name}.", suffix=".partial.mp4", dir=self.out_dir)
            os.close(fd)
        except OSError as err:
            raise OutputError.from_os_error(err, self.out_dir, "cannot write the rendered video") from None
        self._tmp = Path(tmp)
        self._frame_size = (width, height)
        self._size = render_size(width, height)
        if self._size != self._frame_size:
            warn(f"{self._source}: {width}x{height} frames are rendered at {self._size[0]}x{self._size[1]} "
                 f"(the encoder takes {MIN_SIDE} to {MAX_SIDE} px a side)")
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self._fps, self._size)
        if not self._writer.isOpened():
            self.abort()
            raise OutputError(f"OpenCV cannot encode {self._size[0]}x{self._size[1]} video at {self._fps:g} fps "
                              f"with codec {self.fourcc}", self.out_dir / f"{self._name}.mp4")

    def write(self, frame: Frame, detections: Detections) -> None:
        if not self.enabled or frame.image is None:
            return
        if self._writer is None:
            self._open(frame.image.shape[1], frame.image.shape[0])
        image = frame.image.copy()
        if (image.shape[1], image.shape[0]) != self._frame_size:
            image = cv2.resize(image, self._frame_size)  # a frame of another size than the first
        image = draw_tracks(image, detections, self.keypoint_threshold, self._trails, self.trail_length)
        if self._size != self._frame_size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA if self._size[0] < self._frame_size[0]
                               else cv2.INTER_NEAREST)
        self._writer.write(image)
        self._frames += 1
        self._forget_old_trails(frame.index, detections)

    def _forget_old_trails(self, index: int, detections: Detections) -> None:
        # Ids come and go over a long video: keep trails of recently seen ids only (memory stays flat).
        if self._trails is None:
            return
        if detections.track_ids is not None:
            for tid in detections.track_ids[detections.track_ids >= 0].tolist():
                self._last_seen[tid] = index
        for tid in [t for t, last in self._last_seen.items() if index - last > self.trail_length]:
            del self._last_seen[tid]
            self._trails.pop(tid, None)

    def abort(self) -> None:
        """Stop encoding and remove the partial file (a failed or interrupted sequence)."""
        writer, self._writer = getattr(self, "_writer", None), None
        if writer is not None:
            writer.release()
        tmp, self._tmp = getattr(self, "_tmp", None), None
        if tmp is not None:
            tmp.unlink(missing_ok=True)

    def end_sequence(self) -> list[Path]:
        if self._writer is None:
            return []
        self._writer.release()
        self._writer = None
        path = self.out_dir / f"{self._name}.mp4"
        try:
            self._check_encoded(path)
            os.chmod(self._tmp, 0o666 & ~_umask())
            os.replace(self._tmp, path)
        except BaseException:
            self.abort()
            raise
        self._tmp = None
        return [path]

    def _check_encoded(self, path: Path) -> None:
        """Flush the encoded file to disk and check it holds every frame: OpenCV's encoder writes
        on through a full disk without a word, leaving a video with no decodable frame."""
        try:
            with open(self._tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        except OSError as err:
            raise OutputError.from_os_error(err, path) from None
        capture = cv2.VideoCapture(str(self._tmp))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if frames != self._frames:
            stat = os.statvfs(self.out_dir)
            if stat.f_bavail * stat.f_frsize < 1 << 20:
                raise OutputError(f"cannot write the rendered video: {os.strerror(errno.ENOSPC)} "
                                  f"({frames} of {self._frames} frames encoded)", path)
            raise OutputError(f"the encoder wrote {frames} of {self._frames} frames: the video is damaged "
                              "(disk full or failing?)", path)

