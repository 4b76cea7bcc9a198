"""Keypoint prompts for KPR: Gaussian heatmaps of a person's own (positive) and other people's
(negative) keypoints, grouped into prompt parts.

Channel order of a prompt: [background, negative, part_1 .. part_P] where background =
clamp(1 - sum(other channels), 0, 1) (upstream ``AddBackgroundMask``, 'sum' strategy). Without
negatives the negative channel is omitted. Keypoints are PoseTrack-17 (COCO index layout).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

# Keypoint indices (PoseTrack order; head = nose, head_bottom, head_top, ears) per prompt part,
# in upstream's channel order (CocoToEightBodyMasks / CocoToSixBodyMasks).
PROMPT_GROUPS: dict[str, dict[str, tuple[int, ...]]] = {
    "cck8": {
        "head": (0, 1, 2, 3, 4), "left_arm": (5, 7, 9), "right_arm": (6, 8, 10), "torso": (5, 6, 11, 12),
        "left_leg": (13, 15), "right_leg": (14, 16), "left_feet": (15,), "right_feet": (16,),
    },
    "cck6": {
        "head": (0, 1, 2, 3, 4), "left_arm": (7, 9), "right_arm": (8, 10), "left_leg": (13, 15),
        "right_leg": (14, 16), "torso": (5, 6, 11, 12),
    },
    "cck4": {
        "head": (0, 1, 2, 3, 4), "arms": (7, 9, 8, 10), "legs": (13, 15, 14, 16), "torso": (5, 6, 11, 12),
    },
}
VIS_THRESH = 0.3  # keypoints with confidence <= this are not drawn (upstream vis_thresh)
G_SCALE = 11  # Gaussian radius = int(width / 11) pixels of the prompt


@lru_cache(maxsize=8)
def gaussian_kernel(width: int) -> np.ndarray:
    """(2r+1)^2 Gaussian, r = int(width / 11), std = (2r+1) / 4, peak 1 (upstream ``gkern``)."""
    size = 2 * int(width / G_SCALE) + 1
    std = size / 4
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (offsets / std) ** 2)
    kernel = np.outer(g, g).astype(np.float32)
    kernel.flags.writeable = False
    return kernel


def keypoint_heatmaps(keypoints: np.ndarray, size: tuple[int, int], vis_thresh: float = VIS_THRESH) -> np.ndarray:
    """[17, 3] keypoints (x, y, conf) in prompt pixels -> [17, H, W] heatmaps.

    Keypoints at or below ``vis_thresh`` or outside the prompt are left empty.
    """
    h, w = size
    out = np.zeros((len(keypoints), h, w), np.float32)
    kernel = gaussian_kernel(w)
    r = kernel.shape[0] // 2
    # Thresholds compare in float32: the records store float32, and 0.3 must not pass "> 0.3".
    thresh = np.float32(vis_thresh)
    for i, (x, y, conf) in enumerate(np.asarray(keypoints, np.float32)):
        if not (conf > thresh) or not (0 <= x < w and 0 <= y < h):
            continue
        cx, cy = int(x), int(y)
        top, bottom = min(r, cy), min(r, h - 1 - cy)
        left, right = min(r, cx), min(r, w - 1 - cx)
        out[i, cy - top:cy + bottom + 1, cx - left:cx + right + 1] = \
            kernel[r - top:r + bottom + 1, r - left:r + right + 1]
    return out


def empty_prompt(size: tuple[int, int], grouping: str = "cck8", negative: bool = True) -> np.ndarray:
    """The no-prompt input: all zeros but the background channel (what the model saw without keypoints)."""
    channels = 1 + (1 if negative else 0) + len(PROMPT_GROUPS[grouping])
    prompt = np.zeros((channels, *size), np.float32)
    prompt[0] = 1.0
    return prompt


def build_prompt(positive: np.ndarray | None, negatives: np.ndarray | None, size: tuple[int, int],
                 grouping: str = "cck8", negative: bool = True, vis_thresh: float = VIS_THRESH) -> np.ndarray:
    """One person's prompt [C, H, W].

    positive: [17, 3] own keypoints in prompt pixels; negatives: [M, 17, 3] other people's
    keypoints in the same pixels (those outside the prompt are ignored).
    A person without any confident keypoint of their own keeps the negative channel: as upstream
    (torchreid ``dataset.py`` builds the negative mask whatever the target's keypoints), the model
    is still told where the OTHER people are, the heavy occlusion KPR is made for. With no
    confident keypoint at all this equals ``empty_prompt``.
    """
    if grouping not in PROMPT_GROUPS:
        raise ValueError(f"unknown prompt grouping {grouping!r} (known: {', '.join(PROMPT_GROUPS)})")
    own = np.zeros((17, 3), np.float32) if positive is None or len(positive) == 0 else positive
    heat = keypoint_heatmaps(own, size, vis_thresh)
    channels = [heat[list(idx)].max(axis=0) for idx in PROMPT_GROUPS[grouping].values()]
    if negative:
        neg = np.zeros(size, np.float32)
        if negatives is not None:
            for other in np.asarray(negatives, np.float32).reshape(-1, 17, 3):
                neg = np.maximum(neg, keypoint_heatmaps(other, size, vis_thresh).max(axis=0))
        channels.insert(0, neg)
    stack = np.stack(channels)
    background = np.clip(1.0 - stack.sum(axis=0), 0.0, 1.0)
    return np.concatenate([background[None], stack]).astype(np.float32)


def to_crop_coordinates(keypoints: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frame-pixel keypoints [..., 17, 3] -> prompt pixels of the crop ``box`` (x1 y1 x2 y2) resized to ``size``.

    Keypoints outside the box get confidence 0 (upstream drops them the same way).
    """
    k = np.array(keypoints, np.float32, copy=True)
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
    inside = (k[..., 0] >= x1) & (k[..., 0] < x2) & (k[..., 1] >= y1) & (k[..., 1] < y2)
    k[..., 0] = (k[..., 0] - x1) * size[1] / bw
    k[..., 1] = (k[..., 1] - y1) * size[0] / bh
    k[..., 2] = np.where(inside, k[..., 2], 0.0)
    return k


def frame_prompts(keypoints: np.ndarray, boxes: np.ndarray, size: tuple[int, int], grouping: str = "cck8",
                  negative: bool = True, vis_thresh: float = VIS_THRESH) -> np.ndarray:
    """Prompts [N, C, H, W] for all people of a frame: each person's own keypoints are positive,
    every other person's keypoints that fall inside this person's box are negative."""
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, 17, 3)
    n = len(boxes)
    out = []
    for i in range(n):
        mine = to_crop_coordinates(keypoints[i], boxes[i], size)
        others = to_crop_coordinates(np.delete(keypoints, i, axis=0), boxes[i], size) if negative else None
        out.append(build_prompt(mine, others, size, grouping, negative, vis_thresh))
    channels = 1 + (1 if negative else 0) + len(PROMPT_GROUPS[grouping])
    return np.stack(out) if out else np.zeros((0, channels, *size), np.float32)
