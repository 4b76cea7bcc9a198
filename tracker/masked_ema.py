"""Visibility-masked moving average of tracklet part features (TrackLab bpbreid_strong_sort rule).

A part seen in both the tracklet and the detection is blended, a part seen only in the detection is
taken from it, a part seen only in the tracklet (e.g. legs hidden behind someone) keeps the
tracklet's feature, so occlusions do not overwrite what was learnt about a hidden part.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PartFeatures", "masked_ema", "masked_ema_update"]


class PartFeatures(NamedTuple):
    """Part features of a set of people, part-major: part p of person i is at [p, i].

    ``feats * scale`` are the L2-normalised part vectors (``scale`` None: ``feats`` already are).
    The tracker's detections come raw, with ``scale`` = 1/norm: scaling the few vectors a frame
    takes in costs far less than normalising every detection vector.
    """

    feats: np.ndarray  # [P, N, D] float32
    vis: np.ndarray  # [P, N] visibility: float in [0, 1], or bool
    sq_norms: np.ndarray | None = None  # [P, N] squared norms of the unit vectors: 1, or 0 for all-zero parts
    scale: np.ndarray | None = None  # [P, N] 1/|feats|, 0 for all-zero parts; None: feats are unit vectors

    def units(self, index: np.ndarray) -> np.ndarray:
        """The unit vectors [P, M, D] of people ``index``."""
        feats = self.feats[:, index]
        return feats if self.scale is None else feats * self.scale[:, index, None]


def masked_ema_update(
    tracks: PartFeatures,
    rows: np.ndarray,
    dets: PartFeatures,
    det_rows: np.ndarray,
    alpha: float,
    visible_threshold: float,
    pair_dots: np.ndarray | None = None,
) -> None:
    """Track ``rows[i]`` takes in detection ``det_rows[i]``, in place.

    ``tracks``: unit vectors (``scale`` None); their ``feats``, ``vis`` and, when given,
    ``sq_norms`` are updated. Float visibility counts as "visible" from ``visible_threshold`` on
    (bool: True); the new visibility is max(track vis, detection vis). Only the part vectors that
    change are touched, which is what keeps the per-frame update cheap.
    ``pair_dots`` [P, T, N]: tracks.feats . dets.feats (raw) from the frame's cost; with both sides'
    squared norms it gives each blend's norm without a pass over the blended vectors.
    """
    rows, det_rows = np.asarray(rows), np.asarray(det_rows)
    track_feats, track_sq = tracks.feats, tracks.sq_norms
    track_vis, det_vis = tracks.vis[:, rows], dets.vis[:, det_rows]  # [P, M], pair by pair
    seen_track = track_vis >= visible_threshold
    seen_det = det_vis >= visible_threshold
    keep = np.float32(alpha)
    take = np.float32(1.0 - alpha)

    # Seen in both: blended, then re-normalised.
    part, pair = (seen_track & seen_det).nonzero()
    if len(part):
        track_at, det_at = rows[pair], det_rows[pair]
        det_coef = take if dets.scale is None else take * dets.scale[part, det_at]
        sq = None
        if pair_dots is not None and track_sq is not None and dets.sq_norms is not None:
            # |k t + c d|^2 = k^2 |t|^2 + c^2 |d|^2 + 2 k c t.d, with c^2 |d|^2 = take^2 |unit d|^2.
            sq = keep * keep * track_sq[part, track_at] + take * take * dets.sq_norms[part, det_at]
            sq += 2.0 * keep * det_coef * pair_dots[part, track_at, det_at]
            if np.count_nonzero(sq < 1e-2):
                sq = None  # near-cancelling blend: the formula loses digits, measure the vector instead
        # Gathered copies, weighted in place (a fresh [K, D] product per frame would cost more).
        blended, taken = track_feats[part, track_at], dets.feats[part, det_at]
        if sq is None:
            blended *= keep
            taken *= np.reshape(det_coef, (-1, 1))
            blended += taken
            norms = np.sqrt(np.einsum("kd,kd->k", blended, blended))
            scale = np.maximum(norms, 1e-12)
            blended /= scale[:, None]
        else:
            # Both weights divided by the norm up front: one multiply per gathered vector.
            norms = np.sqrt(sq)
            scale = np.maximum(norms, 1e-12)
            blended *= (keep / scale)[:, None]
            taken *= (det_coef / scale)[:, None]
            blended += taken
        track_feats[part, track_at] = blended
        if track_sq is not None:
            track_sq[part, track_at] = np.square(norms / scale)

    # Seen in the detection only: taken as is.
    part, pair = (seen_det > seen_track).nonzero()
    if len(part):
        track_at, det_at = rows[pair], det_rows[pair]
        taken = dets.feats[part, det_at]
        if dets.scale is not None:
            taken *= dets.scale[part, det_at][:, None]
        track_feats[part, track_at] = taken
        if track_sq is not None:
            track_sq[part, track_at] = dets.sq_norms[part, det_at]
    tracks.vis[:, rows] = np.maximum(track_vis, det_vis)


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
    dets = PartFeatures(np.asarray(det_feats, np.float32).reshape(1, -1, dim),
                        np.asarray(det_vis, np.float32).reshape(1, -1))
    masked_ema_update(PartFeatures(feats, vis), every, dets, every, alpha, visible_threshold)
    return feats.reshape(shape + (dim,)), vis.reshape(shape)
