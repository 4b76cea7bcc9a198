"""Heatmap decoding for heatmap-based top-down models (HRNet): argmax + quarter shift, DARK, or UDP.

Coordinates are returned in heatmap pixels. The caller converts them to input pixels:
- ``argmax`` / ``dark`` (mmpose's non-UDP convention): heatmap pixel i <-> input pixel i * stride,
  stride = input / heatmap;
- ``udp`` (mmpose's ``UDPHeatmap``, Huang et al. 2020): heatmap pixel i <-> input pixel
  i * (input - 1) / (heatmap - 1), see :func:`heatmap_to_input_scale`.
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
    """Shift each maximum a quarter pixel towards its higher neighbour, with mmpose 1.x's rule
    (``refine_keypoints``): x moves only for 1 < x < W-1 and y > 0, y only for 1 < y < H-1 and
    x > 0, so a maximum in the outer columns/rows keeps that coordinate. (mmpose 0.x and the
    original HRNet code shift both only when both are inside; they differ on those rows only.)"""
    n, k, h, w = heatmaps.shape
    x = locs[..., 0].astype(int)
    y = locs[..., 1].astype(int)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    inner_x = (x > 1) & (x < w - 1) & (y > 0)
    inner_y = (y > 1) & (y < h - 1) & (x > 0)
    xr, xl = np.clip(x + 1, 0, w - 1), np.clip(x - 1, 0, w - 1)
    yd, yu = np.clip(y + 1, 0, h - 1), np.clip(y - 1, 0, h - 1)
    dx = np.where(inner_x, heatmaps[ni, ki, y, xr] - heatmaps[ni, ki, y, xl], 0.0)
    dy = np.where(inner_y, heatmaps[ni, ki, yd, x] - heatmaps[ni, ki, yu, x], 0.0)
    return locs + np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25


def modulate(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK's smoothing as mmpose 1.x does it (``gaussian_blur``): each map zero-padded by the
    kernel radius, blurred, cropped, and rescaled to its original maximum; float32 like mmpose."""
    import cv2

    border = (kernel - 1) // 2
    out = np.empty(heatmaps.shape, np.float32)
    for i, hm in enumerate(heatmaps.astype(np.float32)):
        padded = np.pad(hm, border)
        blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
        peak = blurred.max()
        out[i] = blurred * (hm.max() / peak) if peak != 0 else blurred  # (mmpose divides by zero there)
    return out


def dark_offset(heatmaps: np.ndarray, locs: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK (Zhang et al. 2020) as mmpose 1.x decodes it (``refine_keypoints_dark``): Newton step on
    the log of the modulated heatmap, first derivatives over +-1 pixel, second over +-2, only for
    maxima with 1 < x < W-2 and 1 < y < H-2 and a non-singular Hessian; no other clipping."""
    n, k, h, w = heatmaps.shape
    logs = np.log(np.maximum(modulate(heatmaps.reshape(n * k, h, w), kernel), 1e-10))
    flat = locs.reshape(n * k, 2)
    x, y = flat[:, 0].astype(int), flat[:, 1].astype(int)
    inside = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)
    i = np.arange(n * k)
    xs, ys = np.where(inside, x, 2), np.where(inside, y, 2)  # any in-range index; results masked below
    at = lambda dy, dx: logs[i, ys + dy, xs + dx].astype(np.float64)  # noqa: E731
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy ** 2
    ok = inside & (det != 0)
    safe = np.where(ok, det, 1.0)
    off_x = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
    off_y = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
    return locs + np.stack([off_x, off_y], axis=-1).reshape(n, k, 2)


def dark_udp_offset(heatmaps: np.ndarray, locs: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK as mmpose 1.x's ``UDPHeatmap`` decodes it (``refine_keypoints_dark_udp``): the modulated
    heatmap clipped to [1e-3, 50] before the log, edge-padded by one pixel so every maximum is
    refined (borders included), derivatives from the 3x3 neighbourhood only (second derivatives
    over +-1 pixel, the mixed one from the two diagonal neighbours), Newton step with the Hessian
    plus float32 eps on its diagonal. Where that Hessian is still singular (mmpose would raise)
    the maximum is kept."""
    n, k, h, w = heatmaps.shape
    logs = np.log(np.clip(modulate(heatmaps.reshape(n * k, h, w), kernel), 1e-3, 50.0))
    padded = np.pad(logs, ((0, 0), (1, 1), (1, 1)), mode="edge").astype(np.float64)
    flat = locs.reshape(n * k, 2)
    x, y = flat[:, 0].astype(int) + 1, flat[:, 1].astype(int) + 1  # in padded pixels
    i = np.arange(n * k)
    at = lambda dy, dx: padded[i, y + dy, x + dx]  # noqa: E731
    centre, right, left, down, up = at(0, 0), at(0, 1), at(0, -1), at(1, 0), at(-1, 0)
    dx = 0.5 * (right - left)
    dy = 0.5 * (down - up)
    dxx = right - 2 * centre + left
    dyy = down - 2 * centre + up
    dxy = 0.5 * (at(1, 1) - right - down + 2 * centre - left - up + at(-1, -1))
    eps = float(np.finfo(np.float32).eps)
    a, b, d = dxx + eps, dxy, dyy + eps
    det = a * d - b * b
    ok = det != 0
    safe = np.where(ok, det, 1.0)
    off_x = np.where(ok, -(d * dx - b * dy) / safe, 0.0)  # -inverse(hessian) @ gradient
    off_y = np.where(ok, -(a * dy - b * dx) / safe, 0.0)
    return locs + np.stack([off_x, off_y], axis=-1).reshape(n, k, 2)


DECODERS = ("argmax", "dark", "udp")


def decode_heatmaps(heatmaps: np.ndarray, method: str = "argmax") -> np.ndarray:
    """[N, K, H, W] -> [N, K, 3] (x, y in heatmap pixels, score = heatmap maximum)."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    locs, values = heatmap_argmax(heatmaps)
    if method == "argmax":
        locs = quarter_offset(heatmaps, locs)
    elif method == "dark":
        locs = dark_offset(heatmaps, locs)
    elif method == "udp":
        locs = dark_udp_offset(heatmaps, locs)
    else:
        from kprtrack.errors import InputError

        raise InputError(f"pose.decode must be one of {', '.join(DECODERS)}, got {method!r}")
    return np.concatenate([locs, values[..., None]], axis=-1)


def heatmap_to_input_scale(method: str, input_size: tuple[int, int],
                           heatmap_size: tuple[int, int]) -> np.ndarray:
    """(x, y) factors from heatmap pixels to input pixels; sizes are (height, width).
    UDP: (input - 1) / (heatmap - 1); otherwise the stride input / heatmap."""
    inp = np.array(input_size[::-1], dtype=np.float64)
    hm = np.array(heatmap_size[::-1], dtype=np.float64)
    return (inp - 1) / (hm - 1) if method == "udp" else inp / hm


def flip_back(heatmaps: np.ndarray, flip_index: np.ndarray, shift: bool = True) -> np.ndarray:
    """Heatmaps of horizontally flipped crops -> heatmaps of the original crops.

    Mirror along x, swap left/right joints, and (``shift``) move one pixel right: with the
    non-UDP pixel convention a mirrored map is off by one heatmap pixel. UDP maps need no shift
    (heatmap pixel 0 and W-1 sit on input pixels 0 and w-1, so mirroring is exact).
    """
    back = heatmaps[:, flip_index, :, ::-1].copy()
    if shift:
        back[..., 1:] = back[..., :-1].copy()
    return back
