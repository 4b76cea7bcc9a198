"""Python API: evaluate predictions on disk, write metrics.json / report.md / report.html."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kprtrack.errors import InputError
from kprtrack.eval import metrics as tm
from kprtrack.eval.filters import FilterConfig, filter_sequence


def load_config(cfg: Any = None):
    """configs/eval.yaml defaults, with ``cfg`` (dict / DictConfig / None) merged on top."""
    from omegaconf import OmegaConf

    from kprtrack.config import config_dir

    base = OmegaConf.load(config_dir() / "eval.yaml")
    if cfg is not None:
        base = OmegaConf.merge(base, OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    return base


def _progress(items, cfg, desc):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="seq", disable=not cfg.get("progress", True), leave=False)


def _section(per_seq_raw: dict, combined_raw: dict | None) -> dict:
    per_seq = {seq: tm.summarise(res) for seq, res in per_seq_raw.items()}
    combined = tm.summarise(combined_raw or {})
    return {
        "per_sequence": {seq: s["scalars"] for seq, s in per_seq.items()},
        "combined": combined["scalars"],
        "alpha": {"combined": combined["alpha"], "per_sequence": {seq: s["alpha"] for seq, s in per_seq.items()}},
    }


def _filters_enabled(cfg, fmt: str) -> bool:
    enabled = cfg.filters.get("enabled", "auto")
    return (fmt == "posetrack") if enabled == "auto" else bool(enabled)


def evaluate_posetrack(gt_dir: Path, pred_dir: Path, out_dir: Path | None, cfg: Any = None) -> dict:
    """PoseTrack21 JSON predictions (``pred_dir/<seq>.json``) against GT (``gt_dir/<seq>.json``)."""
    from kprtrack.eval import posetrack as pt
    from kprtrack.eval.posetrack_files import load_ground_truth, load_predictions

    cfg = load_config(cfg)
    gt_dir, pred_dir = Path(gt_dir).expanduser(), Path(pred_dir).expanduser()
    if not gt_dir.is_dir():
        raise InputError("ground-truth folder not found", gt_dir)
    if not pred_dir.is_dir():
        raise InputError("prediction folder not found", pred_dir)
    files = sorted(gt_dir.glob("*.json"))
    if cfg.get("sequences"):
        wanted = set(cfg.sequences)
        unknown = wanted - {f.stem for f in files}
        if unknown:
            raise InputError(f"unknown sequence(s) {sorted(unknown)}", gt_dir)
        files = [f for f in files if f.stem in wanted]
    if not files:
        raise InputError("no <seq>.json ground-truth files", gt_dir)
    missing = [f.name for f in files if not (pred_dir / f.name).is_file()]
    if missing:
        raise InputError(f"missing prediction file(s) for {len(missing)} sequence(s): {', '.join(missing[:5])}",
                         pred_dir)
    filter_cfg = FilterConfig.from_node(cfg.filters)
    filter_cfg.enabled = _filters_enabled(cfg, "posetrack")
    rule = cfg.boxes.ignore_rule
    if rule not in ("majority", "kit"):
        raise InputError(f"boxes.ignore_rule must be 'majority' or 'kit', not {rule!r}")
    threshold = cfg.boxes.ignore_threshold
    threshold = float(threshold if threshold is not None else (0.5 if rule == "majority" else 0.1))

    box_datas, joint_results, joint_datas, filter_stats = {}, {}, {}, {}
    for gt_file in _progress(files, cfg, "eval posetrack"):
        seq, truth = load_ground_truth(gt_file)
        preds = load_predictions(pred_dir / gt_file.name, seq)
        preds, filter_stats[seq.name] = filter_sequence(preds, filter_cfg)
        box_datas[seq.name] = pt.box_sequence_data(seq.name, truth, preds, rule, threshold)
        joint_datas[seq.name] = pt.keypoint_sequence_data(seq.name, truth, preds, gt_file,
                                                          float(cfg.keypoints.distance_threshold))
        joint_results[seq.name] = pt.evaluate_joints(joint_datas[seq.name])

    box_per_seq, box_combined = tm.evaluate_sequences(box_datas)
    kp_per_seq = {s: {"HOTA": pt.combine_joints(joint_results[s], joint_datas[s])} for s in joint_results}
    kp_combined = {"HOTA": pt.combine_sequences_hota({s: r["HOTA"] for s, r in kp_per_seq.items()})}
    per_joint = {}
    for k, name in enumerate(pt.JOINT_NAMES):
        combined_joint = pt.combine_sequences_hota({s: joint_results[s][k] for s in joint_results})
        per_joint[name] = tm.summarise({"HOTA": combined_joint})["scalars"]
    keypoints = _section(kp_per_seq, kp_combined)
    keypoints["per_joint"] = per_joint
    result = {
        "format": "posetrack", "gt": str(gt_dir), "pred": str(pred_dir), "alphas": tm.ALPHAS,
        "sequences": list(box_datas), "filters": _filter_summary(filter_stats, filter_cfg),
        "settings": {"box_ignore_rule": rule, "box_ignore_threshold": threshold,
                     "keypoint_distance_threshold": float(cfg.keypoints.distance_threshold)},
        "box": _section(box_per_seq, box_combined), "keypoints": keypoints,
    }
    _write(result, out_dir, cfg)
    return result


def evaluate_mot(gt_dir: Path, pred_dir: Path, out_dir: Path | None, cfg: Any = None) -> dict:
    """MOTChallenge txt predictions against MOTChallenge GT (box HOTA, CLEAR, Identity)."""
    from kprtrack.eval import mot

    cfg = load_config(cfg)
    gt_dir, pred_dir = Path(gt_dir).expanduser(), Path(pred_dir).expanduser()
    seqs = mot.find_sequences(gt_dir, pred_dir, cfg.mot.get("pred_name"), list(cfg.get("sequences") or []))
    min_len = int(cfg.filters.min_tracklet_length) if _filters_enabled(cfg, "mot") else 0
    preprocess = cfg.mot.get("preprocess", "auto")
    datas = {s.name: mot.load_sequence_data(s, min_len, preprocess) for s in _progress(seqs, cfg, "eval mot")}
    per_seq, combined = tm.evaluate_sequences(datas)
    result = {
        "format": "mot", "gt": str(gt_dir), "pred": str(pred_dir), "alphas": tm.ALPHAS,
        "sequences": list(datas), "prediction_files": {s.name: str(s.pred_file) for s in seqs},
        "filters": {"enabled": bool(min_len), "min_tracklet_length": min_len},
        "box": _section(per_seq, combined),
    }
    _write(result, out_dir, cfg)
    return result


def _filter_summary(stats: dict, cfg: FilterConfig) -> dict:
    keys = ("detections_in", "dropped_few_keypoints", "dropped_short_tracklets", "zeroed_keypoints",
            "detections_out")
    total = {k: int(sum(s[k] for s in stats.values())) for k in keys}
    return {"enabled": cfg.enabled, "keypoint_threshold": cfg.keypoint_threshold,
            "min_visible_keypoints": cfg.min_visible_keypoints, "min_tracklet_length": cfg.min_tracklet_length,
            "total": total, "per_sequence": stats}


def _write(result: dict, out_dir: Path | None, cfg) -> None:
    if out_dir is None:
        return
    from kprtrack.eval.report import write_reports

    write_reports(result, Path(out_dir).expanduser(), html_report=bool(cfg.report.get("html", True)),
                  worst=int(cfg.report.get("worst", 5)))


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
