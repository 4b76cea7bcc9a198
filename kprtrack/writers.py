"""Track writers. Each sequence's file is written atomically when the sequence ends, so a killed
run leaves finished sequences complete and no half-written file behind. What a sequence's file will
hold is spooled (``kprtrack.io.spool``: in memory up to 1 MB, then an anonymous file beside the
output) so memory does not grow with the length of the video.

Writers with ``filtered = True`` write the tracks that pass ``output.filters``: the pipeline hands
them a sequence's frames when it ends (see ``kprtrack.output_filters``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from kprtrack.io import atomic_open, spool
from kprtrack.record import POSETRACK_KEYPOINTS, POSETRACK_SKELETON, Detections, Frame

# <run>/posetrack21/sequences/<seq>.json: the official PoseTrack21 kit takes a folder named
# ``sequences`` as one tracker's predictions (--TRACKERS_FOLDER <run>/posetrack21/sequences).
POSETRACK_SUBDIR = "posetrack21/sequences"

POSETRACK_CATEGORIES = [{
    "supercategory": "person", "id": 1, "name": "person",
    "keypoints": list(POSETRACK_KEYPOINTS), "skeleton": [list(p) for p in POSETRACK_SKELETON],
}]


def _tracked(detections: Detections) -> Detections:
    if detections.track_ids is None:
        return detections.subset(np.zeros(len(detections), bool))
    return detections.subset(detections.track_ids >= 0)


class PoseTrackWriter:
    """PoseTrack21 prediction JSON, one ``<seq>.json`` per sequence, same image ids as the GT."""

    requires = frozenset({"track_ids"})  # keypoints too where a pose stage ran (else zeros)
    filtered = True

    def __init__(self, dir: str, subdir: str = POSETRACK_SUBDIR):
        self.out_dir = Path(dir) / subdir
        self._name: str | None = None

    def begin_sequence(self, name: str, meta: dict) -> None:
        self._name = name
        # GT image entries are kept (all of them, labeled or not) so the evaluator finds the same
        # ids; sources without GT (videos) get entries built from the frames as they come.
        self.abort()
        self._gt_images = meta.get("images") or []
        self._known_ids = {im["id"] for im in self._gt_images}
        self._categories = meta.get("categories") or POSETRACK_CATEGORIES
        # one JSON value per line: the images not in the GT (videos), and the annotations
        self._images, self._annotations = spool(self.out_dir), spool(self.out_dir)
        self._count = 0

    def abort(self) -> None:
        """Drop the sequence's buffers (a failed sequence): nothing is written."""
        for buffer in (getattr(self, "_images", None), getattr(self, "_annotations", None)):
            if buffer is not None:
                buffer.close()
        self._images = self._annotations = None

    def write(self, frame: Frame, detections: Detections) -> None:
        image_id = frame.image_id if frame.image_id is not None else frame.index
        if image_id not in self._known_ids:
            self._known_ids.add(image_id)
            self._images.write(json.dumps({
                "id": image_id, "file_name": frame.file_name or f"{frame.sequence}/{frame.index:06d}.jpg",
                "frame_id": image_id, "vid_id": frame.sequence, "is_labeled": frame.is_labeled,
                "width": frame.width, "height": frame.height,
            }) + "\n")
        people = _tracked(detections)
        for i in range(len(people)):
            x1, y1, x2, y2 = (float(v) for v in people.boxes[i])
            if people.keypoints is not None:
                kps = people.keypoints[i].astype(np.float64)
            else:
                kps = np.zeros((len(POSETRACK_KEYPOINTS), 3))
            self._annotations.write(json.dumps({
                "id": self._count, "image_id": image_id, "category_id": 1,
                "track_id": int(people.track_ids[i]),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "keypoints": [round(float(v), 3) for v in kps.reshape(-1)],
                "scores": [round(float(v), 4) for v in kps[:, 2]],
                "score": round(float(people.scores[i]), 4),
            }) + "\n")
            self._count += 1

    def end_sequence(self) -> list[Path]:
        """``{"images": [...], "annotations": [...], "categories": [...]}``, byte for byte what
        ``json.dump`` of the whole would give, streamed from the buffers."""
        path = self.out_dir / f"{self._name}.json"
        with atomic_open(path, "w", encoding="utf-8") as handle:
            handle.write('{"images": [')
            separator = _join(handle, (json.dumps(im) for im in self._gt_images), "")
            _join(handle, _lines(self._images), separator)
            handle.write('], "annotations": [')
            _join(handle, _lines(self._annotations), "")
            handle.write(f'], "categories": {json.dumps(self._categories)}}}')
        self.abort()
        return [path]


def _lines(buffer) -> Iterator[str]:
    buffer.seek(0)
    for line in buffer:
        yield line.rstrip("\n")


def _join(handle, items: Iterable[str], separator: str) -> str:
    """Write ``items`` separated by ", " (``separator`` before the first); returns the separator
    for what follows: ", " once anything was written."""
    for item in items:
        handle.write(separator + item)
        separator = ", "
    return separator


class MotWriter:
    """MOTChallenge txt, ``frame,id,l,t,w,h,conf,-1,-1,-1`` with 1-based frame numbers."""

    requires = frozenset({"track_ids"})
    filtered = True

    def __init__(self, dir: str, subdir: str = "mot"):
        self.out_dir = Path(dir) / subdir
        self._name: str | None = None

    def begin_sequence(self, name: str, meta: dict) -> None:
        self._name = name
        self.abort()
        self._rows = spool(self.out_dir)

    def abort(self) -> None:
        """Drop the sequence's buffer (a failed sequence): nothing is written."""
        if getattr(self, "_rows", None) is not None:
            self._rows.close()
        self._rows = None

    def write(self, frame: Frame, detections: Detections) -> None:
        people = _tracked(detections)
        ltwh = people.boxes_ltwh
        for i in range(len(people)):
            l, t, w, h = (float(v) for v in ltwh[i])
            self._rows.write(f"{frame.index + 1},{int(people.track_ids[i])},{l:.2f},{t:.2f},{w:.2f},{h:.2f},"
                              f"{float(people.scores[i]):.4f},-1,-1,-1\n")

    def end_sequence(self) -> list[Path]:
        path = self.out_dir / f"{self._name}.txt"
        with atomic_open(path, "w", encoding="utf-8") as handle:
            self._rows.seek(0)
            shutil.copyfileobj(self._rows, handle)
        self.abort()
        return [path]
