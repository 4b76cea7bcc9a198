"""Track writers. Each sequence's file is written atomically when the sequence ends, so a killed
run leaves finished sequences complete and no half-written file behind.

Writers with ``filtered = True`` write the tracks that pass ``output.filters``: the pipeline hands
them a sequence's frames when it ends (see ``kprtrack.output_filters``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kprtrack.io import atomic_open, write_json
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

    filtered = True

    def __init__(self, dir: str, subdir: str = POSETRACK_SUBDIR):
        self.out_dir = Path(dir) / subdir
        self._name: str | None = None

    def begin_sequence(self, name: str, meta: dict) -> None:
        self._name = name
        # GT image entries are kept (all of them, labeled or not) so the evaluator finds the same
        # ids; sources without GT (videos) get entries built from the frames as they come.
        self._images = [dict(im) for im in meta.get("images") or []]
        self._known_ids = {im["id"] for im in self._images}
        self._categories = meta.get("categories") or POSETRACK_CATEGORIES
        self._annotations: list[dict] = []

    def write(self, frame: Frame, detections: Detections) -> None:
        image_id = frame.image_id if frame.image_id is not None else frame.index
        if image_id not in self._known_ids:
            self._known_ids.add(image_id)
            self._images.append({
                "id": image_id, "file_name": frame.file_name or f"{frame.sequence}/{frame.index:06d}.jpg",
                "frame_id": image_id, "vid_id": frame.sequence, "is_labeled": frame.is_labeled,
                "width": frame.width, "height": frame.height,
            })
        people = _tracked(detections)
        for i in range(len(people)):
            x1, y1, x2, y2 = (float(v) for v in people.boxes[i])
            if people.keypoints is not None:
                kps = people.keypoints[i].astype(np.float64)
            else:
                kps = np.zeros((len(POSETRACK_KEYPOINTS), 3))
            self._annotations.append({
                "id": len(self._annotations), "image_id": image_id, "category_id": 1,
                "track_id": int(people.track_ids[i]),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "keypoints": [round(float(v), 3) for v in kps.reshape(-1)],
                "scores": [round(float(v), 4) for v in kps[:, 2]],
                "score": round(float(people.scores[i]), 4),
            })

    def end_sequence(self) -> list[Path]:
        path = self.out_dir / f"{self._name}.json"
        write_json(path, {"images": self._images, "annotations": self._annotations,
                          "categories": self._categories})
        return [path]


class MotWriter:
    """MOTChallenge txt, ``frame,id,l,t,w,h,conf,-1,-1,-1`` with 1-based frame numbers."""

    filtered = True

    def __init__(self, dir: str, subdir: str = "mot"):
        self.out_dir = Path(dir) / subdir
        self._name: str | None = None

    def begin_sequence(self, name: str, meta: dict) -> None:
        self._name = name
        self._rows: list[str] = []

    def write(self, frame: Frame, detections: Detections) -> None:
        people = _tracked(detections)
        ltwh = people.boxes_ltwh
        for i in range(len(people)):
            l, t, w, h = (float(v) for v in ltwh[i])
            self._rows.append(f"{frame.index + 1},{int(people.track_ids[i])},{l:.2f},{t:.2f},{w:.2f},{h:.2f},"
                              f"{float(people.scores[i]):.4f},-1,-1,-1\n")

    def end_sequence(self) -> list[Path]:
        path = self.out_dir / f"{self._name}.txt"
        with atomic_open(path, "w", encoding="utf-8") as handle:
            handle.writelines(self._rows)
        return [path]
