"""Assignment with a cost ceiling, and box overlap, for the association rounds."""
from __future__ import annotations

import lap
import numpy as np

__all__ = ["assign", "iou_matrix"]


def assign(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching keeping only pairs with cost <= max_cost.

    Returns (matches [M, 2] as (row, col), unmatched rows, unmatched cols). Infinite/NaN entries
    mean "forbidden".
    """
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return np.zeros((0, 2), np.int64), np.arange(n_rows), np.arange(n_cols)
    # lapjv needs finite numbers; anything above the ceiling is equivalent to forbidden.
    finite = np.where(np.isfinite(cost), cost, max_cost + 1.0).astype(np.float64)
    finite = np.minimum(finite, max_cost + 1.0)
    _, row_to_col, _ = lap.lapjv(finite, extend_cost=True, cost_limit=max_cost)
    rows = np.flatnonzero(row_to_col >= 0)
    cols = row_to_col[rows]
    keep = finite[rows, cols] <= max_cost  # lapjv's cost_limit is soft at the boundary
    rows, cols = rows[keep], cols[keep]
    row_free = np.ones(n_rows, bool)
    row_free[rows] = False
    col_free = np.ones(n_cols, bool)
    col_free[cols] = False
    matches = np.empty((len(rows), 2), np.int64)
    matches[:, 0], matches[:, 1] = rows, cols
    return matches, np.flatnonzero(row_free), np.flatnonzero(col_free)


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU [A, B] of x1y1x2y2 boxes; degenerate boxes have IoU 0."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
