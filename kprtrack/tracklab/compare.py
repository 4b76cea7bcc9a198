"""Compare TrackLab's saved tracks with a ``python -m kprtrack run`` on the same images.

    python -m kprtrack.tracklab.compare <TrackLab state .pklz> <kprtrack run folder>

Each TrackLab detection is paired with our detection of the same image whose box overlaps it
best (IoU >= 0.9: both come from the same ground truth or detector); the track ids must be
equal. Prints one summary line; exit status 0 when every pair agrees, 1 otherwise, 2 on bad input.
"""
from __future__ import annotations

import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

from kprtrack.errors import InputError

MIN_IOU = 0.9


def tracklab_tracks(state_file: Path) -> dict[int, list[tuple[np.ndarray, int]]]:
    """image id -> [(box x1y1x2y2, track id or -1)] from a TrackLab state file (zip of pickles)."""
    try:
        zf = zipfile.ZipFile(state_file)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"not a TrackLab state file ({err})", state_file) from None
    out: dict[int, list] = {}
    with zf:
        for name in zf.namelist():
            if not name.endswith(".pkl") or name.endswith("_image.pkl"):
                continue
            with zf.open(name) as fp:
                frame = pickle.load(fp)  # noqa: S301  (the user's own TrackLab output)
            for _, row in frame.iterrows():
                l, t, w, h = np.asarray(row.bbox_ltwh, np.float64)
                tid = row.get("track_id", np.nan)
                tid = -1 if tid is None or np.isnan(tid) else int(tid)
                out.setdefault(int(row.image_id), []).append((np.array([l, t, l + w, t + h]), tid))
    return out


def kprtrack_tracks(run_dir: Path) -> dict[int, list[tuple[np.ndarray, int]]]:
    # posetrack21/sequences/ since the kit-compatible layout; posetrack21/ in older run folders
    files = sorted((run_dir / "posetrack21" / "sequences").glob("*.json")) or sorted(
        (run_dir / "posetrack21").glob("*.json"))
    if not files:
        raise InputError("no posetrack21/sequences/*.json in this kprtrack run folder", run_dir)
    out: dict[int, list] = {}
    for path in files:
        for ann in json.loads(path.read_text()).get("annotations", []):
            l, t, w, h = ann["bbox"]
            out.setdefault(int(ann["image_id"]), []).append((np.array([l, t, l + w, t + h]), int(ann["track_id"])))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(theirs: dict, ours: dict) -> tuple[int, list[str]]:
    """Pairs compared, and a line per disagreement. Our writer keeps tracked people only, so a
    TrackLab detection without a track id must have no partner among ours."""
    compared, problems = 0, []
    for image_id, rows in sorted(theirs.items()):
        for box, tid in rows:
            candidates = ours.get(image_id, [])
            best = max(candidates, key=lambda c: _iou(c[0], box), default=None)
            partner = best if best is not None and _iou(best[0], box) >= MIN_IOU else None
            mine = -1 if partner is None else partner[1]
            if tid == -1 and partner is None:
                continue
            compared += 1
            if mine != tid:
                problems.append(f"image {image_id} box {np.round(box, 1).tolist()}: TrackLab {tid}, kprtrack {mine}")
    return compared, problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        theirs, ours = tracklab_tracks(Path(argv[0])), kprtrack_tracks(Path(argv[1]))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    compared, problems = compare(theirs, ours)
    for line in problems[:20]:
        print(line)
    total = sum(len(v) for v in ours.values())
    print(f"{compared} tracked detections compared ({total} in the kprtrack run): "
          f"{compared - len(problems)} same track id, {len(problems)} different")
    return 0 if compared and not problems and compared >= total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
