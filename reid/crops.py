"""Batched person crops for ReID models: cut each box out of the frame, resize, normalise.

A box is clipped to the frame first; a box with no pixel left inside the frame is reported
as invalid (``valid`` False) rather than silently padded.
"""
from __future__ import annotations

import cv2
import numpy as np

from kprtrack.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the frame, and which still cover at least one pixel."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    finite = np.isfinite(b).all(axis=1)
    valid = finite & (np.floor(b[:, 2]) - np.floor(b[:, 0]) >= 1) & (np.floor(b[:, 3]) - np.floor(b[:, 1]) >= 1)
    return b, valid


def crop_boxes(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (crops [N, H, W, 3] uint8 same colour order as image, valid [N] bool, clipped boxes [N, 4]).

    Invalid boxes give black crops; callers must not use their embeddings as real appearance.
    """
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an HxWx3 image, got shape {None if image is None else image.shape}")
    h, w = size
    clipped, valid = clip_boxes(boxes, image.shape[1], image.shape[0])
    crops = np.zeros((len(clipped), h, w, 3), np.uint8)
    for i in np.flatnonzero(valid):
        x1, y1, x2, y2 = clipped[i]
        patch = image[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
        crops[i] = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
    return crops, valid, clipped


def resize_images(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Resize already-cropped images (e.g. data-set crops) to [N, H, W, 3] uint8."""
    h, w = size
    out = np.zeros((len(images), h, w, 3), np.uint8)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
            raise InputError(f"crop {i}: expected a non-empty HxWx3 image, got shape {img.shape}")
        out[i] = cv2.resize(img.astype(np.uint8, copy=False), (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def normalise(crops: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD, to_rgb: bool = True,
              scale: float = 1 / 255.0, layout: str = "NCHW") -> np.ndarray:
    """uint8 BGR crops [N, H, W, 3] -> float32 model input ((x * scale - mean) / std)."""
    x = crops[..., ::-1] if to_rgb else crops
    x = (x.astype(np.float32) * scale - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    elif layout != "NHWC":
        raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
    return np.ascontiguousarray(x, dtype=np.float32)
