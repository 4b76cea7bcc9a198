"""Runs BoxMOT trackers on cached detections; executed with BoxMOT's own venv (benchmarks/boxmot_env.sh).

    /tmp/kprtrack-boxmot-venv/bin/python benchmarks/boxmot_runner.py --input feed.npz --out DIR \
        --trackers bytetrack,ocsort,botsort,strongsort,deepocsort,boosttrack

``feed.npz`` (written by benchmarks/accuracy.py): ``offsets`` [F+1] (frame f owns rows offsets[f]:offsets[f+1]),
``boxes`` [R, 4] x1 y1 x2 y2, ``scores`` [R], optionally ``embeddings`` [R, D] (OSNet), and the frames' source:
``video`` (a path) or ``frame_files`` (paths). Every tracker is built by BoxMOT's own factory with its packaged
defaults (``create_tracker(TrackerSpec(name))``) and gets, per frame, the detections as a BoxMOT ``Detections``
(class 0 = person) with the precomputed embeddings, L2-normalised as BoxMOT's ReID outputs them, attached for
the trackers that accept embeddings (so BoxMOT's own ReID never runs), and the decoded BGR frame (camera-motion compensation). Writes
``<name>.txt`` (MOT rows, the tracker's output boxes) and ``report.json`` (update seconds, what each got).
Imports nothing from kprtrack.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def frames(feed, count: int):
    import cv2

    if "video" in feed:
        capture = cv2.VideoCapture(str(feed["video"]))
        try:
            for _ in range(count):
                ok, image = capture.read()
                if not ok:
                    raise SystemExit(f"{feed['video']}: stops decoding before frame {count}")
                yield image
        finally:
            capture.release()
    else:
        for path in list(feed["frame_files"])[:count]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"cannot read {path}")
            yield image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--trackers", required=True)
    parser.add_argument("--frames", type=int, default=None, help="track frames 1..N (default: all in the feed)")
    parser.add_argument("--own-reid", default=None, metavar="WEIGHTS",
                        help="a check: the appearance trackers run BoxMOT's own ReID on these weights instead of "
                             "taking the feed's embeddings")
    args = parser.parse_args(argv)

    import torch
    import boxmot
    from boxmot.structures import Boxes, Detections
    from boxmot.trackers.factory import create_tracker
    from boxmot.trackers.registry import get_tracker_definition
    from boxmot.trackers.specs import TrackerSpec

    torch.set_num_threads(1)
    data = np.load(args.input, allow_pickle=False)
    feed = {k: data[k] for k in data.files}
    if "video" in feed:
        feed["video"] = str(feed["video"])
    offsets = feed["offsets"]
    count = min(args.frames or len(offsets) - 1, len(offsets) - 1)
    embeddings = feed.get("embeddings")
    if embeddings is not None:
        # BoxMOT's own ReID backend L2-normalises every embedding it hands its trackers (reid/core/runtime.py,
        # trackers/common/appearance/live.py), and their cosine costs assume it; supplied ones are used as given.
        norms = np.linalg.norm(embeddings.astype(np.float64), axis=1, keepdims=True)
        embeddings = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.trackers.split(",") if n.strip()]
    trackers, fed = {}, {}
    for name in names:
        trackers[name] = create_tracker(TrackerSpec(name=name))
        definition = get_tracker_definition(name)
        takes_embeddings = bool(definition.capabilities.accepts_embeddings and embeddings is not None
                                and getattr(trackers[name], "use_embeddings", True) and not args.own_reid)
        if args.own_reid and definition.capabilities.accepts_embeddings:
            trackers[name]._reid_weights = Path(args.own_reid)  # the lazy backend create_tracker leaves unset
        fed[name] = {"embeddings": takes_embeddings, "own_reid": bool(args.own_reid and not takes_embeddings
                                                                     and definition.capabilities.accepts_embeddings), "frame": bool(trackers[name].requirements.frame),
                     "class": type(trackers[name]).__name__}
    rows = {name: [] for name in names}
    seconds = {name: 0.0 for name in names}
    for index, image in enumerate(frames(feed, count)):
        start, stop = offsets[index], offsets[index + 1]
        boxes = torch.from_numpy(np.ascontiguousarray(feed["boxes"][start:stop], np.float32))
        scores = torch.from_numpy(np.clip(feed["scores"][start:stop], 0, 1).astype(np.float32))
        classes = torch.zeros(stop - start, dtype=torch.int64)
        for name, tracker in trackers.items():
            emb = torch.from_numpy(np.ascontiguousarray(embeddings[start:stop], np.float32)) \
                if fed[name]["embeddings"] else None
            dets = Detections(geometry=Boxes(boxes.clone()), scores=scores.clone(), class_ids=classes.clone(),
                              sample_id=f"f{index + 1}", embeddings=emb)
            began = time.perf_counter()
            tracks = tracker.update(dets, image)
            seconds[name] += time.perf_counter() - began
            xyxy = tracks.geometry.values.numpy().astype(np.float64)
            for box, track_id, score in zip(xyxy, tracks.track_ids.numpy(), tracks.scores.numpy()):
                rows[name].append(f"{index + 1},{int(track_id)},{box[0]:.2f},{box[1]:.2f},{box[2] - box[0]:.2f},"
                                  f"{box[3] - box[1]:.2f},{float(score):.4f},-1,-1,-1")
    for name in names:
        (out / f"{name}.txt").write_text("\n".join(rows[name]) + ("\n" if rows[name] else ""))
    report = {"boxmot": boxmot.__version__, "frames": count, "seconds": seconds, "fed": fed}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
