"""KPR training augmentation, applied per sample with keypoints and part labels kept in step.

Recipe (KPR supplementary, "Implementation details"; upstream default ``data.transforms = [rc, re, bipo]``,
no horizontal flip): resize to (H, W) -> random crop with 10 px padding -> random erasing p=0.5 ->
BIPO (upstream ``data.bipo.p = 0.2``, occluders drawn from the same batch). ``make_batch``
(``reid/train/data.py``) runs them in that order on ImageNet-normalised float images [H, W, 3].

A "view" is a dict: ``image`` float32 [H, W, 3] (or uint8 before normalising), ``keypoints`` [17, 3],
``negatives`` [M, 17, 3] (crop pixels; confidence 0 = absent), ``labels`` uint8 [H, W] or None.
Every random function takes a ``numpy.random.Generator`` and returns a new view (inputs untouched).
"""
from __future__ import annotations

import numpy as np

# PoseTrack-17 left/right keypoint pairs (swapped by a horizontal flip).
FLIP_PAIRS = ((3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
PADDING = 10
ERASING_AREA = (0.02, 0.4)
ERASING_RATIO = (0.3, 3.3)
BIPO_P = 0.2
BIPO_CENTER_Y = (0.55, 0.75)  # upstream: occluder centre y drawn in [0.55 H, 0.75 H], x in [0, W]


def _copy(view: dict) -> dict:
    out = dict(view)
    for key in ("image", "keypoints", "negatives", "labels"):
        if out.get(key) is not None:
            out[key] = np.array(out[key], copy=True)
    out["negatives"] = np.asarray(out.get("negatives") if out.get("negatives") is not None
                                  else np.zeros((0, 17, 3), np.float32), np.float32).reshape(-1, 17, 3)
    return out


def _drop_outside(kps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Keypoints outside [0, W) x [0, H) lose their confidence (and are zeroed, as in split files)."""
    kps = kps.copy()
    out = (kps[..., 0] < 0) | (kps[..., 0] > width - 1) | (kps[..., 1] < 0) | (kps[..., 1] > height - 1)
    out |= kps[..., 2] <= 0
    kps[out] = 0.0
    return kps


def resize(view: dict, size: tuple[int, int]) -> dict:
    """Resize the image (bilinear) and labels (nearest) to size = (H, W); keypoints scaled."""
    import cv2

    out = _copy(view)
    height, width = size
    h0, w0 = out["image"].shape[:2]
    sx, sy = width / w0, height / h0
    if (h0, w0) != (height, width):
        out["image"] = cv2.resize(out["image"], (width, height), interpolation=cv2.INTER_LINEAR)
        if out.get("labels") is not None:
            out["labels"] = cv2.resize(out["labels"], (width, height), interpolation=cv2.INTER_NEAREST)
    for key in ("keypoints", "negatives"):
        kps = out[key].astype(np.float32)
        present = kps[..., 2] > 0
        kps[..., 0] = np.where(present, kps[..., 0] * sx, 0.0)
        kps[..., 1] = np.where(present, kps[..., 1] * sy, 0.0)
        out[key] = kps
    return out


def random_crop(view: dict, rng: np.random.Generator, padding: int = PADDING) -> dict:
    """Zero-pad every side by ``padding`` px, then crop a random window of the original size.

    Keypoints and labels move with the pixels (padding labels = background); keypoints that leave
    the crop lose their confidence. ``view["crop_offset"]`` = (dx, dy) the content moved by.
    """
    out = _copy(view)
    image = out["image"]
    height, width = image.shape[:2]
    x0 = int(rng.integers(0, 2 * padding + 1))
    y0 = int(rng.integers(0, 2 * padding + 1))
    pad = ((padding, padding), (padding, padding)) + ((0, 0),) * (image.ndim - 2)
    out["image"] = np.pad(image, pad)[y0:y0 + height, x0:x0 + width]
    if out.get("labels") is not None:
        out["labels"] = np.pad(out["labels"], pad[:2])[y0:y0 + height, x0:x0 + width]
    dx, dy = padding - x0, padding - y0
    for key in ("keypoints", "negatives"):
        kps = out[key].copy()
        present = kps[..., 2] > 0
        kps[..., 0] = np.where(present, kps[..., 0] + dx, 0.0)
        kps[..., 1] = np.where(present, kps[..., 1] + dy, 0.0)
        out[key] = _drop_outside(kps, height, width)
    out["crop_offset"] = (dx, dy)
    return out


def random_erasing(view: dict, rng: np.random.Generator, p: float = 0.5, area: tuple[float, float] = ERASING_AREA,
                   ratio: tuple[float, float] = ERASING_RATIO, value: float = 0.0, attempts: int = 100) -> dict:
    """With probability p, fill one random rectangle (area share in ``area``, aspect ratio h/w in
    ``ratio``, log-uniform as torchvision) with ``value`` (0 = the mean pixel on a normalised image).
    Keypoints and labels are untouched. ``view["erased"]`` = (x, y, w, h) or None."""
    out = _copy(view)
    out["erased"] = None
    if rng.random() >= p:
        return out
    height, width = out["image"].shape[:2]
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        h = int(round(np.sqrt(target * aspect)))
        w = int(round(np.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            y = int(rng.integers(0, height - h + 1))
            x = int(rng.integers(0, width - w + 1))
            out["image"][y:y + h, x:x + w] = value
            out["erased"] = (x, y, w, h)
            break
    return out


def horizontal_flip(view: dict, scheme: str = "eight") -> dict:
    """Mirror image, labels (left/right parts swapped) and keypoints (left/right indices swapped)."""
    from kprtrack.reid.labels import mirror_labels

    out = _copy(view)
    width = out["image"].shape[1]
    out["image"] = out["image"][:, ::-1].copy()
    if out.get("labels") is not None:
        out["labels"] = mirror_labels(out["labels"], scheme)
    order = list(range(17))
    for a, b in FLIP_PAIRS:
        order[a], order[b] = b, a
    for key in ("keypoints", "negatives"):
        kps = out[key][..., order, :].copy()
        present = kps[..., 2] > 0
        kps[..., 0] = np.where(present, width - 1 - kps[..., 0], 0.0)
        out[key] = kps
    return out


def occluder_mask(occluder: dict, scheme: str = "eight") -> np.ndarray:
    """Where the occluder's person is: its part labels > 0, else its keypoint labeller region, else
    (no usable keypoints) the whole crop."""
    from kprtrack.reid.labels import keypoint_part_labels

    height, width = occluder["image"].shape[:2]
    labels = occluder.get("labels")
    if labels is None or not np.any(labels):
        labels = keypoint_part_labels(occluder["keypoints"], height, width, scheme)
    mask = labels > 0
    return mask if mask.any() else np.ones((height, width), bool)


def bipo(view: dict, occluder: dict, rng: np.random.Generator, p: float = BIPO_P,
         center_y: tuple[float, float] = BIPO_CENTER_Y, scheme: str = "eight") -> dict:
    """Batch-wise Inter-Person Occlusion: with probability p, paste the occluder's person (another
    identity of the batch, same size as the view) with its centre moved to a random point
    (x in [0, W], y in ``center_y`` x H). Covered pixels take the occluder's pixels, covered part
    labels become background, the target's covered keypoints lose their confidence, and the
    occluder's keypoints (moved the same way, those inside the crop) join the negatives.
    ``view["bipo"]`` = the pasted boolean mask [H, W], or None when nothing was pasted."""
    out = _copy(view)
    out["bipo"] = None
    if p <= 0 or rng.random() >= p:
        return out
    height, width = out["image"].shape[:2]
    occ = occluder if occluder["image"].shape[:2] == (height, width) else resize(occluder, (height, width))
    mask = occluder_mask(occ, scheme)
    cx = rng.uniform(0, width)
    cy = rng.uniform(center_y[0] * height, center_y[1] * height)
    dx, dy = int(round(cx - width / 2)), int(round(cy - height / 2))
    # destination window of the shifted occluder
    ys, ye = max(0, dy), min(height, height + dy)
    xs, xe = max(0, dx), min(width, width + dx)
    pasted = np.zeros((height, width), bool)
    if ye > ys and xe > xs:
        pasted[ys:ye, xs:xe] = mask[ys - dy:ye - dy, xs - dx:xe - dx]
    image = out["image"]
    source = np.zeros_like(image)
    source[ys:ye, xs:xe] = np.asarray(occ["image"], image.dtype)[ys - dy:ye - dy, xs - dx:xe - dx]
    image[pasted] = source[pasted]
    if out.get("labels") is not None:
        out["labels"][pasted] = 0
    own = out["keypoints"].copy()
    ix = np.clip(np.round(own[:, 0]).astype(int), 0, width - 1)
    iy = np.clip(np.round(own[:, 1]).astype(int), 0, height - 1)
    covered = (own[:, 2] > 0) & pasted[iy, ix]
    own[covered] = 0.0
    out["keypoints"] = own
    other = np.asarray(occ["keypoints"], np.float32).copy()
    present = other[:, 2] > 0
    other[:, 0] = np.where(present, other[:, 0] + dx, 0.0)
    other[:, 1] = np.where(present, other[:, 1] + dy, 0.0)
    other = _drop_outside(other, height, width)
    if np.any(other[:, 2] > 0):
        out["negatives"] = np.concatenate([out["negatives"], other[None]], axis=0)
    out["bipo"] = pasted
    out["bipo_shift"] = (dx, dy)
    return out
