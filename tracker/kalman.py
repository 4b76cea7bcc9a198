"""Constant-velocity Kalman filter on (centre x, centre y, aspect w/h, height), batched over tracks.

Same model and noise scales as ByteTrack/DeepSORT (noise proportional to the box height), written
for arrays of tracks: mean [N, 8], covariance [N, 8, 8], measurements [N, 4].
"""
from __future__ import annotations

import numpy as np

__all__ = ["CHI2_95_4DOF", "boxes_to_xyah", "xyah_to_boxes", "initiate", "predict", "update", "gating_distance"]

# 95% quantile of the chi-square distribution with 4 degrees of freedom (DeepSORT gate).
CHI2_95_4DOF = 9.4877
_POS = 1.0 / 20.0  # position noise per unit of box height
_VEL = 1.0 / 160.0  # velocity noise per unit of box height
_MOTION = np.eye(8)
_MOTION[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t (one frame)


def boxes_to_xyah(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)  # a zero-height box must not make the aspect infinite
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_boxes(xyah: np.ndarray) -> np.ndarray:
    x, y, a, h = (xyah[:, i] for i in range(4))
    w = a * h
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1).astype(np.float32)


def _diag_sq(std: np.ndarray) -> np.ndarray:
    """[N, k] standard deviations -> [N, k, k] diagonal covariances."""
    out = np.zeros(std.shape + (std.shape[-1],))
    idx = np.arange(std.shape[-1])
    out[:, idx, idx] = std**2
    return out


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    h = z[:, 3]
    mean = np.concatenate([z, np.zeros_like(z)], axis=1)
    std = np.stack([2 * _POS * h, 2 * _POS * h, np.full_like(h, 1e-2), 2 * _POS * h,
                    10 * _VEL * h, 10 * _VEL * h, np.full_like(h, 1e-5), 10 * _VEL * h], axis=1)
    return mean, _diag_sq(std)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = mean[:, 3]
    std = np.stack([_POS * h, _POS * h, np.full_like(h, 1e-2), _POS * h,
                    _VEL * h, _VEL * h, np.full_like(h, 1e-5), _VEL * h], axis=1)
    mean = mean @ _MOTION.T
    cov = _MOTION @ cov @ _MOTION.T + _diag_sq(std)
    return mean, cov


def _project(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = mean[:, 3]
    std = np.stack([_POS * h, _POS * h, np.full_like(h, 1e-1), _POS * h], axis=1)
    return mean[:, :4], cov[:, :4, :4] + _diag_sq(std)


def update(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    proj_mean, proj_cov = _project(mean, cov)
    cross = cov[:, :, :4]  # P H^T
    gain = np.linalg.solve(proj_cov, cross.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1 (S symmetric)
    innovation = z - proj_mean
    mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    cov = cov - gain @ proj_cov @ gain.transpose(0, 2, 1)
    return mean, cov


def gating_distance(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance [T, N] between each track's projected state and each measurement."""
    z = np.asarray(measurements, np.float64).reshape(-1, 4)
    proj_mean, proj_cov = _project(mean, cov)
    chol = np.linalg.cholesky(proj_cov)  # [T, 4, 4]
    diff = z[None, :, :] - proj_mean[:, None, :]  # [T, N, 4]
    solved = np.linalg.solve(chol, diff.transpose(0, 2, 1))  # [T, 4, N]
    return np.einsum("tkn,tkn->tn", solved, solved)
