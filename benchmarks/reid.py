"""KPR_IN crops/s on this machine at batch 1 vs batch 32 (random init; speed does not depend on weights).

    python benchmarks/reid.py [--backbone NAME] [--crops 64] [--device cpu] [--sweep 1,4,8,16,32]
        [--cpu-malloc reuse|system]
Prints both throughputs and their ratio, measured in one run (and crops/s for each --sweep batch size).
--cpu-malloc system shows the glibc default (freed big tensors unmapped, re-faulted on every batch).
"""
from __future__ import annotations

import argparse
import time
import warnings

import kprtrack.runtime

kprtrack.runtime.configure_process()  # as the CLI: before numpy; lets --cpu-malloc reuse take effect

import numpy as np
import torch

from kprtrack.reid.kpr import KPRReID


def crops_per_second(reid: KPRReID, images, kps, negs, repeats: int) -> float:
    reid.embed_crops(images[:reid.batch_size], kps[:reid.batch_size], negs[:reid.batch_size])  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        reid.embed_crops(images, kps, negs)
    return repeats * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="swinv2_base_window12to16_192to256.ms_in22k_ft_in1k")
    parser.add_argument("--crops", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sweep", default="", help="comma-separated extra batch sizes, e.g. 1,4,8,16,32")
    parser.add_argument("--cpu-malloc", default="reuse", choices=("reuse", "system"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (200, 90, 3), dtype=np.uint8) for _ in range(args.crops)]
    kps = np.concatenate([rng.uniform(0, 1, (args.crops, 17, 2)) * [90, 200], np.ones((args.crops, 17, 1))], axis=2)
    negs = [kps[(i + 1) % args.crops][None] for i in range(args.crops)]
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        reid = KPRReID(weights=None, backbone=args.backbone, device=args.device,
                       cpu_malloc=args.cpu_malloc)
    sweep = [int(v) for v in args.sweep.split(",") if v.strip()]
    for batch in [1, 32] + [b for b in sweep if b not in (1, 32)]:
        reid.batch_size = batch
        results[batch] = crops_per_second(reid, images, kps, negs, args.repeats)
        print(f"batch {batch:2d}: {results[batch]:.2f} crops/s")
    print(f"ratio batch32/batch1: {results[32] / results[1]:.2f} "
          f"({args.backbone}, {args.device}, {torch.get_num_threads()} threads, cpu_malloc={args.cpu_malloc})")


if __name__ == "__main__":
    main()
