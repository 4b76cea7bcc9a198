"""Assignment with a cost ceiling, and box overlap, for the association rounds."""
from __future__ import annotations

import lap
import numpy as np

__all__ = ["assign", "iou_matrix"]


def assign(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching keeping only pairs with cost <= max_cost.

    Returns (matches [M, 2] as (row, col), unmatched rows, unmatched cols). Infinite/NaN entries
    mean "forbidden". The matching is lapjv's with ``cost_limit=max_cost``: it minimises the matched
    costs plus max_cost / 2 per unmatched row and column.
    """
    cost = np.asarray(cost, np.float64)  # float32 costs would be compared with max_cost in float32
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return np.zeros((0, 2), np.int64), np.arange(n_rows), np.arange(n_cols)
    matched = _mutual_best(cost, max_cost)  # the tracker's usual case, in a few vector operations
    rows, cols = _lapjv(cost, max_cost) if matched is None else matched
    matches = np.empty((len(rows), 2), np.int64)
    matches[:, 0], matches[:, 1] = rows, cols
    row_free = np.ones(n_rows, bool)
    row_free[rows] = False
    col_free = np.ones(n_cols, bool)
    col_free[cols] = False
    return matches, row_free.nonzero()[0], col_free.nonzero()[0]


def _lapjv(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    # lapjv needs finite numbers; anything above the ceiling is equivalent to forbidden.
    finite = np.where(np.isfinite(cost), cost, max_cost + 1.0)
    np.minimum(finite, max_cost + 1.0, out=finite)
    _, row_to_col, _ = lap.lapjv(finite, extend_cost=True, cost_limit=max_cost)
    rows = np.nonzero(row_to_col >= 0)[0]
    cols = row_to_col[rows]
    keep = finite[rows, cols] <= max_cost  # lapjv's cost_limit is soft at the boundary
    return rows[keep], cols[keep]


def _mutual_best(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The optimal matching (rows, cols) when it can be certified cheaply, else None (then lapjv decides).

    lapjv with a cost limit L minimises the matched costs plus L/2 per unmatched row and column.
    Charging half of each matched cost to its row and half to its column, every row pays at least
    min(row minimum, L) / 2 and every column min(column minimum, L) / 2. Matching each row whose
    minimum is below L to its argmin column reaches that bound when every such pair is a mutual best
    and every column whose minimum is below L is covered: the matching is then optimal, and it is
    the only optimum when every row's minimum is strict (no ties) and none equals L exactly. This is
    the usual case in tracking (each person is clearly closest to its own tracklet).

    In whole-matrix operations on a non-empty float64 matrix that may hold inf/NaN (values above L
    act alike whatever they are): mark every cheap row's minimum and every cheap column's minimum;
    when the two marks coincide and there is exactly one per cheap row and per cheap column, the
    marked pairs are mutual bests with strict minima covering every cheap column: the certificate
    above (it also asks for strict column minima, which only sends a few more tie cases to lapjv).
    """
    row_min = cost.min(axis=1)  # NaN anywhere makes its row's minimum NaN
    col_min = cost.min(axis=0)
    if np.count_nonzero(np.isnan(row_min)):
        return None  # a NaN somewhere: lapjv decides
    if np.count_nonzero(row_min == max_cost) or np.count_nonzero(col_min == max_cost):
        return None  # a minimum exactly at the limit: matching that pair or not costs the same
    # A row whose minimum is above L marks nothing: no entry is <= L.
    row_marks = cost <= np.minimum(row_min, max_cost)[:, None]
    n_cheap_rows = np.count_nonzero(row_min < max_cost)
    if np.count_nonzero(row_marks) != n_cheap_rows or np.count_nonzero(col_min < max_cost) != n_cheap_rows:
        return None  # a tied row minimum, or cheap columns and rows do not pair up
    if np.count_nonzero(row_marks != (cost <= np.minimum(col_min, max_cost))):
        return None  # some row's best is not its column's best
    return row_marks.nonzero()


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU [A, B] of x1y1x2y2 boxes; degenerate boxes have IoU 0."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    # (np.maximum(x, 0) rather than np.clip: the same values without clip's Python-level wrapper)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    width = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0.0)
    height = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0.0)
    inter = width * height
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
