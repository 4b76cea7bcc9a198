"""Small box helpers shared by stages (numpy, x1 y1 x2 y2)."""
from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, 4] x [B, 4] -> [A, B] intersection over union."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def clip_boxes(boxes: np.ndarray, width: int | None, height: int | None) -> np.ndarray:
    if width is None or height is None:
        return boxes
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out


def frame_rng(seed: int, sequence: str, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, sequence, frame), so a frame's noise is the same
    whatever ran before it (resumed runs and caches reproduce uninterrupted ones)."""
    key = [seed, index] + list(sequence.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(key))
