"""Drawing for the synthetic demo: walking limb figures and a textured street background.

Pure functions of their arguments (no global random state) so the demo data set is
reproducible byte for byte. Everything is drawn with OpenCV primitives: each person is drawn
twice with the same geometry, once in colour (anti-aliased) and once as a binary silhouette,
so ground-truth boxes and occlusion come from exactly what is on screen.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

# PoseTrack joint indices (see kprtrack.record.POSETRACK_KEYPOINTS).
NOSE, HEAD_BOTTOM, HEAD_TOP, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16

BGR = tuple[int, int, int]


@dataclass(frozen=True)
class Appearance:
    """What makes one identity recognisable: clothing and skin/hair colours (BGR)."""

    hue: float  # of the shirt, kept to space other people's shirts away from it
    shirt: BGR
    trousers: BGR
    skin: BGR
    hair: BGR
    shoes: BGR
    long_sleeves: bool
    build: float  # body width factor, ~0.85 (slim) .. 1.2 (broad)


@dataclass
class Pose:
    """One rendered body: 17 PoseTrack joints plus the extra points the drawing needs."""

    joints: np.ndarray  # [17, 2] float, image pixels (ears = head sides, never annotated)
    head_center: np.ndarray  # [2]
    head_radius: float
    toes: np.ndarray  # [2, 2] left, right toe points
    facing: int  # +1 walking right, -1 walking left
    height: float  # figure height in pixels (ground to head top)


def _bgr_from_hsv(h: float, s: float, v: float) -> BGR:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


_TROUSERS = ((110, 60, 30), (40, 40, 40), (120, 170, 190), (120, 120, 120), (40, 70, 110),
             (50, 100, 80), (220, 220, 215), (90, 40, 120), (30, 30, 140))
_SKIN = ((170, 200, 240), (130, 170, 220), (90, 130, 190), (60, 90, 140), (45, 65, 100))
_HAIR = ((20, 20, 20), (30, 50, 90), (60, 110, 170), (180, 180, 180), (40, 40, 120), (20, 60, 60))


def random_appearances(rng: np.random.Generator, count: int,
                       first_hue: float | None = None) -> list[Appearance]:
    """``count`` identities whose shirt hues are spread evenly around the colour wheel.

    ``first_hue`` pins the first hue (to fit newcomers around a person already in the scene).
    """
    start = rng.random() if first_hue is None else first_hue
    hues = [(start + i / max(count, 1) + (rng.uniform(-0.03, 0.03) if i or first_hue is None else 0))
            % 1.0 for i in range(count)]
    order = rng.permutation(count)  # trouser/skin/hair choices independent of hue order
    people = []
    for i in range(count):
        people.append(Appearance(
            hue=hues[i],
            shirt=_bgr_from_hsv(hues[i], rng.uniform(0.55, 0.95), rng.uniform(0.6, 0.95)),
            trousers=_TROUSERS[(int(order[i]) + int(rng.integers(0, 3))) % len(_TROUSERS)],
            skin=_SKIN[int(rng.integers(0, len(_SKIN)))],
            hair=_HAIR[int(rng.integers(0, len(_HAIR)))],
            shoes=(int(rng.integers(10, 60)),) * 2 + (int(rng.integers(10, 90)),),
            long_sleeves=bool(rng.random() < 0.5),
            build=float(rng.uniform(0.85, 1.2)),
        ))
    return people


def walking_pose(ground: tuple[float, float], height: float, phase: float, stride: float,
                 facing: int, build: float) -> Pose:
    """Joint positions of a figure standing on ``ground`` (x, y of the feet).

    ``phase`` is the gait cycle angle, ``stride`` in [0, 1] scales the swing (0 = standing).
    Three-quarter view towards the camera: the person's left side is on the image's right.
    """
    gx, gy = ground
    h = height
    f = float(facing)
    swing = np.clip(stride, 0.0, 1.0)
    bob = -0.012 * h * abs(np.cos(phase)) * swing
    half_shoulder, half_hip = 0.085 * h * build, 0.06 * h * build
    thigh, shin, upper_arm, forearm = 0.245 * h, 0.235 * h, 0.16 * h, 0.15 * h

    hip_y = gy - 0.52 * h + bob
    shoulder_y = hip_y - 0.30 * h
    lean = 0.02 * h * f * swing
    joints = np.zeros((17, 2), np.float64)
    joints[L_HIP] = (gx + half_hip, hip_y)
    joints[R_HIP] = (gx - half_hip, hip_y)
    joints[L_SHOULDER] = (gx + half_shoulder + lean, shoulder_y)
    joints[R_SHOULDER] = (gx - half_shoulder + lean, shoulder_y)

    def limb(start: np.ndarray, angle: float, length: float) -> np.ndarray:
        # angle from straight down, positive = towards the walking direction
        return start + length * np.array([f * np.sin(angle), np.cos(angle)])

    toes = np.zeros((2, 2), np.float64)
    for side, (hip, knee, ankle) in enumerate(((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE))):
        leg_phase = phase + np.pi * side
        thigh_angle = 0.42 * swing * np.sin(leg_phase)
        knee_bend = 0.75 * swing * max(0.0, np.sin(leg_phase + np.pi / 2))  # bends on the swing
        joints[knee] = limb(joints[hip], thigh_angle, thigh)
        joints[ankle] = limb(joints[knee], thigh_angle - knee_bend, shin)
        toes[side] = joints[ankle] + np.array([f * 0.075 * h, 0.02 * h])
    for side, (shoulder, elbow, wrist) in enumerate(
            ((L_SHOULDER, L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW, R_WRIST))):
        arm_phase = phase + np.pi * (1 - side)  # arms swing against the legs
        arm_angle = 0.38 * swing * np.sin(arm_phase) + 0.05
        joints[elbow] = limb(joints[shoulder], arm_angle, upper_arm)
        joints[wrist] = limb(joints[elbow], arm_angle + 0.25 + 0.35 * swing, forearm)

    neck = (joints[L_SHOULDER] + joints[R_SHOULDER]) / 2
    radius = 0.068 * h
    center = neck + np.array([0.015 * h * f, -0.04 * h - radius])
    # chin and crown just inside the drawn head so every joint lies on the rendered figure
    joints[HEAD_BOTTOM] = center + np.array([0.2 * radius * f, 0.9 * radius])
    joints[HEAD_TOP] = center - np.array([0.0, 0.9 * radius])
    joints[NOSE] = center + np.array([0.55 * radius * f, 0.2 * radius])
    joints[L_EAR] = center + np.array([0.9 * radius, 0.0])
    joints[R_EAR] = center - np.array([0.9 * radius, 0.0])
    return Pose(joints, center, radius, toes, int(facing), float(height))


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def draw_person(canvas: np.ndarray, pose: Pose, look: Appearance, silhouette: bool = False) -> None:
    """Draw ``pose`` onto ``canvas`` in ``look``'s colours, or as a 255 silhouette (same shape)."""
    h = pose.height
    line = cv2.LINE_8 if silhouette else cv2.LINE_AA

    def colour(c: BGR) -> BGR | int:
        return 255 if silhouette else c

    def seg(a: np.ndarray, b: np.ndarray, c: BGR, width: float) -> None:
        cv2.line(canvas, _pt(a), _pt(b), colour(c), max(1, int(round(width))), line)

    def dot(p: np.ndarray, r: float, c: BGR) -> None:
        cv2.circle(canvas, _pt(p), max(1, int(round(r))), colour(c), -1, line)

    j = pose.joints
    ap = look
    leg_w, arm_w = 0.07 * h * ap.build, 0.05 * h * ap.build
    near_is_left = pose.facing > 0
    arms = ((L_SHOULDER, L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW, R_WRIST))
    far_arm, near_arm = (arms[1], arms[0]) if near_is_left else (arms[0], arms[1])

    def draw_arm(shoulder: int, elbow: int, wrist: int) -> None:
        seg(j[shoulder], j[elbow], ap.shirt, arm_w)
        seg(j[elbow], j[wrist], ap.shirt if ap.long_sleeves else ap.skin, arm_w * 0.85)
        dot(j[wrist], arm_w * 0.55, ap.skin)

    draw_arm(*far_arm)
    for side, (hip, knee, ankle) in enumerate(((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE))):
        seg(j[hip], j[knee], ap.trousers, leg_w)
        seg(j[knee], j[ankle], ap.trousers, leg_w * 0.9)
        seg(j[ankle], pose.toes[side], ap.shoes, leg_w * 0.7)
    seg(j[L_HIP], j[R_HIP], ap.trousers, leg_w)
    torso = np.array([j[L_SHOULDER], j[R_SHOULDER], j[R_HIP], j[L_HIP]])
    torso[:, 1] += np.array([0.0, 0.0, 0.02 * h, 0.02 * h])  # shirt covers the belt line
    cv2.fillConvexPoly(canvas, np.round(torso).astype(np.int32), colour(ap.shirt), line)
    seg(j[L_SHOULDER], j[R_SHOULDER], ap.shirt, arm_w)
    neck = (j[L_SHOULDER] + j[R_SHOULDER]) / 2
    seg(neck, pose.head_center, ap.skin, 0.045 * h)
    draw_arm(*near_arm)
    dot(pose.head_center, pose.head_radius, ap.skin)
    # hair: a cap over the top half of the head, shifted to the back of the head
    r = int(round(pose.head_radius * 1.05))
    start = 180 if pose.facing > 0 else 200
    cv2.ellipse(canvas, _pt(pose.head_center - np.array([0.1 * r * pose.facing, 0.05 * r])),
                (r, r), 0, start - 20 * pose.facing, start + 180 - 20 * pose.facing,
                colour(ap.hair), -1, line)


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive pixel bounds (x1, y1, x2, y2) of the non-zero pixels, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: random values on a coarse grid, resized smoothly."""
    coarse = rng.uniform(-1, 1, (max(2, height // cell + 2), max(2, width // cell + 2)))
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def street_background(rng: np.random.Generator, width: int, height: int,
                      horizon: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """A static textured scene and its ignore regions (int polygons [M, 2]).

    Buildings with windows above the horizon, a paved ground plane below it, and a poster
    showing a crowd (plus a crowd strip on the horizon) that a detector may fire on: those
    areas are PoseTrack-style ignore regions.
    """
    img = np.zeros((height, width, 3), np.float32)
    y_h = int(horizon)
    wall = np.array(_bgr_from_hsv(rng.random(), rng.uniform(0.1, 0.35), rng.uniform(0.55, 0.8)),
                    np.float32)
    ground = np.array(_bgr_from_hsv(rng.random(), rng.uniform(0.05, 0.2), rng.uniform(0.35, 0.55)),
                      np.float32)
    img[:y_h] = wall
    img[y_h:] = ground
    x = 0
    while x < width:  # building facades of varied colour with window grids
        w = int(rng.integers(width // 8, width // 3))
        top = int(rng.integers(0, max(1, y_h // 3)))
        facade = np.array(_bgr_from_hsv(rng.random(), rng.uniform(0.1, 0.4), rng.uniform(0.45, 0.85)))
        img[top:y_h, x:x + w] = facade
        win = max(4, w // 10)
        for wy in range(top + win, y_h - win, 2 * win):
            for wx in range(x + win // 2, x + w - win, 2 * win):
                shade = rng.uniform(0.25, 0.6)
                img[wy:wy + win, wx:wx + win] = facade * shade
        x += w
    # perspective paving: lines converging to a vanishing point on the horizon
    vanish = width * rng.uniform(0.3, 0.7)
    for k in range(-12, 13):
        bottom_x = width / 2 + k * width / 8
        cv2.line(img, (int(vanish), y_h), (int(bottom_x), height), (ground * 0.8).tolist(), 1)
    for depth in range(1, 16):  # horizontal joints at equal ground steps: denser far away
        y = y_h + int((height - y_h) * 0.8 / depth)
        cv2.line(img, (0, y), (width, y), (ground * 0.85).tolist(), 1)

    regions: list[np.ndarray] = []
    # poster with a printed crowd, on a facade
    pw, ph = int(width * rng.uniform(0.16, 0.24)), int(y_h * rng.uniform(0.45, 0.65))
    px = int(rng.integers(0, width - pw))
    py = int(rng.integers(max(0, y_h - ph - y_h // 4), max(1, y_h - ph)))
    img[py:py + ph, px:px + pw] = np.array(_bgr_from_hsv(rng.random(), 0.2, 0.9))
    _printed_crowd(img, rng, px, py, pw, ph, rows=2)
    tilt = int(rng.integers(2, 6))  # a slightly skewed outline, not an axis-aligned box
    regions.append(np.array([[px - 2, py - 2], [px + pw // 2, py - 2 - tilt], [px + pw + 2, py - 2],
                             [px + pw + 2, py + ph + 2], [px - 2, py + ph + 2]], np.int32))
    # a far-away crowd strip along the horizon
    cw = int(width * rng.uniform(0.2, 0.3))
    cx = int(rng.integers(0, width - cw))
    ch = max(8, int((height - y_h) * 0.12))
    _printed_crowd(img, rng, cx, y_h - ch // 2, cw, ch, rows=1)
    regions.append(np.array([[cx - 3, y_h - ch // 2 - 3], [cx + cw + 3, y_h - ch // 2 - 3],
                             [cx + cw + 3, y_h + ch // 2 + 3], [cx + cw // 2, y_h + ch // 2 + 6],
                             [cx - 3, y_h + ch // 2 + 3]], np.int32))

    img += 22 * _smooth_noise(rng, height, width, 48)[..., None]
    img += 8 * _smooth_noise(rng, height, width, 6)[..., None]
    img += rng.normal(0, 5, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), [np.clip(r, [0, 0], [width - 1, height - 1])
                                                    for r in regions]


def _printed_crowd(img: np.ndarray, rng: np.random.Generator, x: int, y: int, w: int, h: int,
                   rows: int) -> None:
    """Tiny head-and-shoulders figures packed in a box (a crowd photo or distant spectators)."""
    size = max(3, h // (rows * 3))
    for r in range(rows):
        cy = y + int((r + 0.6) * h / rows)
        for cx in range(x + size, x + w - size, int(size * 1.6)):
            body = _bgr_from_hsv(rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9))
            cv2.ellipse(img, (cx, cy + size), (size, int(size * 1.3)), 0, 180, 360, body, -1)
            cv2.circle(img, (cx, cy - size // 3), max(2, size * 2 // 3), _SKIN[int(rng.integers(0, 5))], -1)
