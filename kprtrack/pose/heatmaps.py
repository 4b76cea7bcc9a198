"""Heatmap decoding for heatmap-based top-down models (HRNet): argmax + quarter shift, or DARK.

Coordinates are returned in heatmap pixels; the caller multiplies by input/heatmap stride
(mmpose's non-UDP convention: heatmap pixel i <-> input pixel i * stride).
"""
from __future__ import annotations

import numpy as np


def heatmap_argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, K, H, W] -> (locations [N, K, 2] as x, y float, max values [N, K])."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = flat.argmax(axis=2)
    values = np.take_along_axis(flat, index[..., None], axis=2)[..., 0]
    locs = np.stack([index % w, index // w], axis=-1).astype(np.float64)
    return locs, values


def quarter_offset(heatmaps: np.ndarray, locs: np.ndarray) -> np.ndarray:
    """Shift each maximum a quarter pixel towards its higher neighbour (the classic refinement)."""
    n, k, h, w = heatmaps.shape
    x = locs[..., 0].astype(int)
    y = locs[..., 1].astype(int)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    inner_x = (x > 0) & (x < w - 1)
    inner_y = (y > 0) & (y < h - 1)
    xr, xl = np.clip(x + 1, 0, w - 1), np.clip(x - 1, 0, w - 1)
    yd, yu = np.clip(y + 1, 0, h - 1), np.clip(y - 1, 0, h - 1)
    dx = np.where(inner_x, heatmaps[ni, ki, y, xr] - heatmaps[ni, ki, y, xl], 0.0)
    dy = np.where(inner_y, heatmaps[ni, ki, yd, x] - heatmaps[ni, ki, yu, x], 0.0)
    return locs + np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25


def dark_offset(heatmaps: np.ndarray, locs: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK (Zhang et al. 2020): Taylor-expand the log of a smoothed heatmap around its maximum.

    The blur keeps each map's maximum (rescaled after smoothing) so the log is well conditioned.
    """
    import cv2

    n, k, h, w = heatmaps.shape
    maps = heatmaps.reshape(n * k, h, w).astype(np.float32)
    smooth = np.empty_like(maps)
    for i, hm in enumerate(maps):
        peak = hm.max()
        blurred = cv2.GaussianBlur(hm, (kernel, kernel), 0)
        blurred_peak = blurred.max()
        smooth[i] = blurred * (peak / blurred_peak) if blurred_peak > 0 else blurred
    logs = np.log(np.maximum(smooth, 1e-10)).astype(np.float64)
    padded = np.pad(logs, ((0, 0), (1, 1), (1, 1)), mode="edge")
    flat_locs = locs.reshape(n * k, 2)
    x = flat_locs[:, 0].astype(int) + 1
    y = flat_locs[:, 1].astype(int) + 1
    i = np.arange(n * k)
    at = lambda dy, dx: padded[i, y + dy, x + dx]  # noqa: E731
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = at(0, 1) - 2 * at(0, 0) + at(0, -1)
    dyy = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy ** 2
    ok = np.abs(det) > 1e-12
    safe = np.where(ok, det, 1.0)
    off_x = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
    off_y = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
    # A maximum on a plateau or the border can give a wild step; a true peak moves < 1 px.
    offset = np.clip(np.stack([off_x, off_y], axis=-1), -1.0, 1.0)
    return locs + offset.reshape(n, k, 2)


def decode_heatmaps(heatmaps: np.ndarray, method: str = "argmax") -> np.ndarray:
    """[N, K, H, W] -> [N, K, 3] (x, y in heatmap pixels, score = heatmap maximum)."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    locs, values = heatmap_argmax(heatmaps)
    if method == "argmax":
        locs = quarter_offset(heatmaps, locs)
    elif method == "dark":
        locs = dark_offset(heatmaps, locs)
    else:
        from kprtrack.errors import InputError

        raise InputError(f"pose.decode must be 'argmax' or 'dark', got {method!r}")
    return np.concatenate([locs, values[..., None]], axis=-1)


def flip_back(heatmaps: np.ndarray, flip_index: np.ndarray, shift: bool = True) -> np.ndarray:
    """Heatmaps of horizontally flipped crops -> heatmaps of the original crops.

    Mirror along x, swap left/right joints, and (``shift``) move one pixel right: with the
    non-UDP pixel convention a mirrored map is off by one heatmap pixel.
    """
    back = heatmaps[:, flip_index, :, ::-1].copy()
    if shift:
        back[..., 1:] = back[..., :-1].copy()
    return back
