"""HRNet-W32 (random init) crops/s on CPU: all crops of a frame in one batch vs one crop at a time.

    python benchmarks/pose.py [--crops 16] [--repeats 3] [--threads N] [--input 256x192]

Prints both rates and their ratio, measured in the same run (same machine load for both).
The whole estimate() path is timed (crop warp, normalisation, model, flip test, decode).
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def best_rates(runs: dict, crops: int, repeats: int) -> dict:
    """Best-of-``repeats`` crops/s of each ``run()``; the runs alternate so that a change in
    machine load hits both sides alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: crops / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch default")
    parser.add_argument("--input", default="256x192", help="HxW model input")
    parser.add_argument("--no-flip", action="store_true")
    args = parser.parse_args()

    import torch

    from kprtrack.pose.hrnet import HRNetPose
    from kprtrack.record import Detections, Frame

    warnings.simplefilter("ignore")  # random init is "COCO layout": the head warning is noise here
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    height, width = (int(v) for v in args.input.split("x"))
    est = HRNetPose(weights=None, input_size=[height, width], flip_test=not args.no_flip,
                    batch_size=args.crops, device="cpu")
    rng = np.random.default_rng(0)
    frame = Frame("bench", 0, rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
    x1 = rng.uniform(0, 1100, args.crops)
    y1 = rng.uniform(0, 400, args.crops)
    boxes = np.stack([x1, y1, x1 + rng.uniform(60, 180, args.crops),
                      y1 + rng.uniform(150, 320, args.crops)], axis=1).astype(np.float32)
    all_dets = Detections(boxes, np.ones(args.crops))
    singles = [all_dets.subset([i]) for i in range(args.crops)]

    est.estimate(frame, all_dets)  # warm-up (allocator, oneDNN kernels)
    rates = best_rates({"batched": lambda: est.estimate(frame, all_dets),
                        "single": lambda: [est.estimate(frame, d) for d in singles]},
                       args.crops, args.repeats)
    batched, one_by_one = rates["batched"], rates["single"]
    print(f"HRNet-W32 {height}x{width} flip_test={not args.no_flip} threads={torch.get_num_threads()} "
          f"crops={args.crops}")
    print(f"batched:        {batched:8.2f} crops/s")
    print(f"one at a time:  {one_by_one:8.2f} crops/s")
    print(f"ratio batched / one-at-a-time: {batched / one_by_one:.2f}x")


if __name__ == "__main__":
    main()
