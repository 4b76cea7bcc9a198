"""Heatmap training targets, as mmpose 1.x's codecs encode them (sizes here are (height, width)).

- ``msra_heatmaps`` = ``MSRAHeatmap(unbiased=False)``: keypoints divided by the stride
  (input / heatmap), rounded to the nearest heatmap pixel, a unit-peak Gaussian (3-sigma window)
  drawn there. Heatmap pixel i <-> input pixel i * stride (what ``kprtrack.pose.heatmaps`` decodes).
- ``udp_heatmaps`` = ``UDPHeatmap(heatmap_type='gaussian')``: keypoints scaled by
  (input - 1) / (heatmap - 1) and the Gaussian centred at the exact sub-pixel position (UDP, Huang
  et al. 2020); heatmap pixel i <-> input pixel i * (input - 1) / (heatmap - 1).

A joint gets weight 0 when it is not visible or when its whole 3-sigma window falls outside the
heatmap (mmpose's in-bounds test); otherwise its weight is its visibility (1).
"""
from __future__ import annotations

import numpy as np

from kprtrack.pose.heatmaps import heatmap_to_input_scale


def _encode(keypoints_in_input, visible, input_size, heatmap_size, sigma, udp):
    keypoints = np.asarray(keypoints_in_input, dtype=np.float32).reshape(-1, 2)
    visible = np.asarray(visible, dtype=np.float32).reshape(-1)
    num = len(keypoints)
    height, width = int(heatmap_size[0]), int(heatmap_size[1])
    # the decoder's heatmap -> input factor, in float32 as mmpose's codecs keep it
    scale = heatmap_to_input_scale("udp" if udp else "argmax", input_size, heatmap_size).astype(np.float32)
    points = keypoints / scale
    heatmaps = np.zeros((num, height, width), dtype=np.float32)
    weights = visible.copy()
    radius = sigma * 3
    size = 2 * radius + 1
    grid = np.arange(0, size, 1, dtype=np.float32)
    gx, gy = grid[None, :], grid[:, None]
    for k in range(num):
        if visible[k] < 0.5:
            continue
        mu = (points[k] + 0.5).astype(np.int64)  # nearest pixel (truncation, as mmpose)
        left, top = (mu - radius).astype(np.int64)
        right, bottom = (mu + radius + 1).astype(np.int64)
        if left >= width or top >= height or right < 0 or bottom < 0:
            weights[k] = 0
            continue
        x0 = y0 = size // 2
        if udp:  # the window is still placed at the rounded pixel; the peak moves to the sub-pixel
            x0 = x0 + points[k, 0] - mu[0]
            y0 = y0 + points[k, 1] - mu[1]
        gaussian = np.exp(-((gx - x0) ** 2 + (gy - y0) ** 2) / (2 * sigma ** 2))
        g_x1, g_y1 = max(0, -left), max(0, -top)
        g_x2, g_y2 = min(width, right) - left, min(height, bottom) - top
        h_x1, h_y1 = max(0, left), max(0, top)
        h_x2, h_y2 = min(width, right), min(height, bottom)
        region = heatmaps[k, h_y1:h_y2, h_x1:h_x2]
        np.maximum(region, gaussian[g_y1:g_y2, g_x1:g_x2], out=region)
    return heatmaps, weights


def msra_heatmaps(keypoints_in_input, visible, input_size, heatmap_size,
                  sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """[K, 2] input-pixel keypoints, [K] 0/1 visibility -> (heatmaps [K, h, w], weights [K]).
    ``input_size`` and ``heatmap_size`` are (height, width)."""
    return _encode(keypoints_in_input, visible, input_size, heatmap_size, sigma, udp=False)


def udp_heatmaps(keypoints_in_input, visible, input_size, heatmap_size,
                 sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """As ``msra_heatmaps`` with UDP's (input - 1) / (heatmap - 1) scaling and sub-pixel peak."""
    return _encode(keypoints_in_input, visible, input_size, heatmap_size, sigma, udp=True)


CODECS = {"msra": msra_heatmaps, "udp": udp_heatmaps}


def encode(codec: str, keypoints_in_input, visible, input_size, heatmap_size, sigma: float = 2.0):
    if codec not in CODECS:
        from kprtrack.errors import InputError

        raise InputError(f"pose heatmap codec must be one of {sorted(CODECS)}, got {codec!r}")
    return CODECS[codec](keypoints_in_input, visible, input_size, heatmap_size, sigma)
