"""mmpose 1.x's top-down training pipeline for one person, deterministic given a numpy Generator.

The order and the defaults are those of ``td-hm_hrnet-w32_8xb64-20e_posetrack18-256x192.py``
(``GetBBoxCenterScale`` -> ``RandomFlip`` -> ``RandomHalfBody`` -> ``RandomBBoxTransform`` ->
``TopdownAffine``), with these settings:

- ``RandomFlip(prob=0.5)``: x -> W - 1 - x (image, box centre, keypoints), left/right joints
  swapped with ``flip_index('posetrack')``. The flip is folded into the affine warp instead of
  mirroring the whole frame: the sampled pixels are the same.
- ``RandomHalfBody(min_total_keypoints=8, min_upper_keypoints=2, min_lower_keypoints=3,
  padding=1.5, prob=0.3, upper_prioritized_prob=0.7)``: the box becomes the visible upper
  (joints 0-10) or lower (11-16) body joints' extent x 1.5, centred on their mean.
- ``RandomBBoxTransform(shift_factor=0.16, shift_prob=0.3, scale_factor=(0.65, 1.35),
  scale_prob=1.0, rotate_factor=45, rotate_prob=0.6)``: truncated-normal (-1..1) draws. Scale,
  rotation and half-body's 8 joints are the HRNet recipe's (:class:`AugmentConfig`); the 1.x
  classes' own defaults are (0.5, 1.5), 80 and 9.
- The box is clipped to the frame first (mmpose's ``parse_data_info``; done here with the decoded
  frame's size, which PoseTrack21's image entries do not always state).
- ``TopdownAffine``: the scale is widened or heightened to the input's aspect ratio, then the
  frame is warped onto the input (bilinear, black outside); ``udp`` uses mmpose's
  ``get_udp_warp_matrix`` ((size - 1) / scale) instead of ``get_warp_matrix``.

Crops are RGB; :func:`kprtrack.pose.hrnet.normalise` turns them into the network input, as at inference.
Keypoints outside the crop keep their visibility; the heatmap codec gives them weight 0 once
their Gaussian window misses the heatmap (as mmpose does).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from kprtrack.errors import InputError
from kprtrack.pose.layouts import flip_index
from kprtrack.pose.topdown import box_to_center_scale

UPPER_BODY = tuple(range(0, 11))  # nose, head_bottom, head_top, ears, shoulders, elbows, wrists
LOWER_BODY = tuple(range(11, 17))  # hips, knees, ankles (mmpose's posetrack18 'lower' joints)
FLIP_INDEX = flip_index("posetrack")


@dataclass(frozen=True)
class AugmentConfig:
    """``cfg.aug``; ``enabled: false`` leaves only the box padding and the affine (mmpose's val
    pipeline). Scale +-0.35, rotation 45 and half-body from 8 joints are the HRNet recipe (Sun et al.,
    mmpose 0.x's PoseTrack18 config); mmpose 1.x's transform defaults are scale 0.5-1.5, rotation 80,
    half-body from 9 joints."""

    enabled: bool = True
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_total: int = 8
    half_body_min_upper: int = 2
    half_body_min_lower: int = 3
    half_body_padding: float = 1.5
    half_body_upper_prob: float = 0.7
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_range: tuple[float, float] = (0.65, 1.35)
    scale_prob: float = 1.0
    rotate_factor: float = 45.0
    rotate_prob: float = 0.6

    @classmethod
    def from_cfg(cls, cfg) -> "AugmentConfig":
        """From a mapping (OmegaConf node or dict); unknown keys are an InputError."""
        if cfg is None:
            return cls()
        values = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown aug key(s) {unknown}; known: {sorted(known)}")
        if "scale_range" in values:
            low, high = (float(v) for v in values["scale_range"])
            if not 0 < low <= high:
                raise InputError(f"aug.scale_range must be [low, high] with 0 < low <= high, got "
                                 f"{[low, high]}")
            values["scale_range"] = (low, high)
        return cls(**values)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    """One augmented person: the crop and its keypoints in input pixels (joints in PoseTrack order)."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    keypoints: np.ndarray  # float32 [17, 2] input pixels
    visible: np.ndarray  # float32 [17] 0/1
    center: np.ndarray  # float64 [2] frame pixels (in the flipped frame when ``flip``)
    scale: np.ndarray  # float64 [2] (w, h) at the input aspect ratio
    rotation: float  # degrees
    flip: bool
    matrix: np.ndarray  # [2, 3] frame -> input pixels, flip included


def truncnorm(rng: np.random.Generator, size) -> np.ndarray:
    """Standard normal truncated to [-1, 1] (scipy's ``truncnorm.rvs(-1, 1)``), by rejection."""
    out = rng.standard_normal(size)
    bad = np.abs(out) > 1
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 1
    return out.astype(np.float32)


def affine_matrix(center, scale, rotation: float, input_size, udp: bool = False) -> np.ndarray:
    """[2, 3] float64 frame -> input pixels, mmpose's ``get_warp_matrix`` (fix_aspect_ratio) or
    ``get_udp_warp_matrix``. ``input_size`` is (height, width); ``scale`` (w, h)."""
    cx, cy = float(center[0]), float(center[1])
    out_h, out_w = int(input_size[0]), int(input_size[1])
    rad = math.radians(float(rotation))
    cos, sin = math.cos(rad), math.sin(rad)
    if udp:
        sx, sy = (out_w - 1) / float(scale[0]), (out_h - 1) / float(scale[1])
        return np.array([
            [cos * sx, -sin * sx, sx * (-cx * cos + cy * sin + 0.5 * float(scale[0]))],
            [sin * sy, cos * sy, sy * (-cx * sin - cy * cos + 0.5 * float(scale[1]))]])
    # get_warp_matrix: a similarity (one factor, from the widths) rotating the frame by -rotation
    # about the centre, which lands on (out_w / 2, out_h / 2).
    s = out_w / float(scale[0])
    a, b = s * cos, s * sin
    return np.array([[a, b, out_w / 2 - a * cx - b * cy],
                     [-b, a, out_h / 2 + b * cx - a * cy]])


def flip_matrix(width: int) -> np.ndarray:
    """[3, 3] mirror of a ``width``-pixel frame: x -> width - 1 - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def fix_aspect(center: np.ndarray, scale: np.ndarray, input_size) -> np.ndarray:
    """TopdownAffine's ``_fix_aspect_ratio`` (through ``box_to_center_scale``, padding 1)."""
    box = np.concatenate([center - scale / 2, center + scale / 2])
    return box_to_center_scale(box, input_size, padding=1.0)[1][0]


def clip_box(bbox, width: int, height: int) -> np.ndarray:
    """x1y1x2y2 clipped to [0, size - 1] as mmpose's data sets do; a box that would vanish is kept."""
    box = np.asarray(bbox, dtype=np.float64).reshape(4)
    clipped = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])
    return clipped if clipped[2] > clipped[0] and clipped[3] > clipped[1] else box


def sample_transform(bbox, keypoints, image_width: int, input_size, cfg: AugmentConfig,
                     rng: np.random.Generator | None, padding: float = 1.25):
    """The random part of the pipeline -> (center, scale (aspect-fixed), rotation, flip,
    keypoints [K, 2] and visibility [K] in the (possibly flipped) frame)."""
    bbox = np.asarray(bbox, dtype=np.float64).reshape(4)
    kpts = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    points, visible = kpts[:, :2].copy(), kpts[:, 2].copy()
    center = (bbox[:2] + bbox[2:]) * 0.5  # GetBBoxCenterScale
    scale = (bbox[2:] - bbox[:2]) * padding
    rotation, flip = 0.0, False
    if cfg.enabled and rng is not None:
        # RandomFlip
        flip = bool(rng.random() < cfg.flip_prob)
        if flip:
            points, visible = points[FLIP_INDEX], visible[FLIP_INDEX]
            points[:, 0] = image_width - 1 - points[:, 0]
            center = center.copy()
            center[0] = image_width - 1 - center[0]
        # RandomHalfBody
        ids = _half_body_ids(visible, cfg, rng)
        if ids is not None:
            chosen = points[ids]
            extent = (chosen.max(axis=0) - chosen.min(axis=0)) * cfg.half_body_padding
            if extent.max() > 0:  # joints all on one pixel would give an empty box: keep the person's
                center, scale = chosen.mean(axis=0), extent
        # RandomBBoxTransform
        draws = truncnorm(rng, 4).astype(np.float64)
        offset = draws[:2] * cfg.shift_factor if rng.random() < cfg.shift_prob else np.zeros(2)
        low, high = cfg.scale_range
        factor = draws[2] * (high - low) * 0.5 + (high + low) * 0.5 if rng.random() < cfg.scale_prob else 1.0
        rotation = float(draws[3] * cfg.rotate_factor) if rng.random() < cfg.rotate_prob else 0.0
        center = center + offset * scale
        scale = scale * factor
    return center, fix_aspect(center, scale, input_size), rotation, flip, points, visible


def _half_body_ids(visible: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> list[int] | None:
    if visible.sum() < cfg.half_body_min_total or rng.random() > cfg.half_body_prob:
        return None
    upper = [i for i in UPPER_BODY if visible[i] > 0]
    lower = [i for i in LOWER_BODY if visible[i] > 0]
    prefer_upper = rng.random() < cfg.half_body_upper_prob
    if len(upper) < cfg.half_body_min_upper and len(lower) < cfg.half_body_min_lower:
        return None
    if len(lower) < cfg.half_body_min_lower:
        return upper
    if len(upper) < cfg.half_body_min_upper:
        return lower
    return upper if prefer_upper else lower


def augment(image_rgb: np.ndarray, bbox, keypoints, input_size, cfg: AugmentConfig,
            rng: np.random.Generator | None, padding: float = 1.25, udp: bool = False) -> Sample:
    """One person of one RGB frame -> its augmented crop and keypoints. ``rng=None``: no randomness."""
    import cv2

    height, width = image_rgb.shape[:2]
    bbox = clip_box(bbox, width, height)
    center, scale, rotation, flip, points, visible = sample_transform(
        bbox, keypoints, width, input_size, cfg, rng, padding)
    matrix = affine_matrix(center, scale, rotation, input_size, udp)
    full = matrix @ flip_matrix(width) if flip else matrix  # warp the original, not a mirrored copy
    out_h, out_w = int(input_size[0]), int(input_size[1])
    crop = cv2.warpAffine(np.ascontiguousarray(image_rgb), full, (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    return Sample(image=crop, keypoints=moved.astype(np.float32), visible=visible.astype(np.float32),
                  center=center, scale=scale, rotation=rotation, flip=flip, matrix=full)

