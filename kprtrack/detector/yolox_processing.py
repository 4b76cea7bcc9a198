"""YOLOX pre- and post-processing shared by the PyTorch and the ONNX Runtime backends.

Pre: letterbox (resize keeping aspect ratio into the top-left corner, pad 114), BGR 0-255, no
mean/std (official YOLOX >= 0.1.1). ByteTrack's MOT detectors were trained with RGB / 255 and
ImageNet mean/std instead: ``preprocess="bytetrack"``.
Post: grid/stride decode, score = objectness x person-class probability, keep down to a low
threshold (the tracker's second round needs the weak boxes), NMS, map back to the frame, clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from kprtrack.detector.yolox_arch import STRIDES
from kprtrack.errors import InputError
from kprtrack.nms import nms
from kprtrack.record import Detections, Frame

PAD_VALUE = 114
PREPROCESS_MODES = ("yolox", "bytetrack")
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
_MAX_LOG_WH = 20.0  # exp() guard for untrained weights; real boxes are far below this


def check_input_size(input_size: Sequence[int], where: str = "input_size") -> tuple[int, int]:
    """``(height, width)``, both positive multiples of the largest stride (32)."""
    size = tuple(int(v) for v in input_size) if not isinstance(input_size, int) else (input_size,) * 2
    if len(size) != 2 or any(v <= 0 or v % STRIDES[-1] for v in size):
        raise InputError(f"{where} must be [height, width], positive multiples of {STRIDES[-1]}; "
                         f"got {list(size)}")
    return size  # type: ignore[return-value]


def num_anchors(input_hw: tuple[int, int]) -> int:
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in STRIDES)


def letterbox(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """``[H, W, 3]`` uint8 canvas with the resized image top-left, and the scale ratio."""
    height, width = image.shape[:2]
    ratio = min(input_hw[0] / height, input_hw[1] / width)
    new_w, new_h = int(width * ratio), int(height * ratio)
    canvas = np.full((input_hw[0], input_hw[1], 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio


def to_tensor_layout(canvas: np.ndarray, mode: str) -> np.ndarray:
    """HWC uint8 BGR canvas -> CHW float32 network input."""
    chw = canvas.transpose(2, 0, 1).astype(np.float32)
    if mode == "bytetrack":
        chw = (chw[::-1] / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
    return np.ascontiguousarray(chw, dtype=np.float32)


def frame_image(frame: Frame) -> np.ndarray:
    image = frame.image
    where = frame.file_name or f"{frame.sequence} frame {frame.index}"
    if image is None:
        raise InputError("frame has no decoded image", where)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise InputError(f"expected an HxWx3 uint8 BGR image, got shape {image.shape} {image.dtype}", where)
    return image


def preprocess(images: Sequence[np.ndarray], input_hw: tuple[int, int], mode: str = "yolox"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``[B, 3, H, W]`` float32 and the per-image ratios ``[B]``."""
    if mode not in PREPROCESS_MODES:
        raise InputError(f"preprocess must be one of {PREPROCESS_MODES}, got {mode!r}")
    batch = np.empty((len(images), 3, *input_hw), np.float32)
    ratios = np.empty(len(images), np.float64)
    for i, image in enumerate(images):
        canvas, ratios[i] = letterbox(image, input_hw)
        batch[i] = to_tensor_layout(canvas, mode)
    return batch, ratios


def decode(raw: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Raw rows ``[B, A, 5 + C]`` -> boxes as (cx, cy, w, h) in input pixels, scores untouched."""
    grids, strides = [], []
    for stride in STRIDES:
        h, w = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        grids.append(np.stack((xs, ys), -1).reshape(-1, 2))
        strides.append(np.full((h * w, 1), stride))
    grid = np.concatenate(grids).astype(np.float32)
    stride = np.concatenate(strides).astype(np.float32)
    out = raw.astype(np.float32, copy=True)
    out[..., :2] = (out[..., :2] + grid) * stride
    out[..., 2:4] = np.exp(np.minimum(out[..., 2:4], _MAX_LOG_WH)) * stride
    return out


@dataclass(frozen=True)
class PostprocessConfig:
    person_class: int = 0
    score_thresh: float = 0.1
    nms_thresh: float = 0.45
    # Optional pre-NMS cap. None (the default) as upstream's postprocess: a cap changes which boxes
    # survive once more than that many anchors pass the score threshold.
    max_candidates: int | None = None
    max_detections: int = 300


def postprocess(decoded: np.ndarray, ratio: float, frame_hw: tuple[int, int],
                cfg: PostprocessConfig) -> Detections:
    """One image's decoded rows ``[A, 5 + C]`` -> person ``Detections`` in frame pixels."""
    scores = decoded[:, 4] * decoded[:, 5 + cfg.person_class]
    # As YOLOX's postprocess (and TrackLab's YOLOX wrapper): a box belongs to its best class only,
    # so a box that is more likely a bicycle than a person is no person box.
    is_person = decoded[:, 5:].argmax(axis=1) == cfg.person_class
    candidates = np.flatnonzero((scores >= cfg.score_thresh) & is_person)
    if cfg.max_candidates is not None and candidates.size > cfg.max_candidates:
        top = np.argpartition(-scores[candidates], cfg.max_candidates - 1)[:cfg.max_candidates]
        candidates = candidates[top]
    cx, cy, w, h = (decoded[candidates, i].astype(np.float64) for i in range(4))
    boxes = np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1) / ratio
    scores = scores[candidates]
    keep = nms(boxes, scores, cfg.nms_thresh)[:cfg.max_detections]
    boxes, scores = boxes[keep], scores[keep]
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, frame_hw[1])
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, frame_hw[0])
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Detections(boxes=boxes[visible].astype(np.float32), scores=scores[visible].astype(np.float32))
