"""Constant-velocity Kalman filter on (centre x, centre y, aspect w/h, height), batched over tracks.

Same model and noise scales as ByteTrack/DeepSORT (noise proportional to the box height). The motion
model, both noises and the initial covariance never couple two coordinates, so the 8x8 covariance is
exactly four independent 2x2 blocks (a coordinate and its velocity) forever. They are stored as such,
``cov`` [N, 3, 4] = (var position, cov position-velocity, var velocity) per coordinate, and every step
is a few elementwise operations instead of batched 4x4 solves (``dense_covariance`` rebuilds 8x8).
``mean`` is [N, 8] (x, y, a, h, vx, vy, va, vh); measurements [N, 4].
"""
from __future__ import annotations

import numpy as np

__all__ = ["CHI2_95_4DOF", "boxes_to_xyah", "xyah_to_boxes", "initiate", "predict", "update", "gating_distance",
           "dense_covariance"]

# 95% quantile of the chi-square distribution with 4 degrees of freedom (DeepSORT gate).
CHI2_95_4DOF = 9.4877
_POS = 1.0 / 20.0  # position noise per unit of box height
_VEL = 1.0 / 160.0  # velocity noise per unit of box height
PP, PV, VV = 0, 1, 2  # rows of a covariance block


def boxes_to_xyah(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)  # a zero-height box must not make the aspect infinite
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_boxes(xyah: np.ndarray) -> np.ndarray:
    centre = xyah[:, :2]
    half = np.empty((len(xyah), 2))
    half[:, 1] = xyah[:, 3] / 2
    half[:, 0] = xyah[:, 2] * half[:, 1]
    boxes = np.empty((len(xyah), 4), np.float32)
    boxes[:, :2] = centre - half
    boxes[:, 2:] = centre + half
    return boxes


_XYH = np.array([1.0, 1.0, 0.0, 1.0])  # the coordinates whose noise scales with the height
_A = np.array([0.0, 0.0, 1.0, 0.0])


def _std(h: np.ndarray, scale: float, aspect: float) -> np.ndarray:
    """[N, 4] standard deviations: scale * height for x, y, h; a constant for the aspect."""
    return h[:, None] * (scale * _XYH) + aspect * _A


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    mean = np.concatenate([z, np.zeros_like(z)], axis=1)
    cov = np.zeros((len(z), 3, 4))
    cov[:, PP] = _std(z[:, 3], 2 * _POS, 1e-2) ** 2
    cov[:, VV] = _std(z[:, 3], 10 * _VEL, 1e-5) ** 2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = mean[:, 3]
    mean = mean.copy()
    mean[:, :4] += mean[:, 4:]
    pp, pv, vv = cov[:, PP], cov[:, PV], cov[:, VV]
    out = np.empty_like(cov)
    out[:, PP] = pp + 2 * pv + vv + _std(h, _POS, 1e-2) ** 2
    out[:, PV] = pv + vv
    out[:, VV] = vv + _std(h, _VEL, 1e-5) ** 2
    return mean, out


def _innovation_variance(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """[N, 4] variance of the projected position (the 2x2 blocks' S = P_pp + R)."""
    return cov[:, PP] + _std(mean[:, 3], _POS, 1e-1) ** 2


def update(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    s = _innovation_variance(mean, cov)
    pp, pv, vv = cov[:, PP], cov[:, PV], cov[:, VV]
    gain_p, gain_v = pp / s, pv / s
    innovation = z - mean[:, :4]
    mean = mean.copy()
    mean[:, :4] += gain_p * innovation
    mean[:, 4:] += gain_v * innovation
    out = np.empty_like(cov)
    out[:, PP] = pp - gain_p * pp
    out[:, PV] = pv - gain_p * pv
    out[:, VV] = vv - gain_v * pv
    return mean, out


def gating_distance(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance [T, N] between each track's projected state and each measurement."""
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    diff = z[None, :, :] - mean[:, None, :4]  # [T, N, 4]
    return (diff ** 2 / _innovation_variance(mean, cov)[:, None, :]).sum(-1)


def dense_covariance(cov: np.ndarray) -> np.ndarray:
    """[N, 8, 8]: the blocks as the usual full covariance (for inspection and tests)."""
    dense = np.zeros((len(cov), 8, 8))
    i = np.arange(4)
    dense[:, i, i] = cov[:, PP]
    dense[:, i, i + 4] = dense[:, i + 4, i] = cov[:, PV]
    dense[:, i + 4, i + 4] = cov[:, VV]
    return dense
