"""Python API: evaluate predictions on disk, write metrics.json / report.md / report.html."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kprtrack.errors import InputError
from kprtrack.eval import metrics as tm
from kprtrack.eval import protocols


def load_config(cfg: Any = None):
    """configs/eval.yaml defaults, with ``cfg`` (dict / DictConfig / None) merged on top."""
    from omegaconf import OmegaConf

    from kprtrack.config import config_dir

    if cfg is not None and "filters" in cfg:
        raise InputError("eval takes no 'filters': it evaluates the files exactly as given. The prediction "
                         "filters are part of run's output stage now (output.filters)")
    base = OmegaConf.load(config_dir() / "eval.yaml")
    if cfg is not None:
        base = OmegaConf.merge(base, OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    if base.protocol not in protocols.PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(protocols.PROTOCOLS)}, not {base.protocol!r}")
    return base


def _progress(items, cfg, desc):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="seq", disable=not cfg.get("progress", True), leave=False)


def _posetrack_files(gt_dir: Path, pred_dir: Path, cfg) -> list[Path]:
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
    return files


def evaluate_posetrack(gt_dir: Path, pred_dir: Path, out_dir: Path | None, cfg: Any = None) -> dict:
    """PoseTrack21 JSON predictions (``pred_dir/<seq>.json``) against GT (``gt_dir/<seq>.json``), exactly
    as given (no filtering), under ``cfg.protocol`` (kit = the official kit's numbers, or corrected);
    ``cfg.compare_protocols`` adds the other protocol's numbers and the per-sequence differences."""
    from kprtrack.eval.posetrack_files import load_ground_truth, read_predictions

    cfg = load_config(cfg)
    gt_dir, pred_dir = Path(gt_dir).expanduser(), Path(pred_dir).expanduser()
    files = _posetrack_files(gt_dir, pred_dir, cfg)
    names = [cfg.protocol] + [p for p in protocols.PROTOCOLS if p != cfg.protocol and cfg.compare_protocols]
    runs = {name: protocols.make(name, cfg, gt_dir) for name in names}
    for gt_file in _progress(files, cfg, "eval posetrack"):
        seq, truth = load_ground_truth(gt_file)
        pred_seq, preds = read_predictions(pred_dir / gt_file.name, seq)
        for protocol in runs.values():
            protocol.add(seq, truth, pred_seq, preds)
    results = {name: protocol.result() for name, protocol in runs.items()}
    result = {
        "format": "posetrack", "gt": str(gt_dir), "pred": str(pred_dir), "alphas": tm.ALPHAS,
        "sequences": [f.stem for f in files], "protocol": cfg.protocol,
        "settings": runs[cfg.protocol].settings, **results[cfg.protocol],
    }
    if cfg.compare_protocols:
        other = names[1]
        result["other_protocol"] = {"protocol": other, "settings": runs[other].settings, **results[other]}
        result["comparison"] = protocols.comparison(cfg.protocol, results)
    _write(result, out_dir, cfg)
    return result


def evaluate_mot(gt_dir: Path, pred_dir: Path, out_dir: Path | None, cfg: Any = None) -> dict:
    """MOTChallenge txt predictions against MOTChallenge GT (box HOTA, CLEAR, Identity)."""
    from kprtrack.eval import mot

    cfg = load_config(cfg)
    gt_dir, pred_dir = Path(gt_dir).expanduser(), Path(pred_dir).expanduser()
    seqs = mot.find_sequences(gt_dir, pred_dir, cfg.mot.get("pred_name"), list(cfg.get("sequences") or []))
    preprocess = cfg.mot.get("preprocess", "auto")
    datas = {s.name: mot.load_sequence_data(s, preprocess) for s in _progress(seqs, cfg, "eval mot")}
    per_seq, combined = tm.evaluate_sequences(datas)
    result = {
        "format": "mot", "gt": str(gt_dir), "pred": str(pred_dir), "alphas": tm.ALPHAS,
        "sequences": list(datas), "prediction_files": {s.name: str(s.pred_file) for s in seqs},
        "protocol": "trackeval", "box": tm.section(per_seq, combined),
    }
    _write(result, out_dir, cfg)
    return result


def _write(result: dict, out_dir: Path | None, cfg) -> None:
    if out_dir is None:
        return
    from kprtrack.eval.report import write_reports

    write_reports(result, Path(out_dir).expanduser(), html_report=bool(cfg.report.get("html", True)),
                  worst=int(cfg.report.get("worst", 5)))
