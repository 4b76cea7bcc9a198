"""Frames/s of YOLOX through ONNX Runtime vs eager PyTorch on this CPU, in one run.

    python benchmarks/detector.py [--sizes nano s] [--frames 20] [--threads N]

Random weights (speed does not depend on their values), exported to a temporary ONNX file; each
backend runs the whole detector (letterbox, network, decode, NMS) on the same 1280x720 frames at
the model's native input size, batch 1. Prints frames/s for both and the ratio ONNX / PyTorch.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from kprtrack.detector.yolox import YOLOXDetector  # noqa: E402
from kprtrack.detector.yolox_onnx import YOLOXOnnxDetector  # noqa: E402
from kprtrack.export import export_onnx  # noqa: E402
from kprtrack.record import Frame  # noqa: E402


def frames_per_second(detector, frames, warmup: int = 2) -> float:
    detector.detect(frames[:warmup])
    start = time.perf_counter()
    for frame in frames:
        detector.detect([frame])
    return len(frames) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["nano", "s"])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frames = [Frame("bench", i, rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
              for i in range(args.frames)]
    print(f"CPU threads: {args.threads}, frames: {args.frames} x 1280x720, batch 1")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            pytorch = YOLOXDetector(weights=None, model_size=size, batch_size=1)
            onnx_path = export_onnx(pytorch.model, pytorch.input_hw, Path(tmp) / f"{size}.onnx")
            onnx = YOLOXOnnxDetector(weights=str(onnx_path), batch_size=1, num_threads=args.threads)
            torch_fps = frames_per_second(pytorch, frames)
            onnx_fps = frames_per_second(onnx, frames)
            h, w = pytorch.input_hw
            print(f"yolox_{size} {h}x{w}: PyTorch eager {torch_fps:.2f} frames/s, ONNX Runtime "
                  f"{onnx_fps:.2f} frames/s, ratio ONNX/PyTorch = {onnx_fps / torch_fps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
