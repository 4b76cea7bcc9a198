"""Ignore-region geometry without shapely: point-in-polygon and polygon/box overlap."""
from __future__ import annotations

import numpy as np


def ignore_regions(image: dict) -> list[np.ndarray]:
    """An image entry's ignore regions as the PoseTrack21 kit builds them: float64 [M, 2] polygons from
    ``ignore_regions_x/y`` zipped region by region (a flat list of numbers is one region)."""
    xs, ys = image.get("ignore_regions_x") or [], image.get("ignore_regions_y") or []
    if not len(xs) or not len(ys):
        return []
    if not isinstance(xs[0], list):
        xs, ys = [xs], [ys]
    return [np.array([[float(x), float(y)] for x, y in zip(rx, ry)], np.float64).reshape(-1, 2)
            for rx, ry in zip(xs, ys)]


def points_in_polygons(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """[P] bool: point strictly inside any polygon (boundary excluded, like shapely's ``contains``)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    inside = np.zeros(len(points), bool)
    for polygon in polygons:
        polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
        if len(polygon) < 3 or not len(points):
            continue
        # Only points within the polygon's bounding box need the exact test.
        candidates = np.flatnonzero(~inside & np.all((points > polygon.min(0)) & (points < polygon.max(0)), axis=1))
        inside[candidates] = points_strictly_inside(points[candidates], polygon)
    return inside


def polygon_area(polygon: np.ndarray) -> float:
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_polygon_to_box(polygon: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of any simple polygon by an axis-aligned box (x1, y1, x2, y2)."""
    out = np.asarray(polygon, np.float64).reshape(-1, 2)
    x1, y1, x2, y2 = (float(v) for v in box)
    # (axis, bound, keep-if-greater)
    for axis, bound, keep_greater in ((0, x1, True), (0, x2, False), (1, y1, True), (1, y2, False)):
        if not len(out):
            break
        kept = []
        for k in range(len(out)):
            current, previous = out[k], out[k - 1]
            cur_in = current[axis] >= bound if keep_greater else current[axis] <= bound
            prev_in = previous[axis] >= bound if keep_greater else previous[axis] <= bound
            if cur_in != prev_in:
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                kept.append(previous + t * (current - previous))
            if cur_in:
                kept.append(current)
        out = np.asarray(kept, np.float64).reshape(-1, 2)
    return out


def box_region_overlaps(box: np.ndarray, polygons: list[np.ndarray]) -> tuple[float, float]:
    """(largest IoU with one region, largest fraction of the box covered by one region)."""
    box = np.asarray(box, np.float64)
    box_area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    best_iou = best_cover = 0.0
    for polygon in polygons:
        polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
        if len(polygon) < 3 or box_area <= 0:
            continue
        inter = polygon_area(clip_polygon_to_box(polygon, box))
        union = polygon_area(polygon) + box_area - inter
        best_iou = max(best_iou, inter / union if union > 0 else 0.0)
        best_cover = max(best_cover, inter / box_area)
    return best_iou, best_cover


def points_strictly_inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """[P] bool: inside one polygon by the even-odd rule, boundary excluded, in float64.

    This is what GEOS answers for ``Polygon(...).contains(Point)`` (the PoseTrack21 kit's ignore
    test), self-intersecting polygons included; degenerate polygons contain nothing."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
    if len(polygon) < 3 or not len(points):
        return np.zeros(len(points), bool)
    x, y = points[:, :1], points[:, 1:]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    on_edge = ((cross == 0) & (x >= np.minimum(x1, x2)) & (x <= np.maximum(x1, x2))
               & (y >= np.minimum(y1, y2)) & (y <= np.maximum(y1, y2))).any(1)
    straddles = (y1 > y) != (y2 > y)
    # Left of the edge's crossing with the point's row <=> the orientation test says so (no division).
    left = np.where(y2 > y1, cross > 0, cross < 0)
    crossings = (straddles & left).sum(1)
    return (crossings % 2 == 1) & ~on_edge
