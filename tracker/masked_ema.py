"""Visibility-masked moving average of tracklet part features (TrackLab bpbreid_strong_sort rule).

A part seen in both the tracklet and the detection is blended, a part seen only in the detection is
taken from it, a part seen only in the tracklet (e.g. legs hidden behind someone) keeps the
tracklet's feature, so occlusions do not overwrite what was learnt about a hidden part.
"""
from __future__ import annotations

import numpy as np

__all__ = ["masked_ema", "masked_ema_inplace"]


def masked_ema_inplace(
    track_feats: np.ndarray,
    track_vis: np.ndarray,
    rows: np.ndarray,
    det_feats: np.ndarray,
    det_vis: np.ndarray,
    det_rows: np.ndarray,
    alpha: float = 0.9,
    visible_threshold: float = 0.5,
    track_sq: np.ndarray | None = None,
    det_sq: np.ndarray | None = None,
    det_scale: np.ndarray | None = None,
    pair_dots: np.ndarray | None = None,
) -> None:
    """Track ``rows[i]`` takes in detection ``det_rows[i]``, in place.

    Part-major arrays: ``track_feats`` [P, T, D] / ``track_vis`` [P, T], ``det_feats`` [P, N, D] /
    ``det_vis`` [P, N]; features L2-normalised. Float visibility counts as "visible" from
    ``visible_threshold`` on (bool: True). Only the part vectors that change are touched, which is
    what keeps the per-frame update cheap. The new visibility is max(track_vis, det_vis).
    ``track_sq`` [P, T] / ``det_sq`` [P, N], when given, are the squared norms of the part vectors
    (1, or 0 for all-zero parts); ``track_sq`` is kept up to date so the part distance need not
    recompute it from the features every frame.
    ``det_scale`` [P, N]: ``det_feats`` are raw and det_feats * det_scale the unit vectors (only the
    vectors taken in get scaled). ``pair_dots`` [P, T, N]: track_feats . det_feats (raw) from the
    frame's cost; with both squared norms it gives each blend's norm without a pass over the blend.
    """
    rows, det_rows = np.asarray(rows), np.asarray(det_rows)
    seen_track = track_vis[:, rows] >= visible_threshold  # [P, M]
    seen_det = det_vis[:, det_rows] >= visible_threshold
    part, pair = (seen_track & seen_det).nonzero()
    keep = np.float32(alpha)
    take = np.float32(1.0 - alpha)
    if len(part):
        track_at, det_at = rows[pair], det_rows[pair]
        det_coef = take if det_scale is None else take * det_scale[part, det_at]
        sq = None
        if pair_dots is not None and track_sq is not None and det_sq is not None:
            # |k t + c d|^2 = k^2 |t|^2 + c^2 |d|^2 + 2 k c t.d, with c^2 |d|^2 = take^2 |unit d|^2.
            sq = keep * keep * track_sq[part, track_at] + take * take * det_sq[part, det_at]
            sq += 2.0 * keep * det_coef * pair_dots[part, track_at, det_at]
            if np.count_nonzero(sq < 1e-2):
                sq = None  # near-cancelling blend: the formula loses digits, measure the vector instead
        blended = track_feats[part, track_at]
        if sq is None:
            blended *= keep
            blended += det_feats[part, det_at] * np.reshape(det_coef, (-1, 1))
            norms = np.sqrt(np.einsum("kd,kd->k", blended, blended))
            scale = np.maximum(norms, 1e-12)
            blended /= scale[:, None]
        else:
            # Both weights divided by the norm up front: one multiply per gathered vector.
            norms = np.sqrt(sq)
            scale = np.maximum(norms, 1e-12)
            blended *= (keep / scale)[:, None]
            blended += det_feats[part, det_at] * (det_coef / scale)[:, None]
        track_feats[part, track_at] = blended
        if track_sq is not None:
            track_sq[part, track_at] = np.square(norms / scale)
    part, pair = (seen_det > seen_track).nonzero()  # seen in the detection only
    if len(part):
        track_at, det_at = rows[pair], det_rows[pair]
        taken = det_feats[part, det_at]
        if det_scale is not None:
            taken *= det_scale[part, det_at][:, None]
        track_feats[part, track_at] = taken
        if track_sq is not None:
            track_sq[part, track_at] = det_sq[part, det_at]
    track_vis[:, rows] = np.maximum(track_vis[:, rows], det_vis[:, det_rows])


def masked_ema(
    track_feats: np.ndarray,
    track_vis: np.ndarray,
    det_feats: np.ndarray,
    det_vis: np.ndarray,
    alpha: float = 0.9,
    visible_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Pure version for pairs laid out alike: features [..., D], visibility [...]; returns new copies."""
    shape = np.shape(track_vis)
    dim = np.shape(track_feats)[-1]
    feats = np.array(track_feats, np.float32).reshape(1, -1, dim)
    vis = np.array(track_vis, np.float32).reshape(1, -1)
    every = np.arange(vis.shape[1])
    masked_ema_inplace(
        feats, vis, every, np.asarray(det_feats, np.float32).reshape(1, -1, dim),
        np.asarray(det_vis, np.float32).reshape(1, -1), every, alpha, visible_threshold,
    )
    return feats.reshape(shape + (dim,)), vis.reshape(shape)
