"""Visibility-masked part distance between part-based embeddings (BPBReID / KPR test metric).

Every part vector is L2-normalised, parts are compared with the Euclidean distance (range [0, 2]),
and the per-part distances are averaged over the parts visible in BOTH embeddings, then halved so
the result lies in [0, 1]. Pairs with no mutually visible part get the maximum distance 1.

Visibility may be bool (weight = vis_a AND vis_b) or float in [0, 1] (weight = sqrt(vis_a * vis_b));
both are the same formula because sqrt(1 * 1) = 1 and sqrt(x * 0) = 0.

This is the tracker's hot path and the ReID evaluation's (thousands x thousands), so it is a
handful of batched matrix products (one per part) instead of per-pair loops, processed in row
chunks that keep the [parts, rows, cols] scratch array bounded.
"""
from __future__ import annotations

import numpy as np

__all__ = ["part_distance", "normalize_parts", "masked_part_distance"]

# Upper bound on the [P, rows, B] float32 scratch array (~64 MB) for big galleries.
_MAX_SCRATCH_ELEMENTS = 1 << 24


def normalize_parts(feats: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """L2-normalise the last axis in float32; all-zero vectors stay zero (distance 1 to a unit vector)."""
    feats = np.asarray(feats, dtype=np.float32)
    norms = np.sqrt(np.einsum("...d,...d->...", feats, feats))
    return feats / np.maximum(norms, eps)[..., None]


def _prepare(feats: np.ndarray, vis: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """[N, P, D] features + [N, P] visibility -> part-major unit vectors [P, N, D], sqrt weights [P, N]."""
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 3:
        raise ValueError(f"{name}: expected features [N, parts, dim], got shape {feats.shape}")
    if vis is None:
        weights = np.ones(feats.shape[:2], np.float32)
    else:
        weights = np.asarray(vis, dtype=np.float32)
        if weights.shape != feats.shape[:2]:
            raise ValueError(f"{name}: visibility shape {weights.shape} does not match features {feats.shape[:2]}")
    # A part with NaN/inf anywhere carries no information: make it invisible instead of poisoning the mean.
    finite = np.isfinite(feats).all(axis=-1) & np.isfinite(weights)
    if not finite.all():
        feats = np.where(finite[..., None], feats, 0.0).astype(np.float32)
        weights = np.where(finite, weights, 0.0).astype(np.float32)
    unit = normalize_parts(feats).transpose(1, 0, 2)
    return np.ascontiguousarray(unit), np.ascontiguousarray(np.sqrt(np.clip(weights, 0.0, None)).T)


def masked_part_distance(
    unit_a: np.ndarray, sqrt_vis_a: np.ndarray, unit_b: np.ndarray, sqrt_vis_b: np.ndarray,
    sq_norms_a: np.ndarray | None = None, sq_norms_b: np.ndarray | None = None,
    scale_b: np.ndarray | None = None, return_dots: bool = False,
):
    """Core on prepared inputs: part-major unit vectors [P, A, D] / [P, B, D] and sqrt-visibility [P, A] / [P, B].

    Returns (distance [A, B] float32 in [0, 1], has_common_part [A, B] bool). The tracker keeps its
    tracklet features in this layout so it can call this without re-stacking anything. ``unit_*``
    may be strided views (e.g. [N, P, D] arrays transposed): BLAS reads them in place.
    ``sq_norms_*`` [P, A] / [P, B]: the squared norms of the part vectors when the caller already
    knows them (the tracker caches its tracklets'), else computed here.
    ``scale_b`` [P, B]: ``unit_b`` holds raw vectors and unit_b * scale_b are the unit ones (1/norm,
    0 for all-zero parts; ``sq_norms_b`` must then be given): scaling the [P, A, B] dot products
    costs far less than normalising every detection vector. ``return_dots``: also return those raw
    dot products [P, A, B] (unit_a . unit_b before scaling), which the tracker's EMA reuses.
    """
    parts, n_a, _ = unit_a.shape
    n_b = unit_b.shape[1]
    total_weight = sqrt_vis_a.T @ sqrt_vis_b  # [A, B] sum over parts of sqrt(va * vb)
    if n_a == 0 or n_b == 0:
        empty = (np.ones((n_a, n_b), np.float32), np.zeros((n_a, n_b), bool))
        return empty + (np.zeros((parts, n_a, n_b), np.float32),) if return_dots else empty
    # Squared norms are 1, or 0 for parts that were all-zero; |a - b|^2 = |a|^2 + |b|^2 - 2 a.b is exact for both.
    sq_a = np.einsum("pad,pad->pa", unit_a, unit_a) if sq_norms_a is None else sq_norms_a
    sq_b = np.einsum("pbd,pbd->pb", unit_b, unit_b) if sq_norms_b is None else sq_norms_b
    dot_factor = np.float32(-2.0) if scale_b is None else np.multiply(scale_b, np.float32(-2.0))[:, None, :]
    all_dots = np.empty((parts, n_a, n_b), np.float32) if return_dots else None
    weighted_sum = np.empty((n_a, n_b), np.float32)
    rows = n_a if return_dots else max(1, _MAX_SCRATCH_ELEMENTS // max(1, parts * n_b))
    unit_b_t = unit_b.transpose(0, 2, 1)
    for start in range(0, n_a, rows):
        stop = min(n_a, start + rows)
        dots = np.matmul(unit_a[:, start:stop], unit_b_t, out=all_dots)  # [P, r, B]
        # -2 a.b (a fresh array when the dots are kept, else in place)
        sq = np.multiply(dots, dot_factor, out=None if return_dots else dots)
        sq += sq_a[:, start:stop, None]
        sq += sq_b[:, None, :]
        np.maximum(sq, 0.0, out=sq)
        np.sqrt(sq, out=sq)  # per-part Euclidean distance in [0, 2]
        sq *= sqrt_vis_a[:, start:stop, None]
        sq *= sqrt_vis_b[:, None, :]
        weighted_sum[start:stop] = sq.sum(axis=0)
    has_common = total_weight > 0
    distance = np.ones((n_a, n_b), np.float32)
    np.divide(weighted_sum, 2.0 * total_weight, out=distance, where=has_common)
    np.minimum(np.maximum(distance, 0.0, out=distance), 1.0, out=distance)
    return (distance, has_common, all_dots) if return_dots else (distance, has_common)


def part_distance(
    feats_a: np.ndarray, vis_a: np.ndarray | None, feats_b: np.ndarray, vis_b: np.ndarray | None
) -> np.ndarray:
    """Distance matrix [A, B] in [0, 1] between embeddings [A, P, D] and [B, P, D].

    ``vis_*`` are [N, P] bool or float visibility (None = every part visible). Features need not be
    normalised. Parts with non-finite values count as invisible. No mutually visible part -> 1.
    """
    unit_a, w_a = _prepare(feats_a, vis_a, "feats_a")
    unit_b, w_b = _prepare(feats_b, vis_b, "feats_b")
    if unit_a.shape[0] != unit_b.shape[0] or unit_a.shape[2] != unit_b.shape[2]:
        raise ValueError(
            f"part layouts differ: feats_a has {unit_a.shape[0]} parts x {unit_a.shape[2]} dims, "
            f"feats_b {unit_b.shape[0]} x {unit_b.shape[2]}"
        )
    return masked_part_distance(unit_a, w_a, unit_b, w_b)[0]
