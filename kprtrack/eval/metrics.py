"""Bridge to the ``trackeval`` package: its metric classes do every computation.

We only build trackeval's per-sequence ``data`` dict (ids, similarities, counts) and summarise
its results into plain floats. Array-valued HOTA fields (one value per alpha) are summarised
by their mean over alpha, exactly as trackeval's own tables do.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

ALPHAS = [round(float(a), 2) for a in np.arange(0.05, 0.99, 0.05)]


def box_metrics():
    from trackeval.metrics import CLEAR, HOTA, Count, Identity

    quiet = {"PRINT_CONFIG": False}
    return [HOTA(), CLEAR(quiet), Identity(quiet), Count()]


def hota_metric():
    from trackeval.metrics import HOTA

    return HOTA()


def relabel(ids_per_frame: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map arbitrary ids to 0..n-1 in sorted order (order-preserving, so results do not change)."""
    all_ids = np.concatenate([np.asarray(i, np.int64).reshape(-1) for i in ids_per_frame]) \
        if len(ids_per_frame) else np.zeros(0, np.int64)
    unique = np.unique(all_ids)
    return [np.searchsorted(unique, np.asarray(i, np.int64).reshape(-1)) for i in ids_per_frame], len(unique)


def sequence_data(name: str, gt_ids: Sequence[np.ndarray], tracker_ids: Sequence[np.ndarray],
                  similarities: Sequence[np.ndarray]) -> dict:
    """trackeval's preprocessed-sequence dict from per-frame ids and [n_gt, n_tracker] similarities."""
    gt, num_gt_ids = relabel(gt_ids)
    tracker, num_tracker_ids = relabel(tracker_ids)
    sims = [np.asarray(s, float).reshape(len(g), len(t)) for s, g, t in zip(similarities, gt, tracker)]
    return {
        "seq": name, "num_timesteps": len(gt), "gt_ids": gt, "tracker_ids": tracker, "similarity_scores": sims,
        "num_gt_ids": num_gt_ids, "num_tracker_ids": num_tracker_ids,
        "num_gt_dets": int(sum(len(g) for g in gt)), "num_tracker_dets": int(sum(len(t) for t in tracker)),
    }


def evaluate_sequences(datas: dict[str, dict], make_metrics=box_metrics) -> tuple[dict, dict]:
    """Raw trackeval results: ({seq: {metric: res}}, {metric: combined res})."""
    metrics = make_metrics()
    per_seq = {seq: {m.get_name(): m.eval_sequence(data) for m in metrics} for seq, data in datas.items()}
    combined = {}
    for m in metrics:
        name = m.get_name()
        combined[name] = m.combine_sequences({seq: res[name] for seq, res in per_seq.items()}) if per_seq else None
    return per_seq, combined


def summarise(results: dict) -> dict:
    """{metric: res} -> flat {field: float} (alpha arrays averaged) and the HOTA alpha curves."""
    flat, curves = {}, {}
    for res in results.values():
        if res is None:
            continue
        for field, value in res.items():
            array = np.asarray(value, float)
            if array.ndim == 0:
                flat[field] = float(array)
            else:
                flat[field] = float(array.mean())
                curves[field] = [float(v) for v in array]
    return {"scalars": flat, "alpha": curves}


def section(per_seq_raw: dict, combined_raw: dict | None) -> dict:
    """Raw trackeval results -> {per_sequence, combined, alpha} of plain floats, as in metrics.json."""
    per_seq = {seq: summarise(res) for seq, res in per_seq_raw.items()}
    combined = summarise(combined_raw or {})
    return {
        "per_sequence": {seq: s["scalars"] for seq, s in per_seq.items()},
        "combined": combined["scalars"],
        "alpha": {"combined": combined["alpha"], "per_sequence": {seq: s["alpha"] for seq, s in per_seq.items()}},
    }


def box_iou_xyxy(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU matrix through trackeval's own box IoU (so box similarities match official values)."""
    from trackeval.datasets._base_dataset import _BaseDataset

    gt = np.asarray(gt, float).reshape(-1, 4)
    pred = np.asarray(pred, float).reshape(-1, 4)
    if not len(gt) or not len(pred):
        return np.zeros((len(gt), len(pred)))
    return _BaseDataset._calculate_box_ious(gt, pred, box_format="x0y0x1y1")
