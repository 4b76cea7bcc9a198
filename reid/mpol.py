"""Multi-Person Occlusion Level (KPR supplementary, eq. 3).

For a crop i: N_i = number of OTHER people's visible keypoints that fall inside i's box
(negative keypoints), P_i = number of i's own visible keypoints (positive keypoints).
MPOL_i = ((N_i - P_i) - min_j (N_j - P_j)) / (max_j (N_j - P_j) - min_j (N_j - P_j)) over a set
(the query set in the paper). The raw score N - P orders crops exactly as MPOL does, so it is
what picks the "most occluded" crops before any set exists to normalise over.
"""
from __future__ import annotations

import numpy as np


def keypoints_inside(keypoints: np.ndarray, box: np.ndarray) -> np.ndarray:
    """[M, 17] bool: visible keypoints (score > 0) of M people inside one x1y1x2y2 box."""
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, keypoints.shape[-2], 3)
    x, y, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    x1, y1, x2, y2 = np.asarray(box, np.float32)
    return (v > 0) & (x >= x1) & (x < x2) & (y >= y1) & (y < y2)


def occlusion_counts(boxes: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) per person of ONE image: negatives inside its box, its own visible keypoints."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    keypoints = np.asarray(keypoints, np.float32).reshape(len(boxes), -1, 3)
    positives = (keypoints[..., 2] > 0).sum(axis=1)
    negatives = np.zeros(len(boxes), np.int64)
    for i, box in enumerate(boxes):
        inside = keypoints_inside(keypoints, box)
        inside[i] = False  # a person's own keypoints are positives, never negatives
        negatives[i] = inside.sum()
    return negatives.astype(np.int64), positives.astype(np.int64)


def mpol(negatives: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Eq. 3 over the given set; all zeros when every crop has the same N - P (no spread)."""
    score = np.asarray(negatives, np.float64) - np.asarray(positives, np.float64)
    if score.size == 0:
        return score
    low, high = score.min(), score.max()
    if high == low:
        return np.zeros_like(score)
    return (score - low) / (high - low)


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value for bins [e0, e1), [e1, e2), ..., [e_{n-1}, e_n] (last one closed)."""
    edges = np.asarray(edges, np.float64)
    index = np.searchsorted(edges, np.asarray(values, np.float64), side="right") - 1
    return np.clip(index, 0, len(edges) - 2)
