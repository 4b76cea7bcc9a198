"""A small synthetic PoseTrack21-style data set, generated offline and deterministically.

``generate_demo(root)`` writes ``images/val/<seq>/NNNNNN.jpg``, ``posetrack_data/val/<seq>.json``
and ``posetrack_mot/mot/val/<seq>/{image_info.json, gt/gt.txt}`` exactly as PoseTrack21 lays
them out, so the demo goes through the same loader, pipeline and evaluation as the real data.

Every sequence is scripted to contain what makes tracking hard: two people crossing at almost
the same depth (one occludes the other), someone who walks out of the frame and comes back
(same track_id), an identity that also appears in another sequence (same person_id), frames
without labels, and ignore regions over a printed crowd. Random parameters come from ``seed``.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from kprtrack.data.demo_render import (
    Appearance, Pose, draw_person, mask_bounds, random_appearances, street_background, walking_pose,
)
from kprtrack.errors import InputError
from kprtrack.io import write_bytes, write_json, write_text
from kprtrack.record import POSETRACK_KEYPOINTS, POSETRACK_SKELETON

# Bump whenever the output for a given seed changes, so cached demos are regenerated.
DEMO_VERSION = 1
MARKER = ".kprtrack_demo_complete.json"
SPLIT = "val"
JPEG_QUALITY = 90
_FIRST_VID_ID = 900001  # outside the range real PoseTrack video ids use
_EARS = (3, 4)  # PoseTrack keeps ears as unlabeled placeholders
# A person is "fully hidden" (no annotation) below this many visible pixels / visible fraction.
_MIN_VISIBLE_PIXELS = 25
_MIN_VISIBLE_FRACTION = 0.04

CATEGORIES = [{
    "supercategory": "person", "id": 1, "name": "person",
    "keypoints": list(POSETRACK_KEYPOINTS),
    "skeleton": [list(pair) for pair in POSETRACK_SKELETON],
}]


@dataclass
class _Walker:
    """One person's state while a sequence is simulated."""

    person_id: int
    track_id: int
    look: Appearance
    x: float
    ground_y: float
    speed: float  # body heights per frame
    facing: int
    drift: float  # ground_y change per frame (walking slightly towards/away from the camera)
    phase: float
    turn_after_out: int | None  # frames spent outside before turning back; None = gone for good
    frames_out: int = 0


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    horizon: float
    ground_min: float
    ground_max: float

    def body_height(self, ground_y: float) -> float:
        # flat ground seen from above head height: size grows linearly below the horizon
        return 1.07 * (ground_y - self.horizon)


_LIMITS = {"seed": (0, 2**63 - 1), "num_sequences": (1, 99), "num_frames": (30, 9999),
           "width": (160, 4096), "height": (120, 4096)}


def _check_params(**params: Any) -> None:
    for name, (low, high) in _LIMITS.items():
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise InputError(f"demo parameter {name}={value!r} must be an integer in {low}..{high}")


def _sequence_names(num_sequences: int) -> list[tuple[str, str]]:
    """(vid_id, sequence name) pairs, PoseTrack style: '900001_demo_val'."""
    return [(f"{_FIRST_VID_ID + i:06d}", f"{_FIRST_VID_ID + i:06d}_demo_{SPLIT}")
            for i in range(num_sequences)]


def _cast(rng: np.random.Generator, num_sequences: int) -> tuple[list[list[int]], list[Appearance]]:
    """Person ids per sequence (3-6 each; from the second on, one identity comes from the
    previous sequence) and every identity's look, indexed by person id."""
    looks: list[Appearance] = []
    cast: list[list[int]] = []
    for s in range(num_sequences):
        count = int(rng.integers(3, 7))
        if s == 0:
            ids = list(range(count))
            looks += random_appearances(rng, count)
        else:
            returning = int(rng.choice(cast[s - 1]))
            # newcomers' shirt hues are spread around the returning person's hue
            fresh = random_appearances(rng, count, first_hue=looks[returning].hue)[1:]
            ids = list(range(len(looks), len(looks) + len(fresh)))
            looks += fresh
            ids.insert(int(rng.integers(0, len(ids) + 1)), returning)
        cast.append(ids)
    return cast, looks


def _script_walkers(rng: np.random.Generator, scene: _Scene, frames: int, person_ids: list[int],
                    looks: list[Appearance]) -> list[_Walker]:
    """Roles: two crossers, one who leaves and comes back, the rest wander."""
    w = scene.width
    walkers: list[_Walker] = []
    order = [int(i) for i in rng.permutation(len(person_ids))]

    def add(slot: int, **state: Any) -> None:
        pid = person_ids[order[slot]]
        walkers.append(_Walker(person_id=pid, track_id=order[slot], look=looks[pid],
                               phase=float(rng.uniform(0, 2 * np.pi)), **state))

    # crossers meet at (x_meet, t_meet), the second a few pixels nearer the camera
    depth = rng.uniform(scene.ground_min + 0.3 * (scene.ground_max - scene.ground_min), scene.ground_max - 16)
    x_meet, t_meet = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.6) * frames
    for slot, (facing, gy) in enumerate(((1, depth), (-1, depth + rng.uniform(5, 14)))):
        speed = rng.uniform(0.025, 0.04)
        x0 = x_meet - facing * speed * scene.body_height(gy) * t_meet
        add(slot, x=float(x0), ground_y=float(gy), speed=float(speed), facing=facing, drift=0.0,
            turn_after_out=None)
    # the returner walks out through the nearer edge around t_exit, waits outside, comes back
    gy = rng.uniform(scene.ground_min, scene.ground_max)
    facing = 1 if rng.random() < 0.5 else -1
    speed = rng.uniform(0.04, 0.055)
    step = speed * scene.body_height(gy)
    t_exit = rng.uniform(0.12, 0.25) * frames
    exit_x = w + 0.25 * scene.body_height(gy) if facing > 0 else -0.25 * scene.body_height(gy)
    add(2, x=float(exit_x - facing * step * t_exit), ground_y=float(gy), speed=float(speed),
        facing=facing, drift=0.0, turn_after_out=int(rng.integers(5, 10)))
    for slot in range(3, len(person_ids)):
        add(slot, x=float(rng.uniform(0.05, 0.95) * w),
            ground_y=float(rng.uniform(scene.ground_min, scene.ground_max)),
            speed=float(rng.choice([0.0, rng.uniform(0.005, 0.02), rng.uniform(0.02, 0.04)])),
            facing=1 if rng.random() < 0.5 else -1, drift=float(rng.uniform(-0.4, 0.4)),
            turn_after_out=int(rng.integers(3, 15)) if rng.random() < 0.6 else None)
    return walkers


def _step(walker: _Walker, scene: _Scene) -> None:
    size = scene.body_height(walker.ground_y)
    dx = walker.facing * walker.speed * size
    walker.x += dx
    walker.phase += 2 * np.pi * abs(dx) / (0.8 * size)  # one gait cycle = two steps ~ 0.8 heights
    walker.ground_y += walker.drift
    if not scene.ground_min <= walker.ground_y <= scene.ground_max:
        walker.drift = -walker.drift
        walker.ground_y = float(np.clip(walker.ground_y, scene.ground_min, scene.ground_max))
    outside = walker.x < -0.3 * size or walker.x > scene.width + 0.3 * size
    walker.frames_out = walker.frames_out + 1 if outside else 0
    if walker.turn_after_out is not None and walker.frames_out >= walker.turn_after_out:
        walker.facing, walker.turn_after_out, walker.frames_out = -walker.facing, None, 0


def _pose_of(walker: _Walker, scene: _Scene) -> Pose:
    return walking_pose((walker.x, walker.ground_y), scene.body_height(walker.ground_y),
                        walker.phase, walker.speed / 0.035, walker.facing, walker.look.build)


def _round(values: Any) -> list[float]:
    return [round(float(v), 2) for v in values]


def _render_frame(background: np.ndarray, walkers: list[_Walker], scene: _Scene,
                  grain: np.ndarray | None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw everyone far to near, add sensor ``grain`` (int16, image-sized); return the
    JPEG-ready image and per-person ground truth."""
    image = background.copy()
    owner = np.zeros(image.shape[:2], np.uint8)  # who is visible at each pixel (index + 1)
    silhouette = np.zeros(image.shape[:2], np.uint8)
    people = []
    for rank, walker in enumerate(sorted(walkers, key=lambda p: (p.ground_y, p.track_id))):
        pose = _pose_of(walker, scene)
        # only the area around the figure is cleared and scanned: limbs stay within 0.1 height
        # of the joints, and whole-frame mask passes would dominate the generation time
        points = np.vstack([pose.joints, pose.toes])
        margin = 0.1 * pose.height + 3
        x0, y0 = np.floor(points.min(axis=0) - margin).astype(int).clip(0)
        x1, y1 = np.ceil(points.max(axis=0) + margin).astype(int) + 1
        if x0 >= scene.width or y0 >= scene.height or x1 <= 0 or y1 <= 0:
            continue
        area = silhouette[y0:y1, x0:x1]
        area[:] = 0
        draw_person(silhouette, pose, walker.look, silhouette=True)
        bounds = mask_bounds(area)
        if bounds is None:
            continue
        draw_person(image, pose, walker.look)
        owner[y0:y1, x0:x1][area > 0] = rank + 1
        bx1, by1, bx2, by2 = bounds
        people.append((rank, walker, pose, (bx1 + x0, by1 + y0, bx2 + x0, by2 + y0),
                       int(np.count_nonzero(area))))
    visible = np.bincount(owner.ravel(), minlength=len(walkers) + 2)
    if grain is not None:
        image = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)

    truth = []
    for rank, walker, pose, (x1, y1, x2, y2), area in people:
        seen = int(visible[rank + 1])
        if seen < _MIN_VISIBLE_PIXELS or seen < _MIN_VISIBLE_FRACTION * area:
            continue  # fully hidden behind someone nearer, or only a sliver at the border
        keypoints = np.zeros((17, 3), np.float64)
        inside = ((pose.joints[:, 0] > 0) & (pose.joints[:, 0] < scene.width - 1)
                  & (pose.joints[:, 1] > 0) & (pose.joints[:, 1] < scene.height - 1))
        inside[list(_EARS)] = False
        keypoints[inside, :2] = pose.joints[inside]
        keypoints[inside, 2] = 1
        if not inside.any():
            continue
        cx, cy = pose.head_center
        r = pose.head_radius
        # drawing snaps to whole pixels, so a joint can sit half a pixel off the figure
        joints = pose.joints[inside]
        x1, y1 = min(x1, joints[:, 0].min()), min(y1, joints[:, 1].min())
        x2, y2 = max(x2 + 1, joints[:, 0].max()), max(y2 + 1, joints[:, 1].max())
        truth.append({
            "track_id": walker.track_id, "person_id": walker.person_id,
            "bbox": _round([x1, y1, x2 - x1, y2 - y1]),
            "bbox_head": _round([cx - r, cy - r, 2 * r, 2 * r]),
            "keypoints": _round(keypoints.ravel()), "num_keypoints": int(inside.sum()),
        })
    truth.sort(key=lambda t: t["track_id"])
    return image, truth


def _polygons_xy(regions: list[np.ndarray]) -> tuple[list[list[int]], list[list[int]]]:
    return ([[int(v) for v in r[:, 0]] for r in regions], [[int(v) for v in r[:, 1]] for r in regions])


def _generate_sequence(root: Path, vid_id: str, name: str, rng: np.random.Generator,
                       person_ids: list[int], looks: list[Appearance], num_frames: int,
                       width: int, height: int) -> None:
    horizon = height * rng.uniform(0.36, 0.44)
    scene = _Scene(width, height, horizon, ground_min=horizon + 0.22 * (height - horizon),
                   ground_max=height * 0.97)
    background, regions = street_background(rng, width, height, horizon)
    regions_x, regions_y = _polygons_xy(regions)
    walkers = _script_walkers(rng, scene, num_frames, person_ids, looks)
    # sensor noise: one field per sequence, shifted every frame (cheaper than fresh noise)
    grain = (rng.standard_normal((height + 32, width + 32, 3), dtype=np.float32) * 3).round().astype(np.int16)
    # PoseTrack labels sparsely: a few frames without keypoints, half of them still with boxes
    unlabeled = rng.choice(np.arange(1, num_frames), size=max(2, round(0.1 * num_frames)), replace=False)
    box_only = set(int(i) for i in unlabeled[: len(unlabeled) // 2])
    unlabeled_set = set(int(i) for i in unlabeled)

    images, annotations, image_info, gt_rows = [], [], [], []
    for index in range(num_frames):
        if index:
            for walker in walkers:
                _step(walker, scene)
        dy, dx = rng.integers(0, 32, size=2)
        image, truth = _render_frame(background, walkers, scene, grain[dy:dy + height, dx:dx + width])
        file_name = f"images/{SPLIT}/{name}/{index:06d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise InputError("OpenCV could not encode the JPEG", root / file_name)
        write_bytes(root / file_name, jpeg.tobytes())

        image_id = int(f"1{vid_id}{index:04d}")
        is_labeled = index not in unlabeled_set
        kept = truth if is_labeled or index in box_only else []
        images.append({
            "has_no_densepose": True, "is_labeled": is_labeled, "file_name": file_name,
            "nframes": num_frames, "frame_id": image_id, "vid_id": vid_id,
            "ignore_regions_y": regions_y, "ignore_regions_x": regions_x, "id": image_id,
            "width": width, "height": height, "has_labeled_person": bool(kept),
        })
        image_info.append({"file_name": file_name, "id": image_id, "frame_id": image_id,
                           "vid_id": vid_id, "frame_index": index + 1,
                           "ignore_regions_x": regions_x, "ignore_regions_y": regions_y})
        for k, person in enumerate(kept):
            keypoints = person["keypoints"] if is_labeled else [0.0] * 51
            annotations.append({
                "bbox_head": person["bbox_head"], "keypoints": keypoints,
                "track_id": person["track_id"], "image_id": image_id, "bbox": person["bbox"],
                "scores": [], "category_id": 1, "id": image_id * 100 + k, "iscrowd": False,
                "num_keypoints": person["num_keypoints"] if is_labeled else 0,
                "person_id": person["person_id"],
            })
            x, y, w, h = person["bbox"]
            gt_rows.append(f"{index + 1},{person['track_id']},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,-1,-1,-1")

    write_json(root / "posetrack_data" / SPLIT / f"{name}.json",
               {"images": images, "annotations": annotations, "categories": CATEGORIES})
    mot = root / "posetrack_mot" / "mot" / SPLIT / name
    write_json(mot / "image_info.json", image_info)
    write_text(mot / "gt" / "gt.txt", "".join(row + "\n" for row in gt_rows))


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """The generator's own source: a changed generator never reuses a cached demo (a forgotten
    DEMO_VERSION bump would otherwise serve data made by older code)."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("demo.py", "demo_render.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:12]


def _params(seed: int, num_sequences: int, num_frames: int, width: int, height: int) -> dict:
    return {"version": DEMO_VERSION, "code": _code_digest(), "seed": int(seed),
            "num_sequences": int(num_sequences), "num_frames": int(num_frames), "width": int(width),
            "height": int(height)}


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Delete demo sequences a previous (other-parameter) generation left in ``root``."""
    for folder in (root / "images" / SPLIT, root / "posetrack_mot" / "mot" / SPLIT):
        for path in folder.glob(f"*_demo_{SPLIT}") if folder.is_dir() else ():
            if path.name not in keep:
                shutil.rmtree(path)
    data = root / "posetrack_data" / SPLIT
    for path in data.glob(f"*_demo_{SPLIT}.json") if data.is_dir() else ():
        if path.stem not in keep:
            path.unlink()


def generate_demo(root: str | os.PathLike, *, seed: int = 0, num_sequences: int = 3,
                  num_frames: int = 72, width: int = 640, height: int = 360) -> Path:
    """Write the synthetic data set under ``root`` (PoseTrack21 layout) and return ``root``.

    Same arguments -> byte-identical JSON and identical JPEGs. The completion marker is written
    last, so an interrupted generation is detected (and redone) by ``ensure_demo``.
    """
    _check_params(seed=seed, num_sequences=num_sequences, num_frames=num_frames, width=width,
                  height=height)
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise InputError("demo data folder is a file", root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).unlink(missing_ok=True)
    names = _sequence_names(num_sequences)
    _remove_stale(root, {name for _, name in names})
    cast, looks = _cast(np.random.default_rng([seed, 0xDE30]), num_sequences)
    for s, (vid_id, name) in enumerate(names):
        _generate_sequence(root, vid_id, name, np.random.default_rng([seed, s]), cast[s], looks,
                           num_frames, width, height)
    write_json(root / MARKER, _params(seed, num_sequences, num_frames, width, height), indent=1)
    return root


_DEFAULTS = {k: p.default for k, p in inspect.signature(generate_demo).parameters.items()
             if p.kind is p.KEYWORD_ONLY}


def demo_home() -> Path:
    """``$KPRTRACK_HOME/demo``; KPRTRACK_HOME defaults to the user's cache folder."""
    from kprtrack.weights import kprtrack_home

    return kprtrack_home() / "demo"


def _defaults() -> dict[str, Any]:
    return dict(_DEFAULTS)


def is_complete(root: str | os.PathLike, **params: Any) -> bool:
    """True when ``root`` holds a finished demo generated with exactly these parameters."""
    marker = Path(root) / MARKER
    expected = _params(**{**_defaults(), **params})
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == expected
    except (OSError, ValueError):
        return False


def cached_root(**params: Any) -> Path:
    """``$KPRTRACK_HOME/demo/v<version>-<hash of the parameters>`` (not created here)."""
    full = _params(**{**_defaults(), **params})
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:12]
    return demo_home() / f"v{DEMO_VERSION}-{digest}"


def ensure_demo(root: str | os.PathLike | None = None, **params: Any) -> Path:
    """The demo data set's folder, generated only when missing, partial or made differently.

    Default folder: ``$KPRTRACK_HOME/demo/v<version>-<hash of the parameters>``.
    """
    unknown = set(params) - set(_defaults())
    if unknown:
        raise InputError(f"unknown demo parameter(s) {sorted(unknown)}; known: {sorted(_defaults())}")
    full = {**_defaults(), **params}
    _check_params(**full)
    root = Path(root).expanduser() if root is not None else cached_root(**full)
    if not is_complete(root, **full):
        generate_demo(root, **full)
    return root


def main(argv: Sequence[str]) -> int:
    """``python -m kprtrack demo [root=DIR] [seed=0] [num_sequences=3] [num_frames=72] ...``"""
    options: dict[str, Any] = {}
    root = None
    force = False
    known = set(_defaults()) | {"root", "force"}
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.removeprefix("demo.").removeprefix("+")
        if not sep or key not in known:
            raise InputError(f"bad demo argument '{arg}'; expected key=value with key in {sorted(known)}")
        if key == "root":
            root = value
        elif key == "force":
            force = value.lower() in ("1", "true", "yes")
        else:
            try:
                options[key] = int(value)
            except ValueError:
                raise InputError(f"demo argument {key} must be an integer, got '{value}'") from None
    if force:  # regenerate even when a complete copy exists
        path = generate_demo(root if root is not None else cached_root(**options), **options)
    else:
        path = ensure_demo(root, **options)
    print(path, file=sys.stdout)
    return 0
