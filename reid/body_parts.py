"""Body-part groupings of the 17 PoseTrack keypoints, shared by prompts and part descriptors."""
from __future__ import annotations

# PoseTrack order: 0 nose, 1 head_bottom, 2 head_top, 3 left_ear, 4 right_ear, 5 l_shoulder,
# 6 r_shoulder, 7 l_elbow, 8 r_elbow, 9 l_wrist, 10 r_wrist, 11 l_hip, 12 r_hip, 13 l_knee,
# 14 r_knee, 15 l_ankle, 16 r_ankle.

# KPR's "eight" parts: each part is a list of limb segments (keypoint index pairs) whose
# thickened union is the part's region.
EIGHT_PARTS: dict[str, list[tuple[int, int]]] = {
    "head": [(0, 1), (0, 2), (1, 2)],
    "left_arm": [(5, 7), (7, 9)],
    "right_arm": [(6, 8), (8, 10)],
    "torso": [(5, 6), (5, 11), (6, 12), (11, 12), (5, 12), (6, 11)],
    "left_leg": [(11, 13), (13, 15)],
    "right_leg": [(12, 14), (14, 16)],
    "left_feet": [(15, 15)],
    "right_feet": [(16, 16)],
}


# KPR's output part schemes (upstream masks.preprocess): names of part embeddings 1..K, which are also
# the part labels 1..K of human parsing (0 = background).
PART_SCHEMES: dict[str, tuple[str, ...]] = {
    "eight": ("head", "left_arm", "right_arm", "torso", "left_leg", "right_leg", "left_feet", "right_feet"),
    "five_v": ("head", "upper_arms_torso", "lower_arms_torso", "legs", "feet"),
}


def part_keypoints(parts: dict[str, list[tuple[int, int]]]) -> dict[str, list[int]]:
    return {name: sorted({j for seg in segs for j in seg}) for name, segs in parts.items()}
