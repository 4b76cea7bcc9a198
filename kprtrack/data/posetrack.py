"""PoseTrack21 (and PoseTrack18, same format) annotation files and sequences.

Layout: ``<root>/images/<split>/<seq>/NNNNNN.jpg`` and ``<root>/<annotations_dir>/<split>/<seq>.json``
(``posetrack_data`` for PoseTrack21, ``annotations`` for PoseTrack18). One JSON per video.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from kprtrack.errors import InputError
from kprtrack.io import read_input_text
from kprtrack.record import NUM_KEYPOINTS, Detections, Frame

REQUIRED_ANNOTATION_KEYS = ("image_id", "keypoints")


@dataclass
class PoseTrackSequence:
    name: str
    path: Path  # the JSON file
    images: list[dict]  # raw image entries, in file order
    annotations: dict[int, list[dict]]  # image id -> raw annotation entries
    categories: list[dict]

    @property
    def num_people(self) -> int:
        return len({a.get("track_id") for anns in self.annotations.values() for a in anns})


def load_sequence_json(path: str | Path, need_files: bool = True) -> PoseTrackSequence:
    """Read and validate one sequence file; any problem is an InputError naming the file.
    ``need_files=False`` (evaluation) accepts images without ``file_name``, as the PoseTrack21 kit does."""
    path = Path(path)
    text = read_input_text(path, "annotation file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"malformed or truncated JSON (line {err.lineno}, column {err.colno}: {err.msg})",
                         path) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError("not a PoseTrack file: expected an object with an 'images' list", path)
    images = data["images"]
    required = ("id", "file_name") if need_files else ("id",)
    for i, image in enumerate(images):
        missing = [k for k in required if not isinstance(image, dict) or k not in image]
        if missing:
            raise InputError(f"images[{i}] lacks {', '.join(missing)}", path)
    for i, image in enumerate(images):
        problem = image_problem(image, need_files)
        if problem:
            raise InputError(f"images[{i}]: {problem}", path)
    known = {image["id"] for image in images}
    annotations: dict[int, list[dict]] = {image["id"]: [] for image in images}
    raw_annotations = data.get("annotations") or []
    if not isinstance(raw_annotations, list):
        raise InputError("'annotations' is not a list", path)
    for i, ann in enumerate(raw_annotations):
        missing = [k for k in REQUIRED_ANNOTATION_KEYS if not isinstance(ann, dict) or k not in ann]
        if missing:
            raise InputError(f"annotations[{i}] lacks {', '.join(missing)}", path)
        if not _is_id(ann["image_id"]) or ann["image_id"] not in known:
            raise InputError(f"annotations[{i}] refers to unknown image_id {ann['image_id']!r}", path)
        problem = annotation_problem(ann)
        if problem:
            # Both places: the position in the file's list, and the one the evaluation's messages use.
            where = f"image {ann['image_id']}, annotation {len(annotations[ann['image_id']])}"
            raise InputError(f"annotations[{i}] ({where}): {problem}", path)
        annotations[ann["image_id"]].append(ann)
    return PoseTrackSequence(name=path.stem, path=path, images=images, annotations=annotations,
                             categories=data.get("categories") or [])


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numbers_problem(key: str, value, counts: tuple[int, ...] | None) -> str | None:
    """Why ``value`` is not a list of finite numbers, of one of ``counts`` lengths (None: any)."""
    if not isinstance(value, list):
        expected = "" if counts is None else f"{' or '.join(map(str, counts))} "
        return f"{key} must be a list of {expected}numbers, got {_shown(value)}"
    if counts is not None and len(value) not in counts:
        noun = "keypoint" if key == "keypoints" else key
        return f"has {len(value)} {noun} values, expected {' or '.join(str(c) for c in counts if c)}"
    bad = next((j for j, v in enumerate(value) if not _is_number(v)), None)
    if bad is not None:
        return f"{key}[{bad}] is {_shown(value[bad])}, not a finite number"
    return None


def _integer_problem(key: str, value) -> str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    if isinstance(value, float) and value.is_integer():
        return None
    return f"{key} must be an integer, got {_shown(value)}"


def image_problem(image: dict, need_files: bool) -> str | None:
    """What is wrong with one image entry's values (None: nothing)."""
    if not _is_id(image["id"]):
        return f"id must be an integer or a string, got {_shown(image['id'])}"
    if need_files and not isinstance(image["file_name"], str):
        return f"file_name must be a string, got {_shown(image['file_name'])}"
    for key in ("ignore_regions_x", "ignore_regions_y"):
        regions = image.get(key)
        if regions is None:
            continue
        if not isinstance(regions, list):
            return f"{key} must be a list of coordinate lists, got {_shown(regions)}"
        for j, region in enumerate(regions):
            problem = _numbers_problem(f"{key}[{j}]", region, None)
            if problem:
                return problem
    return None


def annotation_problem(ann: dict) -> str | None:
    """What is wrong with one annotation's values (None: nothing). Keypoints (17 x 3) and boxes
    ([x, y, w, h]) may be null or empty; given, they must be finite numbers; ids must be integers."""
    checks = [("keypoints", (0, 3 * NUM_KEYPOINTS)), ("bbox", (0, 4)), ("bbox_head", (0, 4)),
              ("scores", None)]
    for key, counts in checks:
        if ann.get(key) is not None:
            problem = _numbers_problem(key, ann[key], counts)
            if problem:
                return problem
    for key in ("track_id", "person_id"):
        problem = _integer_problem(key, ann.get(key))
        if problem:
            return problem
    return None


def find_sequences(root: str | Path, split: str = "val", annotations_dir: str = "posetrack_data") -> list[Path]:
    """The sequence JSON files of a split, sorted; InputError when the folder is missing or empty."""
    folder = Path(root) / annotations_dir / split
    if not Path(root).is_dir():
        raise InputError("data root not found", root)
    if not folder.is_dir():
        raise InputError(f"annotation folder not found (expected <root>/{annotations_dir}/{split}; "
                         f"set the annotations_dir / split options)", folder)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise InputError("no sequence .json files in the annotation folder", folder)
    return files


def polygons(image: dict) -> list[np.ndarray]:
    """Ignore regions of one image entry as [M, 2] (x, y) polygons."""
    xs, ys = image.get("ignore_regions_x") or [], image.get("ignore_regions_y") or []
    return [np.stack([np.asarray(x, np.float32), np.asarray(y, np.float32)], axis=1)
            for x, y in zip(xs, ys) if len(x) >= 3 and len(x) == len(y)]


def annotations_to_detections(anns: list[dict]) -> Detections:
    """Ground-truth people of one image. Annotations without a box are skipped."""
    anns = [a for a in anns if a.get("bbox")]  # values checked by load_sequence_json
    if not anns:
        empty = Detections.empty()
        return empty.with_(keypoints=np.zeros((0, NUM_KEYPOINTS, 3), np.float32),
                           track_ids=np.zeros(0, np.int64), person_ids=np.zeros(0, np.int64))
    boxes = np.asarray([a["bbox"] for a in anns], np.float32)
    boxes[:, 2:] += boxes[:, :2]
    keypoints = np.zeros((len(anns), NUM_KEYPOINTS, 3), np.float32)
    for i, ann in enumerate(anns):
        if ann["keypoints"]:
            keypoints[i] = np.asarray(ann["keypoints"], np.float32).reshape(NUM_KEYPOINTS, 3)
    # PoseTrack GT visibility is 0/1; treat it as a confidence.
    keypoints[..., 2] = (keypoints[..., 2] > 0).astype(np.float32)
    return Detections(
        boxes=boxes, scores=np.ones(len(anns), np.float32), keypoints=keypoints,
        track_ids=np.asarray([a.get("track_id", -1) for a in anns], np.int64),
        # PoseTrack18 has no global person_id: the per-video track id stands in for it.
        person_ids=np.asarray([_first_set(a.get("person_id"), a.get("track_id"), -1) for a in anns], np.int64),
    )


def _first_set(*values):
    return next(v for v in values if v is not None)


def read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("cannot read image (missing or not an image)", path)
    return image


class PoseTrackDataset:
    """``dataset=posetrack21``: sequences of a split, frames decoded lazily one at a time."""

    def __init__(self, root: str, split: str = "val", annotations_dir: str = "posetrack_data",
                 sequences: list[str] | None = None, labeled_only: bool = False, fps: float = 25.0,
                 has_ground_truth: bool = True):
        self.root = Path(root).expanduser()
        self.split = split
        self.annotations_dir = annotations_dir
        self.labeled_only = labeled_only
        self.fps = fps
        self.has_ground_truth = has_ground_truth
        files = find_sequences(self.root, split, annotations_dir)
        if sequences:
            wanted = set(sequences)
            unknown = wanted - {f.stem for f in files}
            if unknown:
                raise InputError(f"unknown sequence(s) {sorted(unknown)}", files[0].parent)
            files = [f for f in files if f.stem in wanted]
        self.files = files

    @property
    def gt_dir(self) -> Path | None:
        return self.root / self.annotations_dir / self.split if self.has_ground_truth else None

    @property
    def path(self) -> Path:
        return self.root

    def __len__(self) -> int:
        return len(self.files)

    def sequences(self) -> Iterator["PoseTrackSource"]:
        for path in self.files:
            yield PoseTrackSource(load_sequence_json(path), self.root, self.labeled_only, self.fps)


class PoseTrackSource:
    """One sequence: metadata for the writers and a frame iterator (images decoded once)."""

    def __init__(self, seq: PoseTrackSequence, root: Path, labeled_only: bool, fps: float):
        self.seq = seq
        self.name = seq.name
        self.root = root
        self.fps = fps
        self.images = [im for im in seq.images if im.get("is_labeled", True)] if labeled_only else seq.images

    def __len__(self) -> int:
        return len(self.images)

    @property
    def meta(self) -> dict:
        return {"images": self.seq.images, "categories": self.seq.categories, "fps": self.fps}

    def fingerprint(self) -> str:
        """Identifies the input for the stage cache: the annotation file's bytes and every frame's
        name and bytes (frames replaced in place under the same names are another input; a missing
        frame counts as missing, and reading it fails where the frame is decoded)."""
        from kprtrack.data.content_hash import files_digests, named_digest

        paths = [self.seq.path] + [self.root / image["file_name"] for image in self.images]
        try:
            digests = files_digests(paths, missing_ok=True)
        except OSError as err:
            raise InputError(f"cannot read file ({err.strerror or err})", err.filename or self.root) from None
        return named_digest("posetrack", ["<annotations>"] + [str(image["file_name"]) for image in self.images],
                            digests)

    def frames(self, decode: bool = True) -> Iterator[Frame]:
        for index, image in enumerate(self.images):
            pixels = read_image(self.root / image["file_name"]) if decode else None
            yield Frame(
                sequence=self.name, index=index, image=pixels, image_id=image["id"],
                file_name=image["file_name"], is_labeled=bool(image.get("is_labeled", True)),
                ignore_regions=polygons(image), gt=annotations_to_detections(self.seq.annotations[image["id"]]),
                width=image.get("width"), height=image.get("height"),
            )
