"""Visibility-masked moving average of tracklet part features (TrackLab bpbreid_strong_sort rule).

A part seen in both the tracklet and the detection is blended, a part seen only in the detection is
taken from it, a part seen only in the tracklet (e.g. legs hidden behind someone) keeps the
tracklet's feature, so occlusions do not overwrite what was learnt about a hidden part.
"""
from __future__ import annotations

import numpy as np

from .part_distance import normalize_parts

__all__ = ["masked_ema"]


def masked_ema(
    track_feats: np.ndarray,
    track_vis: np.ndarray,
    det_feats: np.ndarray,
    det_vis: np.ndarray,
    alpha: float = 0.9,
    visible_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """New (features [..., D] unit-norm, visibility [...]) for matched tracklet/detection pairs.

    Any leading layout works ([M, P] or part-major [P, M]); features are expected L2-normalised.
    Float visibility counts as "visible" from ``visible_threshold`` on (bool visibility: True).
    The new visibility is max(track_vis, det_vis).
    """
    seen_track = track_vis >= visible_threshold
    seen_det = det_vis >= visible_threshold
    # Weights of the tracklet and detection features per part; (1, 0) keeps the tracklet's feature.
    w_track = np.where(seen_det, np.where(seen_track, alpha, 0.0), 1.0).astype(np.float32)
    w_det = np.float32(1.0) - w_track
    blended = w_track[..., None] * track_feats + w_det[..., None] * det_feats
    return normalize_parts(blended), np.maximum(track_vis, det_vis).astype(np.float32)
