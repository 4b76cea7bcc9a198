"""MOTA, IDF1 and the other motchallenge metrics exactly as the PoseTrack21 kit's ``eval/mot/evaluate_mot.py``.

That script drives a py-motmetrics 1.2 fork whose ``MOTAccumulator.update`` takes ``ignore_candidates``:
the column indices of predictions whose box has IoU > 0.1 (stored as float32) with an ignore region of
the image, whether matched or not. The fork then (a) never reports an ignore candidate as a false
positive, and (b) drops the RAW event of a candidate that had no finite distance to any object, so it
vanishes from the identity (IDF1) counts too; a candidate that overlapped some object with IoU >= 0.5
keeps its RAW events (it still counts as a hypothesis for IDP/IDFP) even when left unmatched. Matching
itself is unchanged (candidates can be matched). Here the unmodified ``motmetrics`` package's
accumulator is fed the same frames, and exactly those events are removed from its event table before
the metrics are computed with the package's own ``compute_many`` (the fork's metrics are the package's).

What the script reads, reproduced: GT rows with conf (7th column) == 1 only, boxes truncated to
integers (``int(float(v))``: x, y, w, h); prediction rows as ``x - 1, y - 1`` with corners
``x - 1 + w - 1`` (it assumes 1-based MOT boxes, so every predicted box shrinks by one pixel);
predictions at frame f belong to image f - 1; track order = first appearance in the file; IoU distance
``1 - IoU`` with pairs over 0.5 unpairable; the ``lap`` solver.
"""
from __future__ import annotations

import numpy as np

from kprtrack.eval.kit_boxes import GEOS_MOTA, KitBoxTruth, boxes_in_regions

METRICS = ["idf1", "idp", "idr", "recall", "precision", "num_unique_objects", "mostly_tracked",
           "partially_tracked", "mostly_lost", "num_false_positives", "num_misses", "num_switches",
           "num_fragmentations", "mota", "motp", "num_transfer", "num_ascend", "num_migrate", "num_matches",
           "num_objects"]


def _iou_distance(gt_xywh: np.ndarray, pr_xywh: np.ndarray) -> np.ndarray:
    """The fork's ``distances.iou_matrix(..., max_iou=0.5)``, same float operations."""
    if not gt_xywh.size or not pr_xywh.size:
        return np.empty((len(gt_xywh), len(pr_xywh)))
    a, b = gt_xywh[:, None].astype(np.float64), pr_xywh[None, :].astype(np.float64)
    a_min, a_max = a[..., :2], a[..., :2] + a[..., 2:]
    b_min, b_max = b[..., :2], b[..., :2] + b[..., 2:]
    i_vol = np.prod(np.maximum(np.minimum(a_max, b_max) - np.maximum(a_min, b_min), 0), axis=-1)
    a_vol = np.prod(np.maximum(a_max - a_min, 0), axis=-1)
    b_vol = np.prod(np.maximum(b_max - b_min, 0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(i_vol == 0, 0.0, np.true_divide(i_vol, a_vol + b_vol - i_vol))
    dist = 1 - iou
    return np.where(dist > 0.5, np.nan, dist)


def _ground_truth(truth: KitBoxTruth) -> list[tuple[list[int], np.ndarray]]:
    """Per image: (object ids in first-seen order, [N, 4] float32 x, y, w, h) as pt_sequence.py reads gt.txt."""
    frames: list[dict[int, np.ndarray]] = [{} for _ in range(truth.num_frames)]
    for row in truth.rows:
        if row[6] != 1:
            continue
        frame = int(row[0])
        if not 1 <= frame <= truth.num_frames:
            continue  # (the script would fail on a frame no image_info entry has)
        x1, y1 = np.trunc(row[2]), np.trunc(row[3])
        corners = np.array([x1, y1, x1 + np.trunc(row[4]), y1 + np.trunc(row[5])], np.float32)
        frames[frame - 1][int(row[1])] = corners
    out = []
    for boxes in frames:
        ids = list(boxes)
        xyxy = np.stack([boxes[i] for i in ids]) if ids else np.zeros((0, 4), np.float32)
        out.append((ids, np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)))
    return out


def _predictions(pred_rows: np.ndarray | None) -> dict[int, dict[int, list[float]]]:
    """pt_sequence.load_results: {track id - 1: {frame - 1: [x1, y1, x2, y2]}} in first-seen order."""
    results: dict[int, dict[int, list[float]]] = {}
    for row in (np.zeros((0, 6)) if pred_rows is None else np.asarray(pred_rows, np.float64)):
        x1, y1 = float(row[2]) - 1, float(row[3]) - 1
        results.setdefault(int(row[1]) - 1, {})[int(row[0]) - 1] = [x1, y1, float(row[4]) - 1 + x1,
                                                                     float(row[5]) - 1 + y1]
    return results


def sequence_events(truth: KitBoxTruth, pred_rows: np.ndarray | None, use_ignore_regions: bool = True):
    """The event table (pandas DataFrame) the fork's accumulator ends up with for one sequence."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    results = _predictions(pred_rows)
    ignored: set[tuple[int, int]] = set()
    with mm.lap.set_default_solver("lap"):
        for t, (gt_ids, gt_xywh) in enumerate(_ground_truth(truth)):
            track_ids = [track for track, frames in results.items() if t in frames]
            corners = np.array([results[track][t] for track in track_ids], np.float64).reshape(-1, 4)
            pr_xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], 1)
            frame = acc.update(gt_ids, track_ids, _iou_distance(gt_xywh, pr_xywh))
            if use_ignore_regions and track_ids:
                hit = boxes_in_regions([r for r in truth.regions(t) if len(r)], corners, float32=True,
                                       geos=GEOS_MOTA)
                ignored.update((frame, track_ids[j]) for j in np.flatnonzero(hit))
    events = acc.events
    if not ignored:
        return events
    frames = events.index.get_level_values(0)
    key = list(zip(frames, events["HId"]))
    in_set = np.array([(f, h) in ignored if h == h else False for f, h in key], bool)
    drop = in_set & ((events["Type"] == "FP") | ((events["Type"] == "RAW") & events["OId"].isna())).to_numpy()
    return events[~drop]


def clear_identity_kit(truths: dict[str, KitBoxTruth], predictions: dict[str, np.ndarray | None],
                       use_ignore_regions: bool = True) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """({sequence: metrics}, overall metrics) as evaluate_mot.py computes them (``--use_ignore_regions``
    by default). Metric names are motmetrics' (``METRICS``: mota, idf1, idp, idr, num_switches, ...),
    values are fractions and counts, not the percent strings the script prints."""
    import motmetrics as mm

    names = sorted(truths)
    events = [sequence_events(truths[n], predictions.get(n), use_ignore_regions) for n in names]
    with mm.lap.set_default_solver("lap"):
        summary = mm.metrics.create().compute_many(events, metrics=METRICS, names=names, generate_overall=True)
    table = {name: {m: float(summary.loc[name, m]) for m in METRICS} for name in names}
    return table, {m: float(summary.loc["OVERALL", m]) for m in METRICS}
