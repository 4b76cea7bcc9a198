"""Person-box training items for ``train-detector``, read from a PoseTrack21/18-layout root.

One :class:`DetectionItem` per (labelled) image: its file, the people's boxes and the image's ignore
regions. Ignore regions hold people nobody annotated (crowds, far background), so a detector trained
on them as background learns to miss people: :func:`read_item` paints them pad-gray (the value the
network already sees as "nothing" in letterbox borders) and the loader drops the annotated people
whose box centre lies inside one, as the PoseTrack evaluation ignores them too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kprtrack.data.posetrack import PoseTrackDataset, annotations_to_detections, polygons, read_image
from kprtrack.detector.yolox_processing import PAD_VALUE
from kprtrack.eval.geometry import points_in_polygons
from kprtrack.errors import InputError


@dataclass
class DetectionItem:
    """One training image. Plain data (paths, arrays), so it pickles into DataLoader workers."""

    image_path: str
    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2 in image pixels
    ignore: list[np.ndarray]  # ignore-region polygons, [M, 2] float32 x, y
    width: int
    height: int
    image_id: int | str  # PoseTrack ids are ints; the format also allows strings
    sequence: str


def load_detection_items(root: str | Path, split: str = "train", annotations_dir: str = "posetrack_data",
                         sequences: list[str] | None = None, labeled_only: bool = True,
                         min_box_side: float = 2.0) -> list[DetectionItem]:
    """Every image of the split's sequences (only ``is_labeled`` ones with ``labeled_only``: the
    others have no boxes, and would teach that their people are background).

    Boxes are clipped to the image; those with a side under ``min_box_side`` pixels after clipping,
    and people centred in an ignore region, are dropped. Problems are InputErrors naming the file:
    a missing folder or sequence (from :class:`PoseTrackDataset`), a bad JSON (from
    :func:`load_sequence_json`), a listed image that is not there, a split with no images.
    """
    dataset = PoseTrackDataset(str(root), split=split, annotations_dir=annotations_dir,
                               sequences=sequences, labeled_only=labeled_only)
    items: list[DetectionItem] = []
    for source in dataset.sequences():
        for image in source.images:
            path = dataset.root / image["file_name"]
            width, height = _image_size(path, image, source.seq.path)
            regions = polygons(image)
            boxes = annotations_to_detections(source.seq.annotations[image["id"]]).boxes
            boxes = _usable_boxes(boxes, width, height, regions, min_box_side)
            items.append(DetectionItem(image_path=str(path), boxes=boxes, ignore=regions, width=width,
                                       height=height, image_id=image["id"], sequence=source.name))
    if not items:
        which = "labelled images" if labeled_only else "images"
        raise InputError(f"no {which} in the selected sequences of split {split!r}",
                         dataset.root / annotations_dir / split)
    return items


def _image_size(path: Path, image: dict, json_path: Path) -> tuple[int, int]:
    """(width, height): from the JSON entry when it has them (PoseTrack18 does), else the file's header."""
    if not path.is_file():
        raise InputError(f"image listed in {json_path} not found", path)
    width, height = image.get("width"), image.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    from PIL import Image  # matplotlib's dependency; reads the header only

    try:
        with Image.open(path) as opened:
            return opened.size
    except OSError as err:
        raise InputError(f"cannot read image listed in {json_path} ({err})", path) from None


def _usable_boxes(boxes: np.ndarray, width: int, height: int, regions: list[np.ndarray],
                  min_box_side: float) -> np.ndarray:
    boxes = boxes.astype(np.float32, copy=True).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    keep = (sides >= min_box_side) & ~centres_in_regions(boxes, regions)
    return boxes[keep]


def centres_in_regions(boxes: np.ndarray, regions: list[np.ndarray]) -> np.ndarray:
    """[N] bool: the box centre lies inside one of the polygons (the evaluation's point-in-polygon,
    :func:`kprtrack.eval.geometry.points_in_polygons`: a centre on an edge is outside, as in the kit)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return points_in_polygons((boxes[:, :2] + boxes[:, 2:]) / 2, regions)


def paint_ignore(image: np.ndarray, regions: list[np.ndarray]) -> np.ndarray:
    """The image with its ignore regions filled pad-gray (a copy; the input is left as it was)."""
    if not regions:
        return image
    painted = image.copy()
    cv2.fillPoly(painted, [np.round(p).astype(np.int32).reshape(-1, 1, 2) for p in regions],
                 (PAD_VALUE,) * 3)
    return painted


def read_item(item: DetectionItem) -> tuple[np.ndarray, np.ndarray]:
    """(BGR uint8 image with its ignore regions painted, a copy of its [N, 4] boxes)."""
    image = read_image(Path(item.image_path))
    return paint_ignore(image, item.ignore), item.boxes.astype(np.float32, copy=True).reshape(-1, 4)
