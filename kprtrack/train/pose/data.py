"""Training people of PoseTrack21 / PoseTrack18: one ``PoseItem`` per annotated person.

Filtering follows mmpose 1.x's coco-style datasets (``parse_data_info`` / ``_is_valid_instance``):
labelled frames only, a box is required and clipped to the image where its size is known,
crowd annotations and empty boxes are dropped, and a person needs ``min_keypoints`` labelled
joints. Visibility is 0/1 (``min(1, v)``); coordinates of unlabelled joints are kept as given
(usually 0) and never used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kprtrack.data.posetrack import PoseTrackDataset, load_sequence_json
from kprtrack.record import NUM_KEYPOINTS


@dataclass
class PoseItem:
    image_path: str
    bbox: np.ndarray  # float32 [4] x1 y1 x2 y2, frame pixels
    keypoints: np.ndarray  # float32 [17, 3] PoseTrack order: x, y, visibility 0/1
    image_id: int | str
    sequence: str
    track_id: int


def load_pose_items(root: str | Path, split: str = "train", annotations_dir: str = "posetrack_data",
                    sequences: list[str] | None = None, min_keypoints: int = 1) -> list[PoseItem]:
    """Every usable person of a split's labelled frames, in file and annotation order."""
    dataset = PoseTrackDataset(str(root), split, annotations_dir,
                               sequences=[str(s) for s in sequences] if sequences else None)
    root, files = dataset.root, dataset.files
    min_keypoints = max(1, int(min_keypoints))
    items: list[PoseItem] = []
    for path in files:
        seq = load_sequence_json(path)  # any malformed value: InputError naming the file
        for image in seq.images:
            if not image.get("is_labeled", True):
                continue
            for ann in seq.annotations[image["id"]]:
                item = _item(root, seq.name, image, ann, min_keypoints)
                if item is not None:
                    items.append(item)
    return items


def _item(root: Path, sequence: str, image: dict, ann: dict, min_keypoints: int) -> PoseItem | None:
    if not ann.get("bbox") or not ann.get("keypoints") or ann.get("iscrowd"):
        return None
    x, y, w, h = (float(v) for v in ann["bbox"])
    box = np.array([x, y, x + w, y + h], dtype=np.float32)
    width, height = image.get("width"), image.get("height")
    if isinstance(width, (int, float)) and isinstance(height, (int, float)) and width > 0 and height > 0:
        box = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.float32)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    keypoints = np.asarray(ann["keypoints"], dtype=np.float32).reshape(NUM_KEYPOINTS, 3).copy()
    keypoints[:, 2] = np.minimum(1.0, (keypoints[:, 2] > 0).astype(np.float32))
    if int(keypoints[:, 2].sum()) < min_keypoints:
        return None
    track = ann.get("track_id")
    return PoseItem(image_path=str(root / image["file_name"]), bbox=box, keypoints=keypoints,
                    image_id=image["id"], sequence=sequence,
                    track_id=int(track) if track is not None else -1)
