"""Keypoint layouts: COCO-17 (what most public models predict) and PoseTrack-17 (what we output).

The two layouts share 15 joints at the same indices. They differ at 1 and 2: COCO has the eyes,
PoseTrack has ``head_bottom`` (upper neck) and ``head_top``. A COCO model cannot see those two
joints, so ``coco_to_posetrack`` places them geometrically (see there); that mapping is an
APPROXIMATION and costs head accuracy in PoseTrack evaluation.
"""
from __future__ import annotations

import warnings

import numpy as np

from kprtrack.record import POSETRACK_KEYPOINTS

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
LAYOUTS = {"coco": COCO_KEYPOINTS, "posetrack": POSETRACK_KEYPOINTS}

_LIMB_PAIRS = ((3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# Left/right joints swapped by a horizontal flip. PoseTrack's head_bottom/head_top are central.
FLIP_PAIRS = {"coco": ((1, 2),) + _LIMB_PAIRS, "posetrack": _LIMB_PAIRS}

# Where the missing PoseTrack head joints go, as fractions along body directions (see below).
# Checked with MoveNet on the 14 annotated people of shared/data/posetrack18 (GT boxes): PCKh@0.5
# head_bottom 93%, head_top 64%, against 0% / 36% for copying the eyes (a small sample: rough).
NECK_FROM_SHOULDERS = 0.3  # head_bottom: 30% of the way from the shoulder midpoint to the nose
HEAD_TOP_BEYOND_EYES = 0.6  # head_top: eyes + 0.6 x (eyes - head_bottom)

_warned: set[str] = set()


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        from kprtrack.errors import InputError

        raise InputError(f"pose.layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    return layout


def flip_index(layout: str) -> np.ndarray:
    """Permutation that maps joint k of a flipped image to joint k of the original."""
    index = np.arange(len(LAYOUTS[layout]))
    for a, b in FLIP_PAIRS[layout]:
        index[a], index[b] = b, a
    return index


def coco_to_posetrack(keypoints: np.ndarray) -> np.ndarray:
    """[N, 17, 3] COCO order -> PoseTrack order. Head joints 1 and 2 are approximate.

    head_bottom (the upper neck in PoseTrack's MPII-style labels) is put between the shoulder
    midpoint and the nose; head_top is extrapolated from it through the eye midpoint (the eyes sit
    roughly half-way up the head). Their score is the weakest score of the joints used, so a
    face the model cannot see yields low-confidence head joints rather than confident guesses.
    """
    kpts = np.asarray(keypoints, dtype=np.float32)
    out = kpts.copy()
    if len(kpts) == 0:
        return out
    nose, l_eye, r_eye = kpts[:, 0], kpts[:, 1], kpts[:, 2]
    shoulders = (kpts[:, 5, :2] + kpts[:, 6, :2]) / 2
    eyes = (l_eye[:, :2] + r_eye[:, :2]) / 2
    neck = shoulders + NECK_FROM_SHOULDERS * (nose[:, :2] - shoulders)
    top = eyes + HEAD_TOP_BEYOND_EYES * (eyes - neck)
    neck_score = np.minimum.reduce([kpts[:, 5, 2], kpts[:, 6, 2], nose[:, 2]])
    top_score = np.minimum.reduce([l_eye[:, 2], r_eye[:, 2], neck_score])
    out[:, 1, :2], out[:, 1, 2] = neck, neck_score
    out[:, 2, :2], out[:, 2, 2] = top, top_score
    return out


def to_posetrack(keypoints: np.ndarray, layout: str) -> np.ndarray:
    return coco_to_posetrack(keypoints) if layout == "coco" else np.asarray(keypoints, np.float32)


def warn_approximate_head(source: str) -> None:
    """Warn once per source that head_bottom/head_top are guessed from a COCO model.

    Call it where COCO-layout keypoints meet PoseTrack evaluation (the estimators call it when
    they first convert; ``kprtrack eval`` may call it again, it stays silent after the first).
    """
    if source in _warned:
        return
    _warned.add(source)
    message = (f"{source}: COCO-layout pose model; PoseTrack head_bottom/head_top are approximated "
               "from eyes, nose and shoulders, which lowers PoseTrack head accuracy. Use a "
               "PoseTrack-trained model (e.g. pose.weights=hrnet_w32_posetrack18_256x192) for "
               "PoseTrack evaluation.")
    warnings.warn(message, stacklevel=3)
