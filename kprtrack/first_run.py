"""What ``run`` says before any work: the files a first run downloads (how much, from where, into
which folder) and, on a machine without CUDA, that a heavy stack is about to run on the CPU and
how to switch to ``preset=fast``."""
from __future__ import annotations

import sys

from kprtrack.weights import describe_downloads, pending_downloads

# PyTorch stages that run well under 1 frame/s on a laptop CPU at the paper's sizes.
HEAVY_STAGES = {
    "kprtrack.detector.yolox.YOLOXDetector": "YOLOX (PyTorch)",
    "kprtrack.pose.hrnet.HRNetPose": "HRNet",
    "kprtrack.pose.mmpose_topdown.MMPoseTopDown": "mmpose",
    "kprtrack.reid.kpr.KPRReID": "KPR (Swin-B)",
}
MODEL_STAGES = ("detector", "pose", "reid")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def cpu_notice(cfg) -> str | None:
    """One line when heavy PyTorch stages are about to run on a machine without CUDA."""
    heavy = [f"{stage}: {HEAVY_STAGES[str(cfg[stage].get('_target_'))]}" for stage in MODEL_STAGES
             if cfg.get(stage) is not None and str(cfg[stage].get("_target_")) in HEAVY_STAGES]
    if not heavy or _cuda_available():
        return None
    return (f"kprtrack: no CUDA GPU: this stack ({', '.join(heavy)}) runs well under 1 frame/s on a CPU; "
            f"add preset=fast for real time (YOLOX-nano ONNX, MoveNet, OSNet x0.25)")


def announce(cfg, out=None) -> None:
    """Print the CPU notice and the first-run download plan (nothing when neither applies)."""
    out = out or sys.stderr
    notice = cpu_notice(cfg)
    if notice:
        print(notice, file=out)
    pending = pending_downloads(cfg, MODEL_STAGES)
    if pending:
        print(describe_downloads(pending), file=out, flush=True)
