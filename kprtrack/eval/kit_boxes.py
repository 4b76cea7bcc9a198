"""Box HOTA exactly as the official PoseTrack21 kit computes it (``eval/posetrack21/scripts/run_mot.py``).

The kit (anDoer/PoseTrack21 @3e61960: ``datasets/posetrack_mot.py``, ``metrics/hota.py``) evaluates
``posetrack_mot/mot/<split>/<seq>/{image_info.json, gt/gt.txt}`` against ``<seq>.txt`` MOT rows. This
module reproduces it in numpy, quirks included:

- one timestep per ``image_info.json`` entry (all frames, labeled or not); row frame ``t + 1`` is the
  image at position ``t``; every GT row counts (no ``zero_marked`` or visibility filter); the GT class
  column (8th) must be -1, checked only in frames with both GT and predictions, as the kit does;
- a prediction left unmatched by a Hungarian match on IoU >= 0.5 is removed when its box has IoU > 0.1
  with an ignore region of its image, and only in frames with both GT and predictions; a
  self-intersecting region counts as GEOS's ``buffer(0)`` of it, and when that falls apart into several
  polygons the kit SUMS the per-part intersections and unions (see :func:`region_ious`);
- HOTA and its sub-metrics are ``trackeval``'s HOTA (identical to the kit's for those fields); the
  kit's extra FragA (and RHOTA, FA-HOTA, FA-RHOTA) are computed here.

The same ground truth (:class:`KitBoxTruth`) also feeds :mod:`kprtrack.eval.kit_mot_clear` (the kit's
MOTA/IDF1). Data sets without a ``posetrack_mot`` folder get the equivalent from their PoseTrack JSON
(:func:`truth_from_posetrack_json`): every image in file order, every annotation with a box, id =
``track_id``, conf 1, class -1, ignore regions from the image. ``image_info`` must number its frames
1, 2, ... in file order (PoseTrack21's do; both kit scripts silently disagree with each other otherwise).

API: ``truths = posetrack_mot_ground_truth(path)`` ({seq: KitBoxTruth}); ``preds = load_predictions(folder,
truths)`` (or ``predictions_from_json`` / ``predictions_from_mot_txt`` per sequence: [R, >= 6] MOT rows,
frame = image position + 1); ``per_seq, combined = box_hota_kit(truths, preds)``;
``kit_mot_clear.clear_identity_kit(truths, preds)``. ``write_posetrack_mot`` and ``mot_text`` write files
the kit itself reads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from kprtrack.data.posetrack import PoseTrackSequence, load_sequence_json
from kprtrack.errors import InputError
# the kit's HOTA fields (the same for keypoints and boxes) and its id relabelling (negative ids wrap around)
from kprtrack.eval.geometry import ignore_regions
from kprtrack.eval.kit_keypoints import ALPHAS, FIELDS, add_to_stints, final_fields, kit_relabel
from kprtrack.eval.mot import read_mot_txt
from kprtrack.io import read_input_text, write_json, write_text

IGNORE_IOU = 0.1  # both kit scripts: a box "is in" an ignore region when IoU > 0.1
# Which GEOS decides what buffer(0) keeps of a self-intersecting region: run_mot.py's pinned shapely 1.8.0
# bundles GEOS 3.9.1, evaluate_mot.py's pinned shapely 1.7.1 bundles GEOS 3.8.
GEOS_HOTA, GEOS_MOTA = "3.9", "3.8"
_EPS = np.finfo("float").eps


# ----------------------------------------------------------------------------------------------- inputs
@dataclass
class KitBoxTruth:
    """One sequence of ``posetrack_mot``: its ``image_info.json`` entries and ``gt.txt`` rows (file order)."""

    name: str
    image_info: list[dict]
    rows: np.ndarray  # [R, C >= 8] float64: frame, id, x, y, w, h, conf, class(-1), ...

    @property
    def num_frames(self) -> int:
        return len(self.image_info)

    def regions(self, t: int) -> list[np.ndarray]:
        """Ignore polygons of image ``t`` as the kit builds them (x/y lists zipped, a flat list = one region)."""
        return ignore_regions(self.image_info[t])


def _check_frame_indices(name: str, image_info: list[dict], path: Path) -> None:
    for t, image in enumerate(image_info):
        if image.get("frame_index") != t + 1:
            raise InputError(f"{name}: image_info[{t}] has frame_index {image.get('frame_index')!r}; the kit needs "
                             f"1, 2, ... in file order (gt.txt frame = image position + 1)", path)


def read_posetrack_mot_sequence(seq_dir: str | Path) -> KitBoxTruth:
    """``<seq>/image_info.json`` + ``<seq>/gt/gt.txt`` (PoseTrack21's ``posetrack_mot`` layout)."""
    seq_dir = Path(seq_dir)
    info_path = seq_dir / "image_info.json"
    try:
        image_info = json.loads(read_input_text(info_path, "image_info.json"))
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON ({err.msg})", info_path) from None
    if not isinstance(image_info, list):
        raise InputError("expected a list of images", info_path)
    _check_frame_indices(seq_dir.name, image_info, info_path)
    gt = seq_dir / "gt" / "gt.txt"
    rows = read_mot_txt(gt, min_columns=8).rows if gt.is_file() and gt.stat().st_size else np.zeros((0, 10))
    return KitBoxTruth(seq_dir.name, image_info, rows)


def truth_from_posetrack_json(path: str | Path) -> KitBoxTruth:
    """The ``posetrack_mot`` sequence PoseTrack21 derives from a PoseTrack JSON (PoseTrack18 sample, demo):
    see :func:`truth_from_sequence`."""
    return truth_from_sequence(load_sequence_json(path, need_files=False))


def truth_from_sequence(seq: PoseTrackSequence) -> KitBoxTruth:
    """image_info: every image in file order (file_name, id, frame_id, vid_id, frame_index = position + 1,
    its ignore regions); gt.txt: one row per annotation with a box of positive size, in file order,
    ``frame, track_id, x, y, w, h, 1, -1, -1, -1``."""
    image_info, rows = [], []
    for t, image in enumerate(seq.images):
        image_info.append({"file_name": image.get("file_name", ""), "id": image["id"],
                           "frame_id": image.get("frame_id", image["id"]), "vid_id": image.get("vid_id", ""),
                           "frame_index": t + 1, "ignore_regions_x": image.get("ignore_regions_x") or [],
                           "ignore_regions_y": image.get("ignore_regions_y") or []})
        for ann in seq.annotations[image["id"]]:
            bbox, track = ann.get("bbox"), ann.get("track_id")
            if bbox is None or len(bbox) != 4 or float(bbox[2]) <= 0 or float(bbox[3]) <= 0:
                continue
            if not isinstance(track, (int, float)) or float(track) != int(track):
                raise InputError(f"image {image['id']}: track_id {track!r} is not an integer", seq.path)
            rows.append([t + 1, int(track), *map(float, bbox), 1, -1, -1, -1])
    return KitBoxTruth(seq.name, image_info, np.asarray(rows, np.float64).reshape(-1, 10))


def posetrack_mot_ground_truth(path: str | Path) -> dict[str, KitBoxTruth]:
    """Ground truth for the kit's box metrics, by sequence name (sorted).

    ``path``: a ``posetrack_mot`` split folder (``<seq>/image_info.json``), one such ``<seq>`` folder,
    a PoseTrack JSON file, or a folder of PoseTrack JSON files (converted by :func:`truth_from_posetrack_json`)."""
    path = Path(path)
    if path.is_file():
        truths = [truth_from_posetrack_json(path)]
    elif (path / "image_info.json").is_file():
        truths = [read_posetrack_mot_sequence(path)]
    elif path.is_dir() and any(p.is_file() for p in path.glob("*/image_info.json")):
        truths = [read_posetrack_mot_sequence(p.parent) for p in path.glob("*/image_info.json")]
    elif path.is_dir() and any(path.glob("*.json")):
        truths = [truth_from_posetrack_json(p) for p in path.glob("*.json")]
    else:
        raise InputError("no posetrack_mot sequences (<seq>/image_info.json) or PoseTrack JSON files", path)
    return {t.name: t for t in sorted(truths, key=lambda t: t.name)}


def write_posetrack_mot(truth: KitBoxTruth, split_dir: str | Path) -> Path:
    """Write ``<split_dir>/<seq>/{image_info.json, gt/gt.txt}`` so the kit itself can read it."""
    seq_dir = Path(split_dir) / truth.name
    write_json(seq_dir / "image_info.json", truth.image_info)
    write_text(seq_dir / "gt" / "gt.txt", mot_text(truth.rows))
    return seq_dir


def mot_text(rows: np.ndarray) -> str:
    """MOT rows as the kits read them: frame and id as integers, every other value as Python's exact repr."""
    lines = []
    for row in np.asarray(rows, np.float64):
        fields = [str(int(row[0])), str(int(row[1]))] + [_number(v) for v in row[2:]]
        lines.append(",".join(fields) + "\n")
    return "".join(lines)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2 ** 53 else repr(float(value))


def predictions_from_json(path: str | Path, truth: KitBoxTruth) -> np.ndarray:
    """MOT rows from a PoseTrack prediction JSON: see :func:`predictions_from_sequence`."""
    return predictions_from_sequence(load_sequence_json(path, need_files=False), truth)


def predictions_from_sequence(seq: PoseTrackSequence, truth: KitBoxTruth) -> np.ndarray:
    """MOT rows ``frame, track_id, x, y, w, h, score, -1, -1, -1`` of a loaded PoseTrack prediction file.

    Frames are positions in the GT's image_info (matched by image id, so images[] may be in any order);
    annotations without a 4-value bbox or a track_id are skipped; score = the annotation's ``score`` or 1."""
    position = {image["id"]: t for t, image in enumerate(truth.image_info)}
    rows = []
    for image in seq.images:
        if image["id"] not in position:
            raise InputError(f"image id {image['id']!r} is not in the ground truth of {truth.name}", seq.path)
        for ann in seq.annotations[image["id"]]:
            bbox, track = ann.get("bbox"), ann.get("track_id")
            if bbox is None or len(bbox) != 4 or track is None:
                continue
            if not isinstance(track, (int, float)) or float(track) != int(track):
                raise InputError(f"image {image['id']}: track_id {track!r} is not an integer", seq.path)
            score = ann.get("score", 1.0)
            rows.append([position[image["id"]] + 1, int(track), *map(float, bbox),
                         float(score) if isinstance(score, (int, float)) else 1.0, -1, -1, -1])
    return np.asarray(rows, np.float64).reshape(-1, 10)


def predictions_from_mot_txt(path: str | Path) -> np.ndarray:
    """MOT rows from a ``<seq>.txt`` (frame = image position + 1); an empty file has no rows."""
    path = Path(path)
    if path.is_file() and not read_input_text(path).strip():
        return np.zeros((0, 10))
    return read_mot_txt(path, min_columns=6).rows


def load_predictions(folder: str | Path, truths: dict[str, KitBoxTruth]) -> dict[str, np.ndarray]:
    """Predicted rows for every GT sequence from ``folder``: ``<seq>.json`` (PoseTrack JSON, see
    :func:`predictions_from_json`) or else ``<seq>.txt`` (MOT rows). A missing file is an error, as in run_mot.py."""
    folder = Path(folder)
    out = {}
    for name, truth in truths.items():
        if (folder / f"{name}.json").is_file():
            out[name] = predictions_from_json(folder / f"{name}.json", truth)
        elif (folder / f"{name}.txt").is_file():
            out[name] = predictions_from_mot_txt(folder / f"{name}.txt")
        else:
            raise InputError(f"no prediction file for sequence {name} ({name}.json or {name}.txt)", folder)
    return out


def frame_rows(rows: np.ndarray, num_frames: int, name: str, what: str) -> list[np.ndarray]:
    """Rows grouped by timestep (file order kept); a frame outside 1..num_frames is an error, as in the kit."""
    rows = np.asarray(rows, np.float64)
    rows = rows.reshape(len(rows), -1) if rows.size else np.zeros((0, max(rows.shape[-1:] or [10])))
    frames = np.trunc(rows[:, 0]).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    bad = (frames < 1) | (frames > num_frames)
    if bad.any():
        raise InputError(f"{name}: {what} has frame {frames[bad][0]} outside 1..{num_frames} "
                         "(one frame per image_info entry)")
    order = np.argsort(frames, kind="stable")
    bounds = np.searchsorted(frames[order], np.arange(1, num_frames + 2))
    return [rows[order[bounds[t]:bounds[t + 1]]] for t in range(num_frames)]


# --------------------------------------------------------------------------------------- ignore regions
def _is_ccw_geos(ring: np.ndarray) -> bool:
    """GEOS 3.8/3.9 ``Orientation::isCCW`` (what shapely 1.7/1.8 use): orientation at the first highest vertex."""
    n = len(ring)
    hi = int(np.argmax(ring[:, 1]))  # first index of the maximum y
    same = lambda i: ring[i, 0] == ring[hi, 0] and ring[i, 1] == ring[hi, 1]  # noqa: E731
    prev = hi
    while True:
        prev = (prev - 1) % n
        if not same(prev) or prev == hi:
            break
    nxt = hi
    while True:
        nxt = (nxt + 1) % n
        if not same(nxt) or nxt == hi:
            break
    p, h, q = ring[prev], ring[hi], ring[nxt]
    if same(prev) or same(nxt) or (p[0] == q[0] and p[1] == q[1]):
        return False
    fx = [Fraction(float(v)) for v in (p[0], p[1], h[0], h[1], q[0], q[1])]
    disc = (fx[2] - fx[0]) * (fx[5] - fx[1]) - (fx[3] - fx[1]) * (fx[4] - fx[0])
    return bool(p[0] > q[0]) if disc == 0 else disc > 0


@dataclass
class _Trapezoids:
    """A polygon's kept area as horizontal trapezoids: between y0 and y1, x from left(y) to right(y)."""

    y0: np.ndarray
    y1: np.ndarray
    l0: np.ndarray
    l1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    parts: int  # polygons GEOS returns for it (connected pieces; touching at a point = separate)
    area: float


def _decompose(ring: np.ndarray, geos: str = GEOS_HOTA) -> _Trapezoids:
    """Slab decomposition of what GEOS's ``buffer(0)`` keeps of a ring: the points whose winding number,
    counted with the ring's orientation (:func:`_is_ccw_geos`), is >= 1. For a simple ring: its interior."""
    keep = np.ones(len(ring), bool)
    keep[1:] = np.any(ring[1:] != ring[:-1], axis=1)
    ring = ring[keep]
    while len(ring) > 1 and np.all(ring[-1] == ring[0]):
        ring = ring[:-1]
    empty = _Trapezoids(*(np.zeros(0) for _ in range(6)), parts=0, area=0.0)
    if len(ring) < 3:
        return empty
    if geos == "3.8":
        sign = 1 if _is_ccw_geos(ring) else -1
    else:  # GEOS 3.9: orientation of an invalid ring = sign of its signed area (0 counts as clockwise)
        x, y = ring[:, 0], ring[:, 1]
        sign = 1 if float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) > 0 else -1
    a, b = ring, np.roll(ring, -1, axis=0)
    d = b - a
    # y of every proper crossing between two edges: the x-order of edges only changes there
    denom = d[:, None, 0] * d[None, :, 1] - d[:, None, 1] * d[None, :, 0]
    diff = a[None, :, :] - a[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (diff[..., 0] * d[None, :, 1] - diff[..., 1] * d[None, :, 0]) / denom
        u = (diff[..., 0] * d[:, None, 1] - diff[..., 1] * d[:, None, 0]) / denom
        proper = (denom != 0) & (t > 0) & (t < 1) & (u > 0) & (u < 1)
        cross_y = (a[:, None, 1] + t * d[:, None, 1])[proper]
        # a simple ring (no two non-adjacent edges meet, not even end to edge or along a line) is one polygon
        gap = np.abs(np.arange(len(a))[:, None] - np.arange(len(a))[None, :])
        apart = (gap > 1) & (gap < len(a) - 1)
        meet = (denom != 0) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
        along = d[:, None, 0] * diff[..., 1] - d[:, None, 1] * diff[..., 0]
        s0 = (diff * d[:, None, :]).sum(-1) / (d * d).sum(-1)[:, None]
        s1 = s0 + (d[None, :, :] * d[:, None, :]).sum(-1) / (d * d).sum(-1)[:, None]
        overlap = (denom == 0) & (along == 0) & (np.maximum(s0, s1) >= 0) & (np.minimum(s0, s1) <= 1)
        simple = not np.any((meet | overlap) & apart)
    ys = np.unique(np.concatenate([ring[:, 1], cross_y]))
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    up = np.where(b[:, 1] > a[:, 1], 1, -1)
    # every slab between consecutive critical ys at once: [slab, edge], edges sorted by x mid-slab
    y0s, y1s = ys[:-1, None], ys[1:, None]
    ym = 0.5 * (y0s + y1s)
    crossing = (lo < ym) & (hi > ym)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_mid = np.where(crossing, a[:, 0] + (ym - a[:, 1]) / d[:, 1] * d[:, 0], np.inf)
    order = np.argsort(x_mid, axis=1, kind="stable")
    count = crossing.sum(1)
    direction = np.take_along_axis(np.where(crossing, up, 0), order, axis=1)
    # winding just right of the q-th crossing = sum of the directions of the crossings further right
    winding = direction.sum(1, keepdims=True) - np.cumsum(direction, axis=1)
    q = np.arange(len(a))[None, :]
    kept = (sign * winding >= 1) & (q < count[:, None] - 1)
    before = np.pad(kept[:, :-1], ((0, 0), (1, 0)))
    after = np.pad(kept[:, 1:], ((0, 0), (0, 1)))
    slab, first = np.nonzero(kept & ~before)
    _, last = np.nonzero(kept & ~after)
    if not len(slab):
        return empty
    left, right = order[slab, first], order[slab, last + 1]
    y0, y1 = ys[slab], ys[slab + 1]
    x_at = lambda e, y: a[e, 0] + (y - a[e, 1]) / d[e, 1] * d[e, 0]  # noqa: E731
    traps = np.stack([y0, y1, x_at(left, y0), x_at(left, y1), x_at(right, y0), x_at(right, y1)], 1)
    y0, y1, l0, l1, r0, r1 = traps.T
    area = float(np.sum((y1 - y0) * 0.5 * ((r0 - l0) + (r1 - l1))))
    return _Trapezoids(y0, y1, l0, l1, r0, r1, 1 if simple else _count_parts(traps, slab), area)


def _count_parts(arr: np.ndarray, slab: np.ndarray) -> int:
    """Connected pieces: trapezoids of consecutive slabs sharing a boundary stretch of positive length."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    y0, y1, l0, l1, r0, r1 = arr.T
    scale = max(1.0, float(np.abs(arr).max()))
    # slivers from rounding (a crossing computed a hair off a vertex) are no part of their own
    big = (y1 - y0) * 0.5 * ((r0 - l0) + (r1 - l1)) > 1e-12 * scale ** 2
    touching = ((slab[None, :] == slab[:, None] + 1) & (y0[None, :] == y1[:, None])
                & (np.minimum(r1[:, None], r0[None, :]) - np.maximum(l1[:, None], l0[None, :]) > 1e-9 * scale))
    i, j = np.nonzero(touching)
    _, label = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(arr),) * 2), directed=False)
    return len(np.unique(label[big]))


@lru_cache(maxsize=4096)
def _decompose_cached(key: bytes, geos: str) -> _Trapezoids:
    return _decompose(np.frombuffer(key, np.float64).reshape(-1, 2), geos)


def region_ious(polygon: np.ndarray, boxes_xyxy: np.ndarray, geos: str = GEOS_HOTA) -> np.ndarray:
    """[B] the kit's IoU of each box with one ignore region (shapely semantics, computed without shapely).

    A valid polygon: area(P & B) / area(P | B). An invalid one is replaced by GEOS's ``buffer(0)``; when
    that is several polygons the kit sums intersections and unions over them, which is
    I / (A + parts * area(B) - I). A box of zero area against nothing gives 0 (the kit divides by zero)."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    region = _decompose_cached(np.ascontiguousarray(polygon, np.float64).reshape(-1, 2).tobytes(), geos)
    bx0, bx1 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    by0, by1 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    box_area = (bx1 - bx0) * (by1 - by0)
    inter = np.zeros(len(boxes))
    if len(region.y0) and len(boxes):
        inter = _trapezoid_box_overlap(region, bx0, by0, bx1, by1)
    union = region.area + max(1, region.parts) * box_area - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter > 0) & (union > 0), inter / union, 0.0)


def _trapezoid_box_overlap(tz: _Trapezoids, bx0, by0, bx1, by1) -> np.ndarray:
    """[B] area of the trapezoids inside each box: exact piecewise-linear integration in y."""
    y0, y1 = tz.y0[:, None], tz.y1[:, None]
    ya = np.maximum(y0, by0[None])
    yb = np.maximum(ya, np.minimum(y1, by1[None]))
    h = y1 - y0
    # y where an edge of the trapezoid crosses a vertical side of the box: the overlap width kinks there
    cuts = [ya, yb]
    for e0, e1 in ((tz.l0, tz.l1), (tz.r0, tz.r1)):
        e0, e1 = e0[:, None], e1[:, None]
        for c in (bx0[None], bx1[None]):
            with np.errstate(divide="ignore", invalid="ignore"):
                y = y0 + (c - e0) / (e1 - e0) * h
            cuts.append(np.clip(np.where(np.isfinite(y), y, ya), ya, yb))
    cuts = np.sort(np.stack(cuts, -1), -1)
    mid = 0.5 * (cuts[..., 1:] + cuts[..., :-1])
    frac = (mid - y0[..., None]) / h[..., None]
    left = tz.l0[:, None, None] + frac * (tz.l1 - tz.l0)[:, None, None]
    right = tz.r0[:, None, None] + frac * (tz.r1 - tz.r0)[:, None, None]
    width = np.maximum(0.0, np.minimum(right, bx1[None, :, None]) - np.maximum(left, bx0[None, :, None]))
    heights = np.maximum(0.0, cuts[..., 1:] - cuts[..., :-1])
    return (width * heights).sum((0, 2))


def boxes_in_regions(regions: list[np.ndarray], boxes_xyxy: np.ndarray, float32: bool = False,
                     geos: str = GEOS_HOTA) -> np.ndarray:
    """[B] bool: IoU > 0.1 with any region (``float32``: the MOTA script stores IoUs as float32 first).
    Regions with fewer than 3 points match nothing (shapely would refuse to build them)."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    lo, hi = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
    hit = np.zeros(len(boxes), bool)
    for polygon in regions:
        if len(polygon) < 3 or not len(boxes):
            continue
        # no overlap with the polygon's bounding box: IoU 0 (and no need to decompose the polygon)
        if not np.any(np.all((lo < polygon.max(0)) & (hi > polygon.min(0)), axis=1)):
            continue
        iou = region_ious(polygon, boxes, geos)
        hit |= (iou.astype(np.float32) if float32 else iou) > IGNORE_IOU
    return hit


# ----------------------------------------------------------------------------------------------- HOTA
def box_ious_xywh(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The kit's (and trackeval's) box IoU, same float operations."""
    from trackeval.datasets._base_dataset import _BaseDataset

    return _BaseDataset._calculate_box_ious(np.asarray(gt, np.float64).reshape(-1, 4),
                                            np.asarray(pred, np.float64).reshape(-1, 4), box_format="xywh")


def kit_sequence_data(truth: KitBoxTruth, pred_rows: np.ndarray | None) -> dict:
    """posetrack_mot.py's ``get_preprocessed_seq_data``: the dict trackeval's HOTA takes."""
    n = truth.num_frames
    gt_frames = frame_rows(truth.rows, n, truth.name, "gt.txt")
    pr_frames = frame_rows(np.zeros((0, 10)) if pred_rows is None else pred_rows, n, truth.name, "the prediction")
    gt_ids, pr_ids, sims = [], [], []
    for t in range(n):
        g, p = gt_frames[t], pr_frames[t]
        gid, pid = np.trunc(g[:, 1]).astype(np.int64), np.trunc(p[:, 1]).astype(np.int64)
        for ids, what in ((gid, "ground-truth"), (pid, "predicted")):
            if len(np.unique(ids)) != len(ids):
                raise InputError(f"{truth.name}: {what} id repeated in frame {t + 1} (the kit refuses this)")
        if len(p) and p.shape[1] >= 8 and np.max(np.trunc(p[:, 7])) > 1:
            raise InputError(f"{truth.name}: prediction class column > 1 in frame {t + 1} (pedestrian only)")
        sim = box_ious_xywh(g[:, 2:6], p[:, 2:6])
        if len(g) and len(p):
            if g.shape[1] < 8 or np.any(np.trunc(g[:, 7]) != -1):
                raise InputError(f"{truth.name}: gt.txt class column must be -1 (frame {t + 1}), as the kit expects")
            scores = sim.copy()
            scores[scores < 0.5 - _EPS] = 0
            rows, cols = linear_sum_assignment(-scores)
            matched = cols[scores[rows, cols] > 0 + _EPS]
            unmatched = np.setdiff1d(np.arange(len(p)), matched)
            if len(unmatched):
                x, y = p[unmatched, 2], p[unmatched, 3]
                boxes = np.stack([x, y, x + p[unmatched, 4], y + p[unmatched, 5]], 1)
                drop = unmatched[boxes_in_regions(truth.regions(t), boxes, geos=GEOS_HOTA)]
                keep = np.setdiff1d(np.arange(len(p)), drop)
                pid, sim = pid[keep], sim[:, keep]
        gt_ids.append(gid)
        pr_ids.append(pid)
        sims.append(sim)
    gt_ids, num_gt_ids = kit_relabel(gt_ids)
    pr_ids, num_pr_ids = kit_relabel(pr_ids)
    for t, ids in enumerate(gt_ids + pr_ids):
        if len(np.unique(ids)) != len(ids):  # a negative id wrapped onto another one, as the kit's table does
            raise InputError(f"{truth.name}: two ids share a label in frame {t % n + 1} after the kit's relabelling "
                             "(negative ids); the kit refuses this")
    return {"gt_ids": gt_ids, "tracker_ids": pr_ids, "similarity_scores": sims, "num_timesteps": n,
            "num_gt_ids": num_gt_ids, "num_tracker_ids": num_pr_ids, "seq": truth.name,
            "num_gt_dets": int(sum(map(len, gt_ids))), "num_tracker_dets": int(sum(map(len, pr_ids)))}


def _fragment_squares(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """The kit's FragA ingredients, per alpha: sum over (gt, pred) pairs of their stints' TP counts squared
    divided by the pair's TPA+FNA+FPA. A stint is a run of matches of a gt id to one pred id, ended by a
    match to another pred id. Matches are HOTA's own (same global alignment and Hungarian matching)."""
    ng, npr, na = data["num_gt_ids"], data["num_tracker_ids"], len(ALPHAS)
    potential = np.zeros((ng, npr))
    gt_count, pr_count = np.zeros((ng, 1)), np.zeros((1, npr))
    for g, p, sim in zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"]):
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        sim_iou = np.zeros_like(sim)
        mask = denom > 0 + _EPS
        sim_iou[mask] = sim[mask] / denom[mask]
        potential[g[:, None], p[None, :]] += sim_iou
        gt_count[g] += 1
        pr_count[0, p] += 1
    alignment = potential / (gt_count + pr_count - potential)
    matches = np.zeros((na, ng, npr))
    squares = np.zeros((na, ng, npr))
    stint = np.zeros((na, ng, npr))
    last = np.full((na, ng), -1)
    for g, p, sim in zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"]):
        if not len(g) or not len(p):
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], p[None, :]] * sim))
        for a, alpha in enumerate(ALPHAS):
            ok = sim[rows, cols] >= alpha - _EPS
            mg, mp = g[rows[ok]], p[cols[ok]]
            matches[a, mg, mp] += 1
            add_to_stints(last[a], stint[a], squares[a], mg, mp)
    union = np.maximum(1, gt_count[None] + pr_count[None] - matches)
    return (squares / union).sum((1, 2)), matches.sum((1, 2))


def _kit_fields(res: dict, frag: np.ndarray) -> dict:
    """trackeval's HOTA result plus the kit's FragA, with the kit's derived fields (RHOTA, FA-HOTA, the
    (0) values) as the keypoint kit computes them, under the kit's names only."""
    out = {k: np.asarray(res[k], np.float64).copy() for k in ("AssA", "AssRe", "AssPr", "LocA",
                                                             "HOTA_TP", "HOTA_FN", "HOTA_FP")}
    out["FragA"] = np.asarray(frag, np.float64)
    out = final_fields(out, compute_avg=False)
    return {k: (float(out[k]) if np.ndim(out[k]) == 0 else out[k]) for k in FIELDS}


def box_hota_sequence(truth: KitBoxTruth, pred_rows: np.ndarray | None) -> tuple[dict, dict]:
    """(kit result, trackeval result) of one sequence; the second is what :func:`box_hota_kit` combines."""
    import trackeval

    data = kit_sequence_data(truth, pred_rows)
    res = trackeval.metrics.HOTA().eval_sequence(data)
    if data["num_tracker_dets"] and data["num_gt_dets"]:
        frag_sum, tp = _fragment_squares(data)
        frag = frag_sum / np.maximum(1, tp)
    else:
        frag = np.zeros(len(ALPHAS))
    res["FragA"] = frag
    return _kit_fields(res, frag), res


def box_hota_kit(truths: dict[str, KitBoxTruth], predictions: dict[str, np.ndarray | None]
                 ) -> tuple[dict[str, dict], dict]:
    """The kit's box HOTA: ({sequence: result}, combined result), each result a dict of the kit's fields
    (``FIELDS``: arrays over the 19 alphas 0.05..0.95, and the (0) scalars). A sequence missing from
    ``predictions`` (or None) has no predictions. Take ``np.mean`` of an array field for the kit's number."""
    import trackeval

    per_seq, raw = {}, {}
    for name in sorted(truths):
        per_seq[name], raw[name] = box_hota_sequence(truths[name], predictions.get(name))
    metric = trackeval.metrics.HOTA()
    combined = metric.combine_sequences({k: {f: v for f, v in r.items() if f != "FragA"} for k, r in raw.items()})
    tp = combined["HOTA_TP"]
    frag = sum(raw[k]["FragA"] * raw[k]["HOTA_TP"] for k in raw) / np.maximum(1.0, tp) if raw else np.zeros(19)
    return per_seq, _kit_fields(combined, frag)
