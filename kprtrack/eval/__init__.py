"""Evaluation of tracking predictions: box HOTA/CLEAR/Identity (trackeval) and PoseTrack21 keypoint HOTA.

``evaluate_posetrack(gt_dir, pred_dir, out_dir, cfg=None)`` and ``evaluate_mot(...)`` write
metrics.json, report.md and report.html into out_dir and return the metrics dict.
"""
from __future__ import annotations


def evaluate_posetrack(gt_dir, pred_dir, out_dir, cfg=None) -> dict:
    from kprtrack.eval.api import evaluate_posetrack as run

    return run(gt_dir, pred_dir, out_dir, cfg)


def evaluate_mot(gt_dir, pred_dir, out_dir, cfg=None) -> dict:
    from kprtrack.eval.api import evaluate_mot as run

    return run(gt_dir, pred_dir, out_dir, cfg)


__all__ = ["evaluate_posetrack", "evaluate_mot"]
