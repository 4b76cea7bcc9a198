"""Keypoint HOTA exactly as the official PoseTrack21 kit computes it (``protocol=kit``).

The kit (anDoer/PoseTrack21 @3e61960, ``eval/posetrack21``: ``datasets/posetrack.py`` and
``metrics/hota_pose.py``) is the source of every published PoseTrack21 pose-tracking number, so
this module reproduces its arithmetic, quirks included, in plain numpy:

- only ``is_labeled`` frames count; ears are dropped (15 joint types); a joint exists where
  x > 0 and y > 0 (a predicted joint's score is never looked at);
- in a frame that lists ignore regions, joints strictly inside one are zeroed, and a person is
  dropped when all 15 joints were inside or none is left with x > 0 or y > 0;
- similarity ``max(0, 1 - d / (0.5001 * head_size))``, head size 0.6 x head-box diagonal;
- each joint type is matched on similarity alone (Hungarian per frame), not on HOTA's alignment;
- a frame with no GT person adds the WHOLE SEQUENCE's predicted-joint count to the false
  positives (and a frame with no prediction the whole sequence's GT-joint count to the misses);
- a sequence's "Total" is the plain mean over the 15 joint types (absent ones score 0), while the
  combined Total pools counts: see ``combine_sequences``.

Results are dicts of arrays like the kit's: float/integer array fields ``[19 alphas, 16]`` (15
joints + Total), float/integer fields ``[16]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from kprtrack.eval.geometry import ignore_regions, points_in_polygons

ALPHAS = np.arange(0.05, 0.99, 0.05)
N_JOINTS = 15
KIT_JOINTS = [j for j in range(17) if j not in (3, 4)]  # the kit deletes both ears
JOINT_NAMES = ["Nose", "Neck", "Head", "LS", "RS", "LE", "RE", "LW", "RW", "LH", "RH", "LK", "RK", "LA", "RA"]
SIMILARITY_SLOPE = -1 / 0.5001  # hota_pose.distance2sim: a distance of 0.5 head sizes still matches

FLOAT_ARRAY_FIELDS = ["HOTA", "DetA", "AssA", "FragA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "RHOTA",
                      "FA-HOTA", "FA-RHOTA"]
INTEGER_ARRAY_FIELDS = ["HOTA_TP", "HOTA_FN", "HOTA_FP"]
FLOAT_FIELDS = ["HOTA(0)", "LocA(0)", "HOTALocA(0)"]
INTEGER_FIELDS = ["HOTA_TP(0)", "HOTA_FN(0)", "HOTA_FP(0)"]
FIELDS = FLOAT_ARRAY_FIELDS + INTEGER_ARRAY_FIELDS + FLOAT_FIELDS + INTEGER_FIELDS
_EPS = np.finfo("float").eps


@dataclass
class KitFrame:
    """One labeled frame after the kit's ignore-region step. Keypoints are [N, 15, 2] (x, y)."""

    gt_ids: np.ndarray
    gt_xy: np.ndarray
    head_sizes: np.ndarray
    pr_ids: np.ndarray
    pr_xy: np.ndarray


def drop_ignored(ids: np.ndarray, xy: np.ndarray, regions: list[np.ndarray], *others: np.ndarray):
    """posetrack.py step 2: zero joints inside a region; drop people wholly inside or left empty."""
    if not len(ids):
        return (ids, xy, *others)
    inside = points_in_polygons(xy.reshape(-1, 2), regions).reshape(xy.shape[:2])
    xy = np.where(inside[..., None], 0.0, xy)
    empty = ((xy[..., 0] <= 0) & (xy[..., 1] <= 0)).all(1)
    keep = ~inside.all(1) & ~empty
    return (ids[keep], xy[keep], *(o[keep] for o in others))


def kit_frames(images: list[dict], gt_people: list, pred_people: list) -> list[KitFrame]:
    """Labeled frames of one sequence as the kit sees them. ``*_people`` are per-image objects with
    ``track_ids``, ``keypoints`` [N, 17, 3] (and ``head_sizes`` for GT), in the GT's image order."""
    frames = []
    for image, gt, pred in zip(images, gt_people, pred_people):
        if not image.get("is_labeled"):
            continue
        gt_ids, gt_xy, heads = gt.track_ids, gt.keypoints[:, KIT_JOINTS, :2].astype(np.float64), gt.head_sizes
        pr_ids, pr_xy = pred.track_ids, pred.keypoints[:, KIT_JOINTS, :2].astype(np.float64)
        if image.get("ignore_regions_x"):  # the kit skips the step only for an image listing no region
            regions = ignore_regions(image)
            pr_ids, pr_xy = drop_ignored(pr_ids, pr_xy, regions)
            gt_ids, gt_xy, heads = drop_ignored(gt_ids, gt_xy, regions, heads)
        frames.append(KitFrame(gt_ids, gt_xy, heads, pr_ids, pr_xy))
    return frames


def _valid(xy: np.ndarray) -> np.ndarray:
    return (xy[..., 0] > 0) & (xy[..., 1] > 0)


def _similarity(frame: KitFrame) -> np.ndarray:
    """[n_gt, n_pred, 15] head-normalised similarity; 0 where either joint is missing."""
    both = _valid(frame.gt_xy)[:, None] & _valid(frame.pr_xy)[None]
    diff = frame.gt_xy[:, None] - frame.pr_xy[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2) / frame.head_sizes[:, None, None]
    return np.where(both, np.maximum(SIMILARITY_SLOPE * dist + 1, 0), 0.0)


def kit_relabel(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Ids to 0..n-1 through the kit's lookup table ``table[unique] = arange(n)``: with a negative id
    numpy's wrap-around makes it share a label with a large id, as in the kit."""
    ids = [np.asarray(i, np.int64).reshape(-1) for i in ids_per_frame]
    unique = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
    if not len(unique) or unique[0] >= 0 or unique[-1] + 1 < -unique[0]:
        return [np.searchsorted(unique, i) for i in ids], len(unique)
    table = np.zeros(unique[-1] + 1, np.int64)
    table[unique] = np.arange(len(unique))
    return [table[i] for i in ids], len(unique)


def add_to_stints(last: np.ndarray, stint: np.ndarray, squares: np.ndarray, gt: np.ndarray, pred: np.ndarray):
    """One frame's matches (distinct ``gt`` ids to ``pred`` ids) into the FragA bookkeeping, in place:
    ``last`` [G] the pred id each gt id was last matched to (-1: never), ``stint`` [G, P] the length of the
    pair's current stint (a run of matches while the gt id's last match is that pred id), ``squares``
    [G, P] the sum of the pair's finished and current stints' lengths squared, which FragA divides."""
    switched = last[gt] != pred
    last[gt[switched]] = pred[switched]
    stint[gt[switched], pred[switched]] = 0
    squares[gt, pred] += 2 * stint[gt, pred] + 1  # (n + 1)^2 - n^2
    stint[gt, pred] += 1


def _empty_result() -> dict:
    shape = (len(ALPHAS), N_JOINTS)
    res = {field: np.zeros(shape) for field in FLOAT_ARRAY_FIELDS + INTEGER_ARRAY_FIELDS}
    res.update({field: 0 for field in FLOAT_FIELDS})
    res.update({field: np.zeros(N_JOINTS, int) for field in INTEGER_FIELDS})
    return res


def eval_sequence(frames: list[KitFrame]) -> dict:
    """hota_pose.HOTAeypoints.eval_sequence on one sequence's labeled frames."""
    res = _empty_result()
    gt_ids, num_gt_ids = kit_relabel([f.gt_ids for f in frames])
    pr_ids, num_pr_ids = kit_relabel([f.pr_ids for f in frames])
    gt_valid = [_valid(f.gt_xy) for f in frames]
    pr_valid = [_valid(f.pr_xy) for f in frames]
    num_gt_joints = sum((v.sum(0) for v in gt_valid), np.zeros(N_JOINTS, int))
    num_pr_joints = sum((v.sum(0) for v in pr_valid), np.zeros(N_JOINTS, int))
    no_predictions, no_truth = not sum(map(len, pr_ids)), not sum(map(len, gt_ids))
    if no_predictions or no_truth:  # everything missed (checked first, as the kit does) or everything false
        field, joints = ("HOTA_FN", num_gt_joints) if no_predictions else ("HOTA_FP", num_pr_joints)
        res[field] = np.broadcast_to(joints, res["HOTA"].shape).astype(float)
        res["LocA"] = np.ones(res["HOTA"].shape)
        return final_fields(res, compute_avg=True)

    n_alpha = len(ALPHAS)
    gt_id_count = np.zeros((num_gt_ids, 1, N_JOINTS))
    pr_id_count = np.zeros((1, num_pr_ids, N_JOINTS))
    matches = np.zeros((n_alpha, num_gt_ids, num_pr_ids, N_JOINTS))
    # Fragments: a (gt, pred) pair's TPs in runs ("stints") while the gt id's last match is that pred id.
    # FragA needs sum over stints of length^2; keep the current stint's length and the running sum.
    last_match = np.full((n_alpha, num_gt_ids, N_JOINTS), -1)
    stint = np.zeros_like(matches)
    stint_squares = np.zeros_like(matches)
    for g, p, gv, pv in zip(gt_ids, pr_ids, gt_valid, pr_valid):
        gt_id_count[g, 0] += gv
        if len(p):
            pr_id_count[0, p] += pv

    for frame, g, p, gv, pv in zip(frames, gt_ids, pr_ids, gt_valid, pr_valid):
        if not len(g):
            res["HOTA_FP"] += num_pr_joints
            continue
        if not len(p):
            res["HOTA_FN"] += num_gt_joints
            continue
        similarity = _similarity(frame)
        gt_joints_t, pr_joints_t = gv.sum(0), pv.sum(0)
        for j in range(N_JOINTS):
            rows, cols = linear_sum_assignment(-similarity[:, :, j])
            sims = similarity[rows, cols, j]
            for a, alpha in enumerate(ALPHAS):
                ok = sims >= alpha - _EPS
                mg, mp, ms = g[rows[ok]], p[cols[ok]], sims[ok]
                res["HOTA_TP"][a, j] += len(mg)
                res["HOTA_FN"][a, j] += gt_joints_t[j] - len(mg)
                res["HOTA_FP"][a, j] += pr_joints_t[j] - len(mg)
                if not len(mg):
                    continue
                res["LocA"][a, j] += ms.sum()
                matches[a, mg, mp, j] += 1
                add_to_stints(last_match[a, :, j], stint[a, :, :, j], stint_squares[a, :, :, j], mg, mp)

    tp = np.maximum(1, res["HOTA_TP"])
    for a in range(n_alpha):
        count = matches[a]
        union = np.maximum(1, gt_id_count + pr_id_count - count)
        res["AssA"][a] = (count * (count / union)).sum((0, 1)) / tp[a]
        res["AssRe"][a] = (count * (count / np.maximum(1, gt_id_count))).sum((0, 1)) / tp[a]
        res["AssPr"][a] = (count * (count / np.maximum(1, pr_id_count))).sum((0, 1)) / tp[a]
        res["FragA"][a] = (stint_squares[a] / union).sum((0, 1)) / tp[a]
    res["LocA"] = np.maximum(1e-10, res["LocA"]) / np.maximum(1e-10, res["HOTA_TP"])
    return final_fields(res, compute_avg=True)


def final_fields(res: dict, compute_avg: bool) -> dict:
    """hota_pose._compute_final_fields; with compute_avg, a 16th 'Total' column: joint mean (floats) or sum."""
    res["DetRe"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FN"])
    res["DetPr"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FP"])
    res["DetA"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FN"] + res["HOTA_FP"])
    res["HOTA"] = np.sqrt(res["DetA"] * res["AssA"])
    res["RHOTA"] = np.sqrt(res["DetRe"] * res["AssA"])
    res["FA-HOTA"] = np.sqrt(res["DetA"] * np.sqrt(res["AssA"] * res["FragA"]))
    res["FA-RHOTA"] = np.sqrt(res["DetRe"] * np.sqrt(res["AssA"] * res["FragA"]))
    res["HOTA(0)"] = res["HOTA"][0]
    res["LocA(0)"] = res["LocA"][0]
    res["HOTALocA(0)"] = res["HOTA(0)"] * res["LocA(0)"]
    for field in INTEGER_FIELDS:
        res[field] = res[field.replace("(0)", "")][0]
    if compute_avg:
        for field in FLOAT_ARRAY_FIELDS:
            res[field] = np.append(res[field], res[field].mean(1, keepdims=True), axis=1)
        for field in INTEGER_ARRAY_FIELDS:
            res[field] = np.append(res[field], res[field].sum(1, keepdims=True), axis=1)
        for field in FLOAT_FIELDS:
            res[field] = np.append(res[field], np.mean(res[field], keepdims=True))
        for field in INTEGER_FIELDS:
            res[field] = np.append(res[field], np.sum(res[field], keepdims=True))
    return res


def combine_sequences(all_res: dict[str, dict]) -> dict:
    """hota_pose.combine_sequences: counts summed, Ass*/FragA/LocA TP-weighted, over all 16 columns
    (so the combined Total is pooled over joints, not a joint mean as within a sequence)."""
    results = list(all_res.values())
    res = {field: sum(r[field] for r in results) for field in INTEGER_FIELDS + INTEGER_ARRAY_FIELDS}
    for field in ("AssRe", "AssPr", "AssA", "FragA"):
        res[field] = sum(r[field] * r["HOTA_TP"] for r in results) / np.maximum(1.0, res["HOTA_TP"])
    located = sum(r["LocA"] * r["HOTA_TP"] for r in results)
    res["LocA"] = np.maximum(1e-10, located) / np.maximum(1e-10, res["HOTA_TP"])
    return final_fields(res, compute_avg=False)


def table(res: dict) -> dict[str, dict[str, float]]:
    """{joint name or 'Total': {field: value}}: array fields averaged over alpha, as the kit prints them
    (as fractions, where the kit prints percent)."""
    out = {}
    for column, name in enumerate(JOINT_NAMES + ["Total"]):
        row = {}
        for field in FLOAT_ARRAY_FIELDS + INTEGER_ARRAY_FIELDS:
            row[field] = float(np.mean(np.asarray(res[field], float)[:, column]))
        for field in FLOAT_FIELDS + INTEGER_FIELDS:
            row[field] = float(np.asarray(res[field], float)[column])
        out[name] = row
    return out
