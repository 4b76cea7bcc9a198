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
    cost = np.asarray(cost, np.float64)  # float32 costs would be compared with max_cost in float32
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return np.zeros((0, 2), np.int64), np.arange(n_rows), np.arange(n_cols)
    certain = _certify(cost, max_cost)  # the tracker's usual case, a few vector operations
    if certain is not None:
        rows, cols, free_rows, free_cols = certain
    else:
        rows, cols = _lapjv(cost, max_cost)
        row_free = np.ones(n_rows, bool)
        row_free[rows] = False
        col_free = np.ones(n_cols, bool)
        col_free[cols] = False
        free_rows, free_cols = np.flatnonzero(row_free), np.flatnonzero(col_free)
    matches = np.empty((len(rows), 2), np.int64)
    matches[:, 0], matches[:, 1] = rows, cols
    return matches, free_rows, free_cols


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
    the usual case in tracking (each person is clearly closest to its own tracklet), and it costs a
    few vector operations instead of a lapjv call; any doubt falls back to lapjv.
    """
    certain = _certify(np.asarray(cost, np.float64), max_cost)
    return None if certain is None else certain[:2]


# Up to this many entries the certificate runs in plain Python: the second and third rounds are
# usually a couple of tracks against a couple of detections, where ~20 numpy calls cost more than
# the arithmetic.
_SMALL = 16


def _certify(cost: np.ndarray, max_cost: float):
    """_mutual_best on a non-empty float64 matrix that may hold inf/NaN (values above L act alike
    whatever they are, so no clamped copy is needed); also returns the free rows and columns.

    Written as few whole-matrix operations (each numpy call costs about a microsecond at tracking
    sizes): mark every cheap row's minimum and every cheap column's minimum; when the two marks
    coincide and there is exactly one per cheap row and per cheap column, the marked pairs are
    mutual bests with strict minima covering every cheap column: the certificate above (it also asks
    for strict column minima, which only sends a few more tie cases to lapjv).
    """
    if cost.size <= _SMALL:
        return _certify_small(cost, max_cost)
    row_min = cost.min(axis=1)
    col_min = cost.min(axis=0)
    # (count_nonzero is far cheaper than .any() on small arrays.)
    if (np.count_nonzero(row_min == max_cost) or np.count_nonzero(col_min == max_cost)
            or np.count_nonzero(row_min != row_min)):
        return None  # exactly at the limit, or a NaN somewhere (NaN is some row's minimum)
    cheap_row = row_min < max_cost
    cheap_col = col_min < max_cost
    # A non-cheap row marks nothing: its minimum is above L, so no entry is <= L.
    row_marks = cost <= np.minimum(row_min, max_cost)[:, None]
    n_rows = np.count_nonzero(cheap_row)
    if np.count_nonzero(row_marks) != n_rows or np.count_nonzero(cheap_col) != n_rows:
        return None  # a tied row minimum, or cheap columns and rows do not pair up
    if np.count_nonzero(row_marks != (cost <= np.minimum(col_min, max_cost))):
        return None  # some row's best is not its column's best
    rows, cols = row_marks.nonzero()  # (methods skip numpy's Python-level wrappers)
    return rows, cols, (~cheap_row).nonzero()[0], (~cheap_col).nonzero()[0]


def _certify_small(cost: np.ndarray, max_cost: float):
    """_certify on a small matrix, same decisions, in plain Python."""
    table = cost.tolist()
    if any(value != value for row in table for value in row):
        return None  # NaN: lapjv decides
    row_min = [min(row) for row in table]
    col_min = [min(column) for column in zip(*table)]
    if max_cost in row_min or max_cost in col_min:
        return None  # exactly at the limit
    rows, cols = [], []
    for i, row in enumerate(table):
        ceiling = min(row_min[i], max_cost)
        for j, value in enumerate(row):
            if value <= ceiling:
                rows.append(i)
                cols.append(j)
    cheap_rows = [i for i, value in enumerate(row_min) if value < max_cost]
    cheap_cols = [j for j, value in enumerate(col_min) if value < max_cost]
    if len(rows) != len(cheap_rows) or len(cheap_cols) != len(cheap_rows):
        return None  # a tied row minimum, or cheap columns and rows do not pair up
    column_marks = sum(value <= min(col_min[j], max_cost) for row in table for j, value in enumerate(row))
    if column_marks != len(rows) or any(table[i][j] > col_min[j] for i, j in zip(rows, cols)):
        return None  # some row's best is not its column's best
    free_rows = [i for i, value in enumerate(row_min) if not value < max_cost]
    free_cols = [j for j, value in enumerate(col_min) if not value < max_cost]
    as_index = np.array
    return (as_index(rows, np.int64), as_index(cols, np.int64),
            as_index(free_rows, np.int64), as_index(free_cols, np.int64))


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
