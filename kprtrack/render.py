"""A rendered video of the tracks: boxes coloured by track id, id labels, skeletons, short trails.

A Writer like the others: the mp4 is encoded into a temporary file beside the target and renamed
when the sequence ends, so a killed run never leaves a half-written video under the final name.
"""
from __future__ import annotations

import colorsys
import os
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from kprtrack.errors import InputError
from kprtrack.record import POSETRACK_SKELETON, Detections, Frame


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

    @property
    def needs_images(self) -> bool:
        return self.enabled

    def begin_sequence(self, name: str, meta: dict) -> None:
        self._name, self._fps = name, float(meta.get("fps") or 25.0)
        self._writer, self._size = None, None
        self._trails: dict[int, deque] | None = {} if self.trail_length > 0 else None
        self._last_seen: dict[int, int] = {}
        self._tmp = self.out_dir / f".{name}.partial.mp4"

    def write(self, frame: Frame, detections: Detections) -> None:
        if not self.enabled or frame.image is None:
            return
        if self._writer is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._size = (frame.image.shape[1], frame.image.shape[0])
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self._fps, self._size)
            if not self._writer.isOpened():
                raise InputError(f"cannot encode video with codec {self.fourcc}", self._tmp)
        image = frame.image.copy()
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(draw_tracks(image, detections, self.keypoint_threshold, self._trails,
                                       self.trail_length))
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

    def end_sequence(self) -> list[Path]:
        if self._writer is None:
            return []
        self._writer.release()
        self._writer = None
        path = self.out_dir / f"{self._name}.mp4"
        os.replace(self._tmp, path)
        return [path]
