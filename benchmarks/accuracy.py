"""Tracking accuracy on real video: kprtrack's tracker configurations and published trackers, SAME inputs.

    python benchmarks/accuracy.py                        # PETS09-S2L1 (../shared), frames 1-400 evaluated
    python benchmarks/accuracy.py --rows kprtrack        # only kprtrack's rows (seconds once cached)
    python benchmarks/accuracy.py --tracker kprtrack --set kalman=true --set iou_weight=1 --embeddings osnet
    python benchmarks/accuracy.py --video clip.mp4|frames/ --gt gt.txt [--frames A-B] [--markdown]
    python benchmarks/accuracy.py --posetrack GT_DIR --images ROOT     # PoseTrack data: keypoint HOTA too

Detection (kprtrack's own detector stage, composed as ``python -m kprtrack run`` composes it: YOLOX-nano
ONNX, score >= 0.1), MoveNet pose, OSNet embeddings (reid=onnx) and part-colour embeddings
(reid=part_colors) run once per sequence and are cached (npz, keyed on the input's checksum, the stage's
config, its weights' checksum and its code), so a second run only re-tracks. Every tracker then gets the
same per-frame detections, and where it uses appearance the same OSNet embeddings:

- kprtrack rows (``ROWS`` below, or ``--tracker/--set``): ``kprtrack.tracker`` built from
  ``configs/tracker/<name>.yaml`` through the same composition as ``python -m kprtrack run``;
- Roboflow ``trackers`` ByteTrack (``pip install "trackers>=2.6"``, the ``bench`` extra);
- BoxMOT 25.0.0 ByteTrack, OC-SORT, BoT-SORT, StrongSORT, DeepOCSORT, BoostTrack, in BoxMOT's own venv
  (``benchmarks/boxmot_env.sh``), driven by ``benchmarks/boxmot_runner.py`` with the cached detections and
  OSNet embeddings (``embs=``: BoxMOT's own ReID never runs) and the decoded frames (camera-motion
  compensation).

Each tracker's MOT txt is evaluated with ``kprtrack.eval.evaluate_mot`` (trackeval, HOTA/CLEAR/Identity)
on the evaluated frame range only; one table, sorted by HOTA, with each tracker's frames/s (tracker
update calls only). Ground-truth rows flagged 0 count as visible pedestrians unless ``--gt-flags as-is``
(PETS09's MOT15 GT: columns 8-9 are world coordinates, and every row is a pedestrian).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import kprtrack.runtime  # noqa: E402  (installed: pip install -e ".[bench]")

kprtrack.runtime.configure_process()  # first: it may choose OpenBLAS's kernels, which must precede numpy

import numpy as np

from kprtrack.record import Detections

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import accuracy_peers as peers  # noqa: E402  (benchmarks/accuracy_peers.py)
from accuracy_peers import mot_rows  # noqa: E402

# Bump when what is cached changes meaning (the stages' own code is part of every key already).
CACHE_VERSION = 1
EMBEDDINGS = ("none", "osnet", "part_colors")

# The kprtrack rows: (label, tracker config = configs/tracker/<name>.yaml, embeddings it gets, overrides).
# ``embeddings``: none (boxes and scores only), osnet (OSNet x0.25 global embedding, K = 0 parts) or
# part_colors (training-free part colours, 8 parts + foreground, visibility from MoveNet keypoints).
IOU_ONLY = ["appearance_weight=0", "iou_weight=1", "match_thresh=0.8", "second_match_thresh=0.5",
            "unconfirmed_match_thresh=0.7"]
ROWS: list[tuple[str, str, str, list[str]]] = [
    # kprtrack_video: the default of dataset=video (appearance + Kalman motion gate + IoU for continuing tracks)
    ("kprtrack video default (OSNet)", "kprtrack_video", "osnet", []),
    ("kprtrack video, part_colors", "kprtrack_video", "part_colors", []),
    # each motion cue alone: the gate and the IoU blend each fix what appearance alone gets wrong
    ("kprtrack video, no motion at all (OSNet)", "kprtrack_video", "osnet",
     ["kalman=false", "motion_gate=0", "iou_weight=0"]),
    ("kprtrack video, motion gate only (OSNet)", "kprtrack_video", "osnet", ["iou_weight=0"]),
    ("kprtrack video, IoU blend only (OSNet)", "kprtrack_video", "osnet", ["motion_gate=0"]),
    ("kprtrack video, IoU only (Kalman + gate)", "kprtrack_video", "none", IOU_ONLY),
    # kprtrack: the paper's appearance-only tracker (the default of dataset=posetrack21)
    ("kprtrack paper, appearance only (OSNet)", "kprtrack", "osnet", []),
    ("kprtrack paper, part_colors", "kprtrack", "part_colors", []),
    ("kprtrack paper + Kalman IoU (OSNet)", "kprtrack", "osnet", ["kalman=true", "iou_weight=1"]),
    ("kprtrack IoU only (Kalman)", "kprtrack", "none", ["kalman=true", *IOU_ONLY]),
]


def shared_root() -> Path:
    return Path(os.environ.get("KPRTRACK_SHARED", REPO.parent / "shared"))


def default_cache_dir() -> Path:
    home = os.environ.get("KPRTRACK_HOME")
    return Path(home).expanduser() / "accuracy" if home else Path(tempfile.gettempdir()) / "kprtrack-accuracy"


# ------------------------------------------------------------------------------------- frames and GT
def parse_frames(text: str | None) -> tuple[int, int | None] | None:
    """``A-B`` (1-based, inclusive), ``A-`` (to the end) or ``A`` (one frame); None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?", text)
    if not match:
        raise ValueError(f"--frames {text!r}: expected A-B (1-based, inclusive), A- or A")
    first = int(match.group(1))
    last = first if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
    if first < 1 or (last is not None and last < first):
        raise ValueError(f"--frames {text!r}: need 1 <= A <= B")
    return first, last


def read_gt(path: Path) -> np.ndarray:
    """MOT ground truth rows [R, >= 7] (validated by kprtrack's reader)."""
    from kprtrack.eval.mot import read_mot_txt

    return read_mot_txt(Path(path), min_columns=7).rows


def frame_range(requested: tuple[int, int | None] | None, gt: np.ndarray | None, decoded: int) -> tuple[int, int]:
    """The evaluated frames: as requested, else 1 to the last ground-truth frame; never past the video."""
    first, last = requested if requested else (1, None)
    if last is None:
        last = int(gt[:, 0].max()) if gt is not None and len(gt) else decoded
    last = min(last, decoded)
    if last < first:
        raise ValueError(f"frames {first}-{last}: the video has {decoded} decoded frames")
    return first, last


def crop_rows(rows: np.ndarray, first: int, last: int) -> np.ndarray:
    """MOT rows of frames first..last, renumbered from 1 (the evaluation sees a sequence of last-first+1 frames)."""
    rows = np.asarray(rows, np.float64)
    keep = (rows[:, 0] >= first) & (rows[:, 0] <= last)
    out = rows[keep].copy()
    out[:, 0] -= first - 1
    return out


def evaluate_range(gt: np.ndarray, pred: np.ndarray, first: int, last: int, *, all_visible: bool = True,
                   preprocess="auto", name: str = "seq") -> dict:
    """Box HOTA/CLEAR/Identity of ``pred`` against ``gt`` on frames first..last only (kprtrack's evaluate_mot).
    ``all_visible``: every GT row counts (its flag column set to 1)."""
    from kprtrack.eval import evaluate_mot

    gt_rows = crop_rows(gt, first, last)
    if all_visible:
        gt_rows[:, 6] = 1
    # Predictions as MOT tracker output: frame,id,box,conf,-1,-1,-1 (anything past the confidence, e.g.
    # the GT's world coordinates when the GT itself is the prediction, is not a class).
    pred_rows = np.full((len(pred), 10), -1.0)
    if len(pred):
        pred = np.asarray(pred, np.float64)
        pred_rows[:, :7] = pred[:, :7] if pred.shape[1] >= 7 else np.c_[pred[:, :6], np.ones(len(pred))]
        pred_rows = crop_rows(pred_rows, first, last)
    with tempfile.TemporaryDirectory(prefix="kprtrack-acc-eval-") as tmp:
        seq_dir = Path(tmp) / "gt" / name
        seq_dir.mkdir(parents=True)
        write_mot(seq_dir / "gt.txt", gt_rows)
        (seq_dir / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={last - first + 1}\n")
        (Path(tmp) / "pred").mkdir()
        write_mot(Path(tmp) / "pred" / f"{name}.txt", pred_rows)
        result = evaluate_mot(Path(tmp) / "gt", Path(tmp) / "pred", None,
                              cfg={"progress": False, "mot": {"preprocess": preprocess}})
    return result["box"]["combined"]


def write_mot(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in np.asarray(rows, np.float64).reshape(-1, np.asarray(rows).shape[-1] if len(rows) else 10):
        head = f"{int(row[0])},{int(row[1])}," + ",".join(f"{v:.2f}" for v in row[2:6])
        tail = ",".join(f"{v:g}" for v in row[6:])
        lines.append(f"{head},{tail}" if tail else head)
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


# ------------------------------------------------------------------------------------- model stages
@dataclass
class Inputs:
    """What the model stages read: a video, a folder of frames, or PoseTrack sequences."""

    video: Path | None = None
    shared: Path = field(default_factory=shared_root)
    detector: Path | None = None
    pose: Path | None = None
    reid: Path | None = None
    score_thresh: float = 0.1
    max_frames: int | None = None  # decode at most this many frames (None: the whole video)


def stage_overrides(inputs: Inputs) -> list[str]:
    """``python -m kprtrack run`` overrides for the light stack: YOLOX-nano ONNX, MoveNet, OSNet ONNX."""
    models = inputs.shared / "models"
    detector = inputs.detector or models / "yolox_nano_416.onnx"
    pose = inputs.pose or models / "movenet_singlepose_lightning_int8.tflite"
    reid = inputs.reid or models / "osnet_x0_25_msmt17.onnx"
    return [
        "detector=yolox_onnx", f"detector.weights={detector}", f"detector.score_thresh={inputs.score_thresh}",
        "detector.download=false",
        "pose=movenet", f"pose.weights={pose}", "pose.download=false",
        "reid=onnx", f"reid.model={reid}", "reid.color=rgb", "reid.scale=0.00392156862745098",
        "reid.mean=[0.485,0.456,0.406]", "reid.std=[0.229,0.224,0.225]", "reid.height=256", "reid.width=128",
    ]


# The stage caches and what each one is computed from (its upstream).
STAGES = {"detector": None, "pose": "detector", "osnet": "detector", "part_colors": "pose"}
NEEDS = {"none": ("detector",), "osnet": ("detector", "osnet"), "part_colors": ("detector", "pose", "part_colors")}


def stage_configs(inputs: Inputs) -> dict:
    """The composed config node of each stage (the part_colors one from ``reid=part_colors``)."""
    from kprtrack.config import compose

    cfg = compose("run", stage_overrides(inputs))
    return {"detector": cfg.detector, "pose": cfg.pose, "osnet": cfg.reid,
            "part_colors": compose("run", ["reid=part_colors"]).reid}


def code_checksum(target: str) -> str:
    """Every project module ``_target_``'s module imports, directly or not, and kprtrack's version (the
    stage cache's rule, kprtrack/cache.py; found by parsing, not importing: a tracker-only re-run
    imports no model runtime)."""
    from kprtrack import __version__
    from kprtrack.cache import closure_checksum

    return hashlib.sha256(f"{__version__}|{CACHE_VERSION}|{closure_checksum(target.rsplit('.', 1)[0])}".encode()).hexdigest()[:16]


def file_checksum(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from kprtrack.weights import sha256_of

    return sha256_of(path)


def cache_key(name: str, config: dict, upstream: str, fingerprint: str) -> str:
    """A stage's cache key: its resolved config, its weights file's sha256, its code, the upstream stage's
    key and the input's checksum."""
    weights = [file_checksum(Path(str(config[k])).expanduser()) for k in ("weights", "model")
               if config.get(k) and Path(str(config[k])).expanduser().is_file()]
    payload = json.dumps({"v": CACHE_VERSION, "stage": name, "config": config, "weights": weights,
                          "code": code_checksum(config["_target_"]), "upstream": upstream, "input": fingerprint},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def input_checksum(source) -> str:
    """sha256 of the input's bytes (video file, or every frame file / annotation), plus how many frames."""
    from kprtrack.weights import sha256_of

    digest = hashlib.sha256()
    if hasattr(source, "files"):  # a folder of frames
        for path in source.files:
            digest.update(path.name.encode() + sha256_of(path).encode())
    elif hasattr(source, "seq"):  # PoseTrack sequence: annotation file + every image's bytes
        digest.update(sha256_of(source.seq.path).encode())
        for image in source.images:
            path = source.root / image["file_name"]
            digest.update(image["file_name"].encode() + (sha256_of(path).encode() if path.is_file() else b"-"))
    else:
        digest.update(sha256_of(source.path).encode())
    return digest.hexdigest()


@dataclass
class SequenceFeatures:
    """One sequence's cached per-frame stage outputs: ``outputs[stage][i]`` is frame i's Detections."""

    name: str
    fps: float
    frames: int
    outputs: dict[str, list[Detections]]
    source: object = None

    def detections(self, index: int, embeddings: str = "none") -> Detections:
        dets = self.outputs["detector"][index]
        if embeddings == "none":
            return Detections(dets.boxes, dets.scores)
        reid = self.outputs[embeddings][index]
        keypoints = self.outputs["pose"][index].keypoints if "pose" in self.outputs else None
        return Detections(dets.boxes, dets.scores, keypoints=keypoints, embeddings=reid.embeddings,
                          visibility=reid.visibility)

    def flat(self, stage: str, name: str) -> np.ndarray:
        return np.concatenate([getattr(d, name) for d in self.outputs[stage]], axis=0)

    @property
    def offsets(self) -> np.ndarray:
        return np.cumsum([0] + [len(d) for d in self.outputs["detector"]]).astype(np.int64)


def limited(frames, count: int | None):
    for frame in frames:
        if count is not None and frame.index >= count:
            return
        yield frame


def compute_features(source, inputs: Inputs, wanted: set[str], cache_dir: Path, progress: bool = True,
                     configs: dict | None = None, built: dict | None = None) -> SequenceFeatures:
    """The stage outputs in ``wanted`` (plus what they need) for one sequence, from the cache or computed.
    ``built``: stage objects kept between sequences (filled here)."""
    from kprtrack.cache import StageCache
    from kprtrack.pipeline import batched, build_stage
    from omegaconf import OmegaConf

    needed = set(wanted)
    for name in list(wanted):
        while STAGES[name]:
            name = STAGES[name]
            needed.add(name)
    order = [s for s in STAGES if s in needed]
    configs = configs or stage_configs(inputs)
    cache = StageCache(cache_dir)
    fingerprint = f"{input_checksum(source)}|frames={inputs.max_frames}"
    keys, outputs = {}, {}
    for name in order:
        config = OmegaConf.to_container(configs[name], resolve=True)
        keys[name] = cache_key(name, config, keys.get(STAGES[name]) or "", fingerprint)
        cached = cache.load(name, keys[name])
        if cached is not None:
            outputs[name] = cached
    missing = [s for s in order if s not in outputs]
    stages = built if built is not None else {}
    for name in missing:  # only the stages that must run are built (their models loaded)
        if name not in stages:
            stages[name] = build_stage(configs[name])
    if missing:
        from tqdm import tqdm

        new = {name: [] for name in missing}
        started = time.perf_counter()
        total = min(len(source) or 0, inputs.max_frames or 10**9) or None
        bar = tqdm(total=total, desc=f"{source.name}: {'+'.join(missing)}", unit="frame", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True, leave=False)
        for batch in batched(limited(source.frames(decode=True), inputs.max_frames), 8):
            if "detector" in new:
                dets = stages["detector"].detect(batch)
                new["detector"] += dets
            else:
                dets = [outputs["detector"][f.index] for f in batch]
            for frame, det in zip(batch, dets):
                got = {"detector": det}
                for name in order[1:]:
                    upstream = got[STAGES[name]]
                    if name in new:
                        run = stages[name].estimate if name == "pose" else stages[name].embed
                        got[name] = run(frame, upstream)
                        new[name].append(got[name])
                    else:
                        got[name] = outputs[name][frame.index]
                frame.image = None
            bar.update(len(batch))
        bar.close()
        for name, frames in new.items():
            cache.save(name, keys[name], frames)
            outputs[name] = frames
        print(f"  {source.name}: {'+'.join(missing)} on {len(new[missing[0]])} frames in "
              f"{time.perf_counter() - started:.0f} s (cached in {cache_dir})", file=sys.stderr)
    count = len(outputs["detector"])
    return SequenceFeatures(source.name, float(getattr(source, "fps", 25.0) or 25.0), count, outputs, source)


# ------------------------------------------------------------------------------------- trackers
@dataclass
class Row:
    """One tracker to evaluate and how it is fed; ``run`` returns MOT rows [R, 10] and the update time."""

    label: str
    kind: str  # kprtrack | roboflow | boxmot
    fed: str
    config: str = "kprtrack"
    embeddings: str = "none"
    overrides: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the row did not run


def kprtrack_rows(rows=ROWS) -> list[Row]:
    out = []
    for label, config, embeddings, overrides in rows:
        if embeddings not in EMBEDDINGS:
            raise ValueError(f"row {label!r}: embeddings must be one of {EMBEDDINGS}, not {embeddings!r}")
        out.append(Row(label, "kprtrack", feeding(embeddings), config, embeddings, list(overrides)))
    return out


def feeding(embeddings: str) -> str:
    return {"none": "boxes + scores", "osnet": "boxes + scores + OSNet x0.25 ONNX (512-D, K=0)",
            "part_colors": "boxes + scores + part_colors (8 parts + fg, MoveNet visibility)"}[embeddings]


def build_kprtrack(config: str, overrides: list[str]):
    """The tracker exactly as ``python -m kprtrack run tracker=<config> tracker.<k>=<v> ...`` builds it."""
    from kprtrack.config import compose
    from kprtrack.pipeline import build_stage

    cfg = compose("run", [f"tracker={config}"] + [f"tracker.{o}" for o in overrides])
    return build_stage(cfg.tracker)


def track_kprtrack(row: Row, features: SequenceFeatures, last: int) -> tuple[np.ndarray, float, list[Detections]]:
    tracker = build_kprtrack(row.config, row.overrides)
    tracker.reset()
    frames = [features.detections(i, row.embeddings) for i in range(last)]
    out, tracked, elapsed = [], [], 0.0
    for index, dets in enumerate(frames):
        started = time.perf_counter()
        result = tracker.update(dets)
        elapsed += time.perf_counter() - started
        tracked.append(result)
        out.append(mot_rows(index + 1, result.boxes, result.track_ids, result.scores))
    return np.concatenate(out) if out else np.zeros((0, 10)), elapsed, tracked


# ------------------------------------------------------------------------------------- report
COLUMNS = ("HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDSW")


def table(results: list[dict], markdown: bool = False, extra: tuple[str, ...] = ()) -> str:
    """Rows sorted by HOTA (skipped ones last): tracker | HOTA | AssA | DetA | MOTA | IDF1 | IDSW | fps."""
    ran = sorted((r for r in results if r.get("metrics")), key=lambda r: -r["metrics"]["HOTA"])
    header = ["tracker", *COLUMNS, *extra, "fps"]
    body = []
    for r in ran:
        m = r["metrics"]
        cells = [f"{100 * m[k]:.1f}" if k != "IDSW" else f"{int(m[k])}" for k in COLUMNS]
        cells += [f"{100 * m[k]:.1f}" for k in extra]
        body.append([r["label"], *cells, f"{r['fps']:,.0f}" if r.get("fps") else "-"])
    for r in results:
        if not r.get("metrics"):
            body.append([r["label"], *(["-"] * (len(header) - 2)), "-"])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, body)])


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_").lower()


# ------------------------------------------------------------------------------------- MOT mode
def open_sequence(path: Path):
    """A video file or a folder of frames, as kprtrack's ``dataset=video`` / ``dataset=images`` opens it."""
    from kprtrack.data.video import ImageFolderDataset, VideoDataset

    dataset = ImageFolderDataset(str(path)) if path.is_dir() else VideoDataset(str(path))
    sources = list(dataset.sequences())
    if len(sources) != 1:
        raise SystemExit(f"{path}: expected one sequence (a video or a folder of frames), found {len(sources)}")
    return sources[0]


def select_rows(args) -> list[Row]:
    rows: list[Row] = []
    if args.tracker:
        label = f"{args.tracker} " + " ".join(args.set) if args.set else args.tracker
        rows.append(Row(label.strip(), "kprtrack", feeding(args.embeddings), args.tracker, args.embeddings,
                        list(args.set)))
    elif args.rows in ("kprtrack", "all"):
        rows += kprtrack_rows()
    if args.rows in ("peers", "all"):
        rows += peers.peer_rows(args, Row)
    return rows


def run_mot(args) -> list[dict]:
    video = Path(args.video).expanduser()
    gt = read_gt(Path(args.gt).expanduser()) if args.gt else None
    source = open_sequence(video)
    inputs = Inputs(video=video, max_frames=args.max_frames, score_thresh=args.score_thresh,
                    detector=args.detector, pose=args.pose, reid=args.reid)
    rows = select_rows(args)
    wanted = {r.embeddings for r in rows if r.embeddings != "none"} | {"detector"}
    if any(r.kind == "boxmot" for r in rows if not r.skipped):
        wanted.add("osnet")
    features = compute_features(source, inputs, wanted, Path(args.cache_dir).expanduser(), not args.quiet)
    first, last = frame_range(parse_frames(args.frames), gt, features.frames)
    out_dir = Path(args.out).expanduser() if args.out else Path(args.cache_dir).expanduser() / "results" / features.name
    preprocess = {"auto": "auto", "true": True, "false": False}[args.preprocess]
    all_visible = args.gt_flags == "all-visible"
    if gt is not None:
        flagged = int((crop_rows(gt, first, last)[:, 6] == 0).sum())
        self_check = evaluate_range(gt, gt, first, last, all_visible=all_visible, preprocess=preprocess)
        note = f"{flagged} GT rows flagged 0 counted as visible" if all_visible else \
            f"{flagged} GT rows flagged 0 ignored (as-is)"
        print(f"{features.name}: {features.frames} frames decoded, frames {first}-{last} evaluated ({note}); "
              f"GT vs itself: HOTA {100 * self_check['HOTA']:.1f} IDF1 {100 * self_check['IDF1']:.1f}",
              file=sys.stderr)
    results = []
    for row in rows:
        result = {"label": row.label, "kind": row.kind, "fed": row.fed, "overrides": row.overrides,
                  "config": row.config, "embeddings": row.embeddings}
        results.append(result)
        if row.skipped:
            result["skipped"] = row.skipped
            continue
        try:
            if row.kind == "kprtrack":
                pred, elapsed, _ = track_kprtrack(row, features, last)
            else:
                pred, elapsed, result["fed"] = peers.track_peer(row, features, last, out_dir, args)
        except peers.PeerUnavailable as why:
            result["skipped"] = str(why)
            continue
        write_mot(out_dir / "mot" / f"{slug(row.label)}.txt", pred)
        result["fps"] = last / elapsed if elapsed > 0 else None
        if gt is not None:
            result["metrics"] = evaluate_range(gt, pred, first, last, all_visible=all_visible, preprocess=preprocess)
    report(results, args, out_dir, f"{features.name}, frames {first}-{last} of {features.frames} decoded")
    return results


def report(results: list[dict], args, out_dir: Path, what: str, extra: tuple[str, ...] = ()) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (out_dir / "table.md").write_text(table(results, markdown=True, extra=extra) + "\n")
    if not any(r.get("metrics") for r in results):
        print("no ground truth: tracks written, nothing evaluated", file=sys.stderr)
    print(f"\n{what}")
    print(table(results, markdown=args.markdown, extra=extra))
    print("\nfed:")
    for r in results:
        print(f"  {r['label']}: {r.get('skipped') and 'SKIPPED: ' + r['skipped'] or r['fed']}")
    print(f"\ntracks and tables: {out_dir}")


# ------------------------------------------------------------------------------------- PoseTrack mode
def run_posetrack(args) -> list[dict]:
    """PoseTrack-format data: box and keypoint HOTA (kprtrack.eval.evaluate_posetrack) per tracker row."""
    from kprtrack.data.posetrack import PoseTrackSource, load_sequence_json
    from kprtrack.eval import evaluate_posetrack
    from kprtrack.record import Frame
    from kprtrack.writers import PoseTrackWriter

    gt_dir = Path(args.posetrack).expanduser()
    root = Path(args.images).expanduser()
    files = sorted(gt_dir.glob("*.json"))
    if not files:
        raise SystemExit(f"{gt_dir}: no <seq>.json ground-truth files")
    inputs = Inputs(max_frames=args.max_frames, score_thresh=args.score_thresh, detector=args.detector,
                    pose=args.pose, reid=args.reid)
    rows = [r for r in select_rows(args) if r.kind in ("kprtrack", "roboflow")]
    configs = stage_configs(inputs)
    wanted = {"detector", "pose"} | {r.embeddings for r in rows if r.embeddings != "none"}
    sequences, built = [], {}
    for path in files:
        source = PoseTrackSource(load_sequence_json(path), root, False, 25.0)
        sequences.append(compute_features(source, inputs, wanted, Path(args.cache_dir).expanduser(),
                                          not args.quiet, configs, built))
    out_dir = Path(args.out).expanduser() if args.out else Path(args.cache_dir).expanduser() / "results" / "posetrack"
    results = []
    for row in rows:
        result = {"label": row.label, "kind": row.kind, "fed": row.fed, "overrides": row.overrides}
        results.append(result)
        if row.skipped:
            result["skipped"] = row.skipped
            continue
        pred_dir = out_dir / "posetrack" / slug(row.label)
        writer = PoseTrackWriter(str(pred_dir), subdir=".")
        elapsed = frames = 0
        for features in sequences:
            source = features.source
            n = features.frames
            if row.kind == "kprtrack":
                _, spent, tracked = track_kprtrack(row, features, n)
            else:
                spent, tracked = peers.track_roboflow_detections(features, n)
            elapsed += spent
            frames += n
            writer.begin_sequence(source.name, source.meta)
            for index, dets in enumerate(tracked):
                image = source.images[index]
                keypoints = features.outputs["pose"][index].keypoints
                writer.write(Frame(source.name, index, None, image_id=image["id"], file_name=image["file_name"],
                                   width=image.get("width"), height=image.get("height")),
                             dets.with_(keypoints=keypoints))
            writer.end_sequence()
        metrics = evaluate_posetrack(gt_dir, pred_dir, None, cfg={"progress": False})
        box, kps = metrics["box"]["combined"], metrics["keypoints"]["combined"]
        result["fps"] = frames / elapsed if elapsed > 0 else None
        result["metrics"] = {**box, "kpHOTA": kps["HOTA"], "kpAssA": kps["AssA"]}
    report(results, args, out_dir, f"PoseTrack {gt_dir}: {len(sequences)} sequence(s), box metrics + keypoint HOTA",
           extra=("kpHOTA", "kpAssA"))
    return results


# ------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    shared = shared_root()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(shared / "data/pets09/vtest.avi"),
                        help="a video file or a folder of frames (frame i = GT frame i, 1-based)")
    parser.add_argument("--gt", default=None, help="MOT ground truth txt (default with the default video: "
                                                   "PETS09 gt_frames_1-400.txt; none = tracks only)")
    parser.add_argument("--frames", default=None, help="evaluated frames A-B, 1-based inclusive (default: 1 to "
                                                       "the last GT frame); trackers run from frame 1 to B")
    parser.add_argument("--max-frames", type=int, default=None, help="decode at most this many frames "
                                                                     "(default: the whole video)")
    parser.add_argument("--posetrack", default=None, help="PoseTrack GT folder of <seq>.json (keypoint HOTA too)")
    parser.add_argument("--images", default=None, help="with --posetrack: the root the GT's file_name is under")
    parser.add_argument("--rows", choices=("kprtrack", "peers", "all"), default=None,
                        help="which rows (default: all; with --tracker: that one only)")
    parser.add_argument("--tracker", default=None, help="evaluate one kprtrack config (configs/tracker/<NAME>.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="with --tracker: a tracker override (repeatable)")
    parser.add_argument("--embeddings", choices=EMBEDDINGS, default="osnet", help="with --tracker: what it gets")
    parser.add_argument("--boxmot", default=None, help="BoxMOT trackers to run, comma-separated, or none "
                                                       f"(default: {','.join(peers.BOXMOT_TRACKERS)})")
    parser.add_argument("--fresh-peers", action="store_true", help="rerun BoxMOT even when its outputs for the "
                                                                     "same feed are cached")
    parser.add_argument("--boxmot-venv", default=os.environ.get("KPRTRACK_BOXMOT_VENV", "/tmp/kprtrack-boxmot-venv"))
    parser.add_argument("--gt-flags", choices=("all-visible", "as-is"), default="all-visible",
                        help="GT rows flagged 0: counted as visible pedestrians (default) or ignored")
    parser.add_argument("--preprocess", choices=("auto", "true", "false"), default="auto",
                        help="trackeval's MOT17 distractor preprocessing (auto: only for GT with MOT17 classes)")
    parser.add_argument("--score-thresh", type=float, default=0.1)
    parser.add_argument("--detector", default=None, help="YOLOX ONNX file (default: shared yolox_nano_416.onnx)")
    parser.add_argument("--pose", default=None, help="MoveNet TFLite file (default: the shared one)")
    parser.add_argument("--reid", default=None, help="OSNet-style ONNX file (default: shared osnet_x0_25_msmt17)")
    parser.add_argument("--cache-dir", default=str(default_cache_dir()))
    parser.add_argument("--out", default=None, help="where tracks and tables go (default: <cache-dir>/results/<seq>)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.set and not args.tracker:
        parser.error("--set needs --tracker NAME")
    if args.rows is None:  # --tracker alone: that configuration only, quickly (--rows all adds the peers)
        args.rows = "kprtrack" if args.tracker else "all"
    if args.gt is None and args.posetrack is None and Path(args.video) == shared / "data/pets09/vtest.avi":
        args.gt = str(shared / "data/pets09/gt_frames_1-400.txt")
    try:
        parse_frames(args.frames)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from kprtrack.errors import InputError

    try:
        if args.posetrack:
            if not args.images:
                raise SystemExit("--posetrack needs --images ROOT (the folder the GT's file_name paths start from)")
            run_posetrack(args)
        else:
            run_mot(args)
    except (InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
