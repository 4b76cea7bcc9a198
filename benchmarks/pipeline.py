"""End-to-end frames/s on a video, CPU: kprtrack's decode-once + batched crops vs the naive way
(the frame decoded again for every detection, crops run one at a time), with the same models.

    python benchmarks/pipeline.py [--video clip.mp4] [--frames 40]

Models: YOLOX-nano ONNX (official COCO weights), HRNet-W32 (random init: speed only) for pose, and
the OpenVINO person-ReID ONNX model. The detector, ONNX files and default video come from the
shared test material (``$KPRTRACK_SHARED`` or ``../shared``). Both modes run in this one process,
alternating, and the ratio of their frames/s is printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from kprtrack.config import compose
from kprtrack.pipeline import batched, build_stage
from kprtrack.record import Frame

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("KPRTRACK_SHARED", REPO.parent / "shared"))


def looped_video(source: Path, frames: int, folder: Path) -> Path:
    """The source video's frames repeated up to ``frames`` (a short clip stands in for a long one)."""
    capture = cv2.VideoCapture(str(source))
    images = []
    while (ok_image := capture.read())[0]:
        images.append(ok_image[1])
    if not images:
        sys.exit(f"cannot read {source}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    height, width = images[0].shape[:2]
    path = folder / "bench.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(frames):
        writer.write(images[i % len(images)])
    writer.release()
    return path


def build(args):
    overrides = [
        "dataset=video", f"dataset.path={args.video}",
        "detector=yolox_onnx", f"detector.weights={args.detector}", "detector.num_threads=2",
        "pose=hrnet", "pose.weights=null", "pose.flip_test=false", "pose.device=cpu",
        "reid=onnx", f"reid.model={args.reid}",
    ]
    cfg = compose("run", overrides)
    return build_stage(cfg.detector), build_stage(cfg.pose), build_stage(cfg.reid)


def decode_once(video: Path, detector, pose, reid, batch_size: int) -> int:
    """kprtrack's way: every frame decoded once, all people of a frame in one pose/ReID batch."""
    [source] = list(build_stage({"_target_": "kprtrack.data.video.VideoDataset", "path": str(video)}).sequences())
    count = 0
    for batch in batched(source.frames(), batch_size):
        for frame, dets in zip(batch, detector.detect(batch)):
            reid.embed(frame, pose.estimate(frame, dets))
            count += 1
    return count


def per_detection(video: Path, detector, pose, reid) -> int:
    """The naive way: the frame is decoded again for every detection and each crop runs alone."""
    capture = cv2.VideoCapture(str(video))
    count = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        dets = detector.detect([Frame("bench", count, image)])[0]
        for j in range(len(dets)):
            again = cv2.VideoCapture(str(video))
            again.set(cv2.CAP_PROP_POS_FRAMES, count)
            _, fresh = again.read()
            again.release()
            frame = Frame("bench", count, fresh)
            one = pose.estimate(frame, dets.subset([j]))
            reid.embed(frame, one)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SHARED / "data/media/mmpose_demo.mp4")
    parser.add_argument("--frames", type=int, default=40, help="frames to time (the video is looped)")
    parser.add_argument("--detector", default=str(SHARED / "models/yolox_nano_416.onnx"))
    parser.add_argument("--reid", default=str(SHARED / "models/person-reidentification-retail-0287.onnx"))
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each mode")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    for path in (args.video, Path(args.detector), Path(args.reid)):
        if not Path(path).is_file():
            sys.exit(f"missing {path}: set KPRTRACK_SHARED or pass --video/--detector/--reid")
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        video = looped_video(args.video, args.frames, Path(tmp))
        detector, pose, reid = build(args)
        people = sum(len(d) for d in detector.detect([Frame("b", 0, cv2.VideoCapture(str(video)).read()[1])]))
        times = {"decode once + batched crops": [], "per-detection decode + single crops": []}
        per_detection(video, detector, pose, reid)  # warm-up (ONNX Runtime / torch first calls)
        for _ in range(args.rounds):
            for name, run in (("decode once + batched crops", lambda: decode_once(video, detector, pose, reid,
                                                                                   args.batch_size)),
                              ("per-detection decode + single crops", lambda: per_detection(video, detector, pose,
                                                                                            reid))):
                start = time.perf_counter()
                frames = run()
                times[name].append(frames / (time.perf_counter() - start))
    print(f"video {args.video.name} looped to {args.frames} frames, ~{people} people per frame; "
          f"YOLOX-nano ONNX + HRNet-W32 (random init) + ONNX ReID, CPU, {torch.get_num_threads()} threads")
    for name, values in times.items():
        print(f"  {name:<38} {np.median(values):7.2f} frames/s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    fast, slow = (np.median(v) for v in times.values())
    print(f"ratio decode-once / per-detection: {fast / slow:.2f}x")


if __name__ == "__main__":
    main()
