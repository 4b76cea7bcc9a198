"""The published trackers benchmarks/accuracy.py compares kprtrack with, fed the same cached inputs.

- Roboflow ``trackers`` ByteTrack, in this environment (``pip install "trackers>=2.6"``, the ``bench`` extra);
- BoxMOT trackers, in BoxMOT's own venv (``benchmarks/boxmot_env.sh``) through ``benchmarks/boxmot_runner.py``.

Every peer keeps its package's default settings; only the inputs are shared.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
BOXMOT_VERSION = "25.0.0"
# BoxMOT registry name -> (label, uses appearance)
BOXMOT_TRACKERS = {
    "bytetrack": ("ByteTrack", False), "ocsort": ("OC-SORT", False), "botsort": ("BoT-SORT", True),
    "strongsort": ("StrongSORT", True), "deepocsort": ("DeepOCSORT", True), "boosttrack": ("BoostTrack", True),
}
ROBOFLOW_HINT = 'pip install "trackers>=2.6"   (or: pip install ".[bench]")'


class PeerUnavailable(Exception):
    """The peer cannot run here; the message says why and how to get it."""


def roboflow_version() -> str | None:
    try:
        import supervision  # noqa: F401
        from trackers import ByteTrackTracker  # noqa: F401
    except ImportError:
        return None
    try:
        return package_version("trackers")
    except PackageNotFoundError:
        return "?"


def boxmot_python(venv: str | Path) -> Path:
    return Path(venv).expanduser() / "bin" / "python"


def boxmot_problem(venv: str | Path) -> str | None:
    """None when BoxMOT imports in its venv, else why not (and how to build it)."""
    python = boxmot_python(venv)
    build = f"build it with: bash benchmarks/boxmot_env.sh (KPRTRACK_BOXMOT_VENV={venv})"
    if not python.is_file():
        return f"BoxMOT's venv not found at {venv}; {build}"
    check = subprocess.run([str(python), "-c", "import boxmot; print(boxmot.__version__)"], capture_output=True,
                           text=True, timeout=300)
    if check.returncode != 0:
        return f"boxmot does not import in {venv} ({check.stderr.strip().splitlines()[-1:]}); {build}"
    if check.stdout.strip() != BOXMOT_VERSION:
        return f"{venv} has boxmot {check.stdout.strip()}, not {BOXMOT_VERSION}; {build}"
    return None


def boxmot_names(option: str | None) -> list[str]:
    """``--boxmot``: None = every BoxMOT tracker, ``none`` or empty = no BoxMOT row, else a comma list."""
    if option is None:
        return list(BOXMOT_TRACKERS)
    names = [n.strip().lower() for n in option.split(",") if n.strip() and n.strip().lower() != "none"]
    unknown = set(names) - set(BOXMOT_TRACKERS)
    if unknown:
        raise ValueError(f"--boxmot: unknown tracker(s) {sorted(unknown)}; known: {', '.join(BOXMOT_TRACKERS)}")
    return names


def peer_rows(args, Row) -> list:
    rows = []
    version = roboflow_version()
    rows.append(Row(f"Roboflow trackers {version or ''} ByteTrack".replace("  ", " "), "roboflow",
                    "boxes + scores (IoU only); package defaults (30-frame lost buffer, high 0.6, birth 0.7)",
                    embeddings="none",
                    skipped=None if version else f"Roboflow trackers not installed: {ROBOFLOW_HINT}"))
    names = boxmot_names(args.boxmot)
    problem = boxmot_problem(args.boxmot_venv) if names else None
    for name in names:
        label, appearance = BOXMOT_TRACKERS[name]
        fed = ("boxes + scores + OSNet x0.25 ONNX embeddings (embeddings=, BoxMOT's ReID not run)" if appearance
               else "boxes + scores") + " + frames (CMC); package defaults"
        rows.append(Row(f"BoxMOT {BOXMOT_VERSION} {label}" + (" (OSNet)" if appearance else ""), "boxmot", fed,
                        config=name, embeddings="osnet" if appearance else "none", skipped=problem))
    return rows


def mot_rows(frame: int, boxes: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``frame,id,left,top,width,height,conf,-1,-1,-1`` for the rows with an id (>= 0)."""
    keep = ids >= 0
    b = np.asarray(boxes, np.float64)[keep]
    out = np.full((int(keep.sum()), 10), -1.0)
    out[:, 0] = frame
    out[:, 1] = ids[keep]
    out[:, 2:4] = b[:, :2]
    out[:, 4:6] = b[:, 2:] - b[:, :2]
    out[:, 6] = np.asarray(scores, np.float64)[keep]
    return out


def track_peer(row, features, last: int, out_dir: Path, args) -> tuple[np.ndarray, float, str]:
    """MOT rows of frames 1..last, the seconds spent in the tracker's update calls, and how it was fed."""
    if row.kind == "roboflow":
        elapsed, tracked = track_roboflow_detections(features, last)
        rows = [mot_rows(i + 1, d.boxes, d.track_ids, d.scores) for i, d in enumerate(tracked)]
        return (np.concatenate(rows) if rows else np.zeros((0, 10))), elapsed, row.fed
    if row.kind == "boxmot":
        return boxmot_result(row.config, features, last, out_dir, args)
    raise ValueError(f"unknown peer kind {row.kind!r}")


def track_roboflow_detections(features, last: int):
    """Roboflow ByteTrack over frames 1..last with its package defaults; kprtrack Detections with track_ids."""
    try:
        import supervision as sv
        from trackers import ByteTrackTracker
    except ImportError:
        raise PeerUnavailable(f"Roboflow trackers not installed: {ROBOFLOW_HINT}") from None
    tracker = ByteTrackTracker()
    elapsed, tracked = 0.0, []
    for index in range(last):
        dets = features.detections(index, "none")
        # class_id carries the input row through the tracker, which reorders and filters its output.
        prepared = sv.Detections(xyxy=dets.boxes.astype(np.float32), confidence=dets.scores,
                                 class_id=np.arange(len(dets)))
        started = time.perf_counter()
        result = tracker.update(prepared)
        elapsed += time.perf_counter() - started
        ids = np.full(len(dets), -1, np.int64)
        if len(result):
            ids[result.class_id] = result.tracker_id
        tracked.append(dets.with_(track_ids=ids))
    return elapsed, tracked


# One BoxMOT process runs every BoxMOT tracker requested (frames decoded once there).
_BOXMOT_RESULTS: dict = {}


def boxmot_result(name: str, features, last: int, out_dir: Path, args) -> tuple[np.ndarray, float, str]:
    key = (features.name, last, args.boxmot_venv)
    if key not in _BOXMOT_RESULTS:
        _BOXMOT_RESULTS[key] = run_boxmot(features, last, args)
    report, folder = _BOXMOT_RESULTS[key]
    if name not in report["seconds"]:
        raise PeerUnavailable(f"BoxMOT runner did not run {name}")
    path = folder / f"{name}.txt"
    text = path.read_text().strip()
    rows = np.array([[float(v) for v in line.split(",")] for line in text.splitlines()]) if text else np.zeros((0, 10))
    fed = boxmot_feeding(report["fed"][name]) + (" (outputs and time from the cached BoxMOT run; --fresh-peers reruns)"
                                                   if report.get("cached") else "")
    return rows.reshape(-1, 10), report["seconds"][name], fed


def boxmot_feeding(fed: dict) -> str:
    """What the runner actually handed this BoxMOT tracker (from its report)."""
    parts = ["boxes + scores"]
    if fed.get("embeddings"):
        parts.append("OSNet x0.25 ONNX embeddings, L2-normalised (Detections.embeddings; BoxMOT's own ReID not run)")
    if fed.get("frame"):
        parts.append("decoded frames (its camera-motion compensation)")
    return " + ".join(parts) + f"; {fed.get('class', '?')} with BoxMOT's packaged defaults"


def run_boxmot(features, last: int, args) -> tuple[dict, Path]:
    """Every requested BoxMOT tracker in one runner process. Its outputs are cached under
    ``<cache-dir>/boxmot/<key>`` (key: the feed's bytes, the trackers, the runner's code, BoxMOT's version):
    a re-run of the table does not re-run BoxMOT (``--fresh-peers`` does)."""
    import hashlib

    names = boxmot_names(args.boxmot)
    offsets = features.offsets[: last + 1]
    feed = {"offsets": offsets, "boxes": features.flat("detector", "boxes")[: offsets[-1]],
            "scores": features.flat("detector", "scores")[: offsets[-1]]}
    if "osnet" in features.outputs:
        feed["embeddings"] = features.flat("osnet", "embeddings")[: offsets[-1], 0]
    source = features.source
    if hasattr(source, "files"):
        feed["frame_files"] = np.array([str(p) for p in source.files])
    else:
        feed["video"] = np.array(str(source.path))
    digest = hashlib.sha256(f"{BOXMOT_VERSION}|{','.join(names)}|".encode())
    digest.update((BENCH_DIR / "boxmot_runner.py").read_bytes())
    for key in sorted(feed):
        digest.update(key.encode() + np.ascontiguousarray(feed[key]).tobytes())
    folder = Path(args.cache_dir).expanduser() / "boxmot" / digest.hexdigest()[:32]
    if (folder / "report.json").is_file() and not getattr(args, "fresh_peers", False):
        report = json.loads((folder / "report.json").read_text())
        report["cached"] = True
        return report, folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kprtrack-boxmot-") as tmp:
        path = Path(tmp) / "feed.npz"
        np.savez(path, **feed)
        command = [str(boxmot_python(args.boxmot_venv)), str(BENCH_DIR / "boxmot_runner.py"), "--input", str(path),
                   "--out", str(folder), "--trackers", ",".join(names), "--frames", str(last)]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        (folder / "report.json").unlink(missing_ok=True)
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise PeerUnavailable(f"BoxMOT runner failed (exit {done.returncode}):\n{tail}")
    return json.loads((folder / "report.json").read_text()), folder
