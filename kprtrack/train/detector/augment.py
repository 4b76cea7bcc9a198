"""YOLOX's training augmentation, as a picklable batch collate for ``train-detector``.

Per image, as upstream YOLOX trains (``MosaicDetection`` + ``TrainTransform``):

* mosaic phase: four images (this one and three drawn from the data set) letterboxed into the four
  corners around a random centre of a 2x canvas, a random affine (rotation, scale, shear, translation)
  of that canvas back to the input size, then mixup with one more image;
* both phases (the final "no-aug" epochs keep these, as upstream's TrainTransform does): HSV jitter,
  horizontal flip, letterbox into the network input (pad 114, BGR 0-255, CHW float32).

The geometry is the centred affine with box-candidate filtering that the official YOLOX checkpoints
and ByteTrack's person detectors were trained with; HSV jitter is upstream's current additive one.
Every random draw comes from a ``numpy.random.Generator``: the same seed gives the same batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence

import cv2
import numpy as np

from kprtrack.detector.yolox_processing import PAD_VALUE, check_input_size, letterbox, to_tensor_layout
from kprtrack.errors import InputError
from kprtrack.train.common import batch_rng
from kprtrack.train.detector.data import DetectionItem, read_item

HSV_GAINS = (5, 30, 30)  # hue (OpenCV's 0-179 scale), saturation, value: largest additive offsets
PERSON_CLASS = 0
_PAD_BGR = (PAD_VALUE,) * 3


@dataclass
class AugmentConfig:
    """Upstream YOLOX's defaults (exps/default yolox_base.py)."""

    mosaic_prob: float = 1.0
    mixup_prob: float = 1.0
    hsv_prob: float = 1.0
    flip_prob: float = 0.5
    degrees: float = 10.0  # rotation range +-
    translate: float = 0.1  # fraction of the output size, +-
    mosaic_scale: tuple[float, float] = (0.1, 2.0)
    mixup_scale: tuple[float, float] = (0.5, 1.5)
    shear: float = 2.0  # degrees, +-
    max_labels: int = 120  # rows of the padded target tensor; further boxes are dropped
    min_box_side: float = 1.0  # boxes not wider and taller than this (input pixels) are dropped
    multiscale_range: int = 0  # upstream's multiscale training: each batch resized to (H/32 +- k) * 32, 0 = off

    def __post_init__(self):
        for name in ("mosaic_prob", "mixup_prob", "hsv_prob", "flip_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"augmentation {name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("mosaic_scale", "mixup_scale"):
            value = getattr(self, name)
            try:
                low, high = (float(v) for v in value)  # plain floats, also from a Hydra ListConfig
            except (TypeError, ValueError):
                low = high = float("nan")
            if not 0.0 < low <= high:
                raise InputError(f"augmentation {name} must be (low, high) with 0 < low <= high, got {value!r}")
            setattr(self, name, (low, high))
        if int(self.max_labels) < 1:
            raise InputError(f"augmentation max_labels must be at least 1, got {self.max_labels!r}")
        if int(self.multiscale_range) < 0:
            raise InputError(f"augmentation multiscale_range must be >= 0, got {self.multiscale_range!r}")


def augment_hsv(image: np.ndarray, rng: np.random.Generator, gains: Sequence[float] = HSV_GAINS) -> np.ndarray:
    """Shift hue (wrapping), saturation and value (clipped) by integer offsets; each channel is
    jittered or left alone at random, as upstream does."""
    offsets = (rng.uniform(-1, 1, 3) * np.asarray(gains) * rng.integers(0, 2, 3)).astype(np.int16)
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + offsets[0]) % 180
    hsv[..., 1:] = np.clip(hsv[..., 1:] + offsets[1:], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; a box [x1, x2] becomes [W - x2, W - x1]."""
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def box_candidates(before: np.ndarray, after: np.ndarray, min_side: float = 2.0, max_aspect: float = 20.0,
                   min_area_ratio: float = 0.2) -> np.ndarray:
    """[N] bool: boxes worth keeping after a transform (``before`` already at the new scale): more
    than ``min_side`` pixels each way, not a sliver, and with more than ``min_area_ratio`` of their
    area left (a person cut down to an edge strip is not a useful positive)."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > min_side) & (h2 > min_side) & (w2 * h2 / (w1 * h1 + 1e-16) > min_area_ratio) & (aspect < max_aspect)


def affine_matrix(rng: np.random.Generator, source_hw: tuple[int, int], out_hw: tuple[int, int],
                  config: AugmentConfig) -> tuple[np.ndarray, float]:
    """3x3 matrix taking the source's centre to the output's centre (+- translate), rotating,
    scaling and shearing about it; and the scale drawn."""
    centre = np.eye(3)
    centre[:2, 2] = -source_hw[1] / 2, -source_hw[0] / 2
    scale = float(rng.uniform(*config.mosaic_scale))
    rotate = np.eye(3)
    rotate[:2] = cv2.getRotationMatrix2D((0.0, 0.0), float(rng.uniform(-config.degrees, config.degrees)), scale)
    shear = np.eye(3)
    shear[0, 1] = math.tan(math.radians(rng.uniform(-config.shear, config.shear)))
    shear[1, 0] = math.tan(math.radians(rng.uniform(-config.shear, config.shear)))
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_hw[1]
    move[1, 2] = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_hw[0]
    return move @ shear @ rotate @ centre, scale


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The axis-aligned boxes around the four transformed corners, clipped to the output."""
    corners = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(-1, 2)  # x1y1, x2y2, x1y2, x2y1
    moved = (corners @ matrix[:2, :2].T + matrix[:2, 2]).reshape(-1, 4, 2)
    out = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)
    out[:, 0::2] = out[:, 0::2].clip(0, out_hw[1])
    out[:, 1::2] = out[:, 1::2].clip(0, out_hw[0])
    return out.astype(np.float32)


def random_affine(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, out_hw: tuple[int, int],
                  config: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Warp the image to ``out_hw`` (uncovered pixels pad-gray) and its boxes with it; boxes mostly
    pushed out of the frame are dropped (:func:`box_candidates`)."""
    matrix, scale = affine_matrix(rng, image.shape[:2], out_hw, config)
    warped = cv2.warpAffine(image, matrix[:2], dsize=(out_hw[1], out_hw[0]), borderValue=_PAD_BGR)
    moved = transform_boxes(boxes, matrix, out_hw)
    return warped, moved[box_candidates(boxes * scale, moved)]


def _fit(image: np.ndarray, boxes: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize keeping the aspect ratio to fit inside ``hw`` (no padding)."""
    ratio = min(hw[0] / image.shape[0], hw[1] / image.shape[1])
    size = (max(1, int(image.shape[1] * ratio)), max(1, int(image.shape[0] * ratio)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), boxes * ratio


def _paste(canvas: np.ndarray, tile: np.ndarray, x0: int, y0: int) -> None:
    """Copy ``tile`` with its top-left at (x0, y0), cutting what falls outside the canvas."""
    x1, y1 = max(x0, 0), max(y0, 0)
    x2, y2 = min(x0 + tile.shape[1], canvas.shape[1]), min(y0 + tile.shape[0], canvas.shape[0])
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = tile[y1 - y0:y2 - y0, x1 - x0:x2 - x0]


def mosaic(tiles: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator,
           input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Four (image, boxes) fitted to the input size, meeting at a random centre of a 2x canvas:
    top-left, top-right, bottom-left, bottom-right. Boxes are clipped to the canvas."""
    height, width = input_hw
    canvas = np.full((2 * height, 2 * width, 3), PAD_VALUE, np.uint8)
    yc = int(rng.uniform(0.5 * height, 1.5 * height))
    xc = int(rng.uniform(0.5 * width, 1.5 * width))
    placed = []
    for corner, (image, boxes) in enumerate(tiles):
        tile, tile_boxes = _fit(image, boxes, input_hw)
        x0 = xc - tile.shape[1] if corner in (0, 2) else xc
        y0 = yc - tile.shape[0] if corner in (0, 1) else yc
        _paste(canvas, tile, x0, y0)
        placed.append(tile_boxes + np.array([x0, y0, x0, y0], np.float32))
    boxes = np.concatenate(placed).astype(np.float32).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, 2 * width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, 2 * height)
    return canvas, boxes


def mixup(image: np.ndarray, boxes: np.ndarray, other: np.ndarray, other_boxes: np.ndarray,
          rng: np.random.Generator, config: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Blend 0.5/0.5 with ``other`` letterboxed to this size, rescaled by a random jitter, maybe
    mirrored and randomly cropped back to this size; both images' boxes are kept. Nothing changes
    when none of the other's boxes survives the crop."""
    height, width = image.shape[:2]
    jitter = float(rng.uniform(*config.mixup_scale))
    flip = rng.random() < 0.5
    canvas, ratio = letterbox(other, (height, width))
    canvas = cv2.resize(canvas, (max(1, int(width * jitter)), max(1, int(height * jitter))))
    moved = other_boxes * (ratio * jitter)
    if flip:
        canvas, moved = hflip(canvas, moved)
    padded = np.full((max(canvas.shape[0], height), max(canvas.shape[1], width), 3), PAD_VALUE, np.uint8)
    padded[:canvas.shape[0], :canvas.shape[1]] = canvas
    dy = int(rng.integers(0, padded.shape[0] - height)) if padded.shape[0] > height else 0
    dx = int(rng.integers(0, padded.shape[1] - width)) if padded.shape[1] > width else 0
    crop = padded[dy:dy + height, dx:dx + width]
    shifted = moved - np.array([dx, dy, dx, dy], np.float32)
    shifted[:, 0::2] = shifted[:, 0::2].clip(0, width)
    shifted[:, 1::2] = shifted[:, 1::2].clip(0, height)
    keep = box_candidates(moved, shifted, min_side=5.0)
    if not keep.any():
        return image, boxes
    blended = (0.5 * image.astype(np.float32) + 0.5 * crop.astype(np.float32)).astype(np.uint8)
    return blended, np.concatenate([boxes, shifted[keep]]).astype(np.float32)


def preproc(image: np.ndarray, boxes: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The network input ([3, H, W] float32 BGR 0-255, letterboxed, pad 114) and the boxes in it."""
    canvas, ratio = letterbox(image, input_hw)
    return to_tensor_layout(canvas, "yolox"), (boxes * ratio).astype(np.float32)


def to_targets(boxes: np.ndarray, max_labels: int) -> np.ndarray:
    """[max_labels, 5] float32 rows (class, cx, cy, w, h), zero rows after the boxes (upstream's format)."""
    boxes = boxes[:max_labels]
    targets = np.zeros((max_labels, 5), np.float32)
    targets[:len(boxes), 0] = PERSON_CLASS
    targets[:len(boxes), 1:3] = (boxes[:, :2] + boxes[:, 2:]) / 2
    targets[:len(boxes), 3:5] = boxes[:, 2:] - boxes[:, :2]
    return targets


def rescale_batch(batch: dict, size: tuple[int, int]) -> dict:
    """A batch resized to ``size`` (h, w) as upstream's ``preprocess``: bilinear images, targets'
    x (cx, w) and y (cy, h) columns scaled."""
    import torch.nn.functional as F

    images, targets = batch["images"], batch["targets"].clone()
    height, width = images.shape[2:]
    if (height, width) == tuple(size):
        return batch
    images = F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False)
    targets[..., 1::2] *= size[1] / width
    targets[..., 2::2] *= size[0] / height
    return {**batch, "images": images, "targets": targets}


class DetectionCollate:
    """Turns a list of :class:`DetectionItem` into one training batch::

        {"images": float32 [B, 3, H, W] (BGR 0-255), "targets": float32 [B, max_labels, 5]
         (class 0, cx, cy, w, h in input pixels; zero rows pad), "num_boxes": int64 [B]}

    ``mosaic=False`` is upstream's no-aug phase: HSV jitter, flip and letterbox only.
    ``config.multiscale_range > 0``: each batch is then resized to a random size (upstream draws one
    every 10 iterations for all ranks; here each batch draws its own, from its own generator).

    Each batch's draws come from a generator seeded with (``seed``, the batch's items), not from a
    running stream: the batches are the same whichever DataLoader worker builds them, in whatever
    order, and workers never repeat each other's draws. A new seed (the engine's per-epoch one)
    gives new draws for the same items. Items are named by sequence, image id and file name, not
    by their absolute path: the same data set copied elsewhere trains the same.
    """

    def __init__(self, dataset: Sequence[DetectionItem], input_size: tuple[int, int], seed: int, mosaic: bool,
                 config: AugmentConfig | None = None):
        self.dataset = dataset
        self.input_size = check_input_size(input_size)
        self.seed = int(seed)
        self.mosaic = bool(mosaic)
        self.config = config if config is not None else AugmentConfig()
        if self.mosaic and len(dataset) == 0:
            raise InputError("mosaic needs a non-empty training set to draw partner images from")
        # Upstream's mixup draws its partner among images that have boxes.
        self._mixup_pool = [i for i, item in enumerate(dataset) if len(item.boxes)]

    def __call__(self, items: list[DetectionItem]) -> dict:
        import torch

        rng = self.batch_generator(items)
        max_labels = int(self.config.max_labels)
        images = np.empty((len(items), 3, *self.input_size), np.float32)
        targets = np.zeros((len(items), max_labels, 5), np.float32)
        counts = np.zeros(len(items), np.int64)
        for i, item in enumerate(items):
            images[i], boxes = self.sample(item, rng)
            targets[i] = to_targets(boxes, max_labels)
            counts[i] = min(len(boxes), max_labels)
        batch = {"images": torch.from_numpy(images), "targets": torch.from_numpy(targets),
                 "num_boxes": torch.from_numpy(counts)}
        return rescale_batch(batch, self.random_size(rng)) if self.config.multiscale_range else batch

    def random_size(self, rng: np.random.Generator) -> tuple[int, int]:
        """Upstream's random_resize: height (H/32 + k) * 32, k uniform in [-range, range], the width
        keeping the input's aspect ratio, both multiples of 32."""
        height, width = self.input_size
        r = int(self.config.multiscale_range)
        k = int(rng.integers(max(1, height // 32 - r), height // 32 + r + 1))
        return 32 * k, 32 * max(1, int(k * width / height))

    def batch_generator(self, items: Sequence[DetectionItem]) -> np.random.Generator:
        return batch_rng(self.seed, (f"{item.sequence}\0{item.image_id}\0{PurePath(item.image_path).name}"
                                     for item in items))

    def sample(self, item: DetectionItem, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One augmented network input [3, H, W] and its [N, 4] xyxy boxes in input pixels."""
        config = self.config
        if self.mosaic and rng.random() < config.mosaic_prob:
            image, boxes = self._mosaic_mixup(item, rng)
        else:
            image, boxes = read_item(item)
        # Upstream's TrainTransform: runs in both phases.
        if rng.random() < config.hsv_prob:
            image = augment_hsv(image, rng)
        if rng.random() < config.flip_prob:
            image, boxes = hflip(image, boxes)
        chw, boxes = preproc(image, boxes, self.input_size)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        return chw, boxes[sides > config.min_box_side]

    def _mosaic_mixup(self, item: DetectionItem, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        partners = [self.dataset[int(j)] for j in rng.integers(0, len(self.dataset), 3)]
        canvas, boxes = mosaic([read_item(x) for x in [item, *partners]], rng, self.input_size)
        image, boxes = random_affine(canvas, boxes, rng, self.input_size, self.config)
        if len(boxes) and self._mixup_pool and rng.random() < self.config.mixup_prob:
            other = self.dataset[self._mixup_pool[int(rng.integers(0, len(self._mixup_pool)))]]
            image, boxes = mixup(image, boxes, *read_item(other), rng, self.config)
        return image, boxes
