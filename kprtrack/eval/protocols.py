"""The two PoseTrack21 evaluation protocols, fed one sequence at a time.

- ``kit``: the official PoseTrack21 kit's numbers (kit_keypoints.py, kit_boxes.py), the ones
  published results use. The default.
- ``corrected``: our fixed definition (posetrack.py): trackeval's HOTA per joint type (matching on
  alignment x similarity), joints without a score not counted, frames without GT or predictions
  counted per frame, the Total over the joint types present, threshold exactly 0.5 head sizes,
  person-level ignore regions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kprtrack.eval import kit_keypoints as kk
from kprtrack.eval import metrics as tm
from kprtrack.eval import posetrack as pt
from kprtrack.record import POSETRACK_KEYPOINTS

PROTOCOLS = ("kit", "corrected")
# The kit's joint columns under our keypoint names (its labels: Nose, Neck, Head, LS, ...).
KIT_JOINT_NAMES = [POSETRACK_KEYPOINTS[j] for j in kk.KIT_JOINTS]


# motmetrics' names (the kit's evaluate_mot.py) -> the report's.
KIT_CLEAR_NAMES = {"mota": "MOTA", "idf1": "IDF1", "idp": "IDP", "idr": "IDR", "num_switches": "IDSW",
                   "num_false_positives": "CLR_FP", "num_misses": "CLR_FN", "num_fragmentations": "Frag",
                   "mostly_tracked": "MT", "partially_tracked": "PT", "mostly_lost": "ML", "recall": "CLR_Re",
                   "precision": "CLR_Pr", "motp": "MOTP_distance"}


def posetrack_mot_dir(gt_dir: Path, setting) -> Path | None:
    """The data set's ``posetrack_mot/mot/<split>`` next to ``posetrack_data/<split>`` (setting 'auto'),
    a given folder, or None ('json': box ground truth from the PoseTrack JSON itself)."""
    if setting in (None, "json"):
        return None
    if setting == "auto":
        candidate = gt_dir.parent.parent / "posetrack_mot" / "mot" / gt_dir.name
        return candidate if candidate.is_dir() else None
    folder = Path(str(setting)).expanduser()
    if not folder.is_dir():
        from kprtrack.errors import InputError

        raise InputError("boxes.posetrack_mot folder not found", folder)
    return folder


class KitProtocol:
    name = "kit"

    def __init__(self, cfg, gt_dir: Path):
        from kprtrack.eval import kit_boxes

        self.keypoints: dict[str, dict] = {}
        self.mot_dir = posetrack_mot_dir(gt_dir, cfg.boxes.get("posetrack_mot", "auto"))
        self.box_truths = kit_boxes.posetrack_mot_ground_truth(self.mot_dir) if self.mot_dir else {}
        self.box_preds: dict[str, np.ndarray] = {}

    @property
    def settings(self) -> dict:
        return {"keypoint_similarity": "max(0, 1 - d / (0.5001 * head_size))",
                "box_ground_truth": str(self.mot_dir) if self.mot_dir else "from the PoseTrack JSON",
                "box_ignore_rule": "kit (box/region IoU > 0.1)"}

    def add(self, seq, truth, pred_seq, preds) -> None:
        """One sequence: its GT (loaded file and per-frame arrays) and predictions (the same two)."""
        from kprtrack.eval import kit_boxes

        frames = kk.kit_frames(seq.images, [t.gt for t in truth], preds)
        self.keypoints[seq.name] = kk.eval_sequence(frames)
        if self.mot_dir is None:
            self.box_truths[seq.name] = kit_boxes.truth_from_sequence(seq)
        elif seq.name not in self.box_truths:
            from kprtrack.errors import InputError

            raise InputError(f"sequence {seq.name} has no posetrack_mot ground truth", self.mot_dir)
        self.box_preds[seq.name] = kit_boxes.predictions_from_sequence(pred_seq, self.box_truths[seq.name])

    def _boxes(self) -> dict:
        from kprtrack.eval.kit_boxes import box_hota_kit
        from kprtrack.eval.kit_mot_clear import clear_identity_kit

        truths = {name: self.box_truths[name] for name in self.box_preds}
        hota_seq, hota_all = box_hota_kit(truths, self.box_preds)
        clear_seq, clear_all = clear_identity_kit(truths, self.box_preds)

        def row(hota: dict, clear: dict) -> dict:
            out = {f: float(np.mean(hota[f])) for f in kk.FLOAT_ARRAY_FIELDS + kk.INTEGER_ARRAY_FIELDS}
            out.update({f: float(hota[f]) for f in kk.FLOAT_FIELDS + kk.INTEGER_FIELDS})
            out.update({ours: clear[theirs] for theirs, ours in KIT_CLEAR_NAMES.items() if theirs in clear})
            return out

        def curves(hota: dict) -> dict:
            return {f: [float(v) for v in hota[f]] for f in kk.FLOAT_ARRAY_FIELDS}

        return {"per_sequence": {s: row(hota_seq[s], clear_seq[s]) for s in hota_seq},
                "combined": row(hota_all, clear_all),
                "alpha": {"combined": curves(hota_all), "per_sequence": {s: curves(r) for s, r in hota_seq.items()}}}

    def result(self) -> dict:
        combined = kk.combine_sequences(self.keypoints)
        keypoints = {
            "per_sequence": {seq: kk.table(res)["Total"] for seq, res in self.keypoints.items()},
            "combined": kk.table(combined)["Total"],
            "per_joint": _by_joint(kk.table(combined)),
            "per_sequence_joint": {seq: _by_joint(kk.table(res)) for seq, res in self.keypoints.items()},
            "alpha": {"combined": _alpha_curves(combined),
                      "per_sequence": {seq: _alpha_curves(res) for seq, res in self.keypoints.items()}},
        }
        return {"box": self._boxes(), "keypoints": keypoints}


def _by_joint(table: dict) -> dict:
    return {name: table[kit_name] for name, kit_name in zip(KIT_JOINT_NAMES, kk.JOINT_NAMES)}


def _alpha_curves(res: dict) -> dict:
    """The Total column per alpha of each float array field."""
    return {field: [float(v) for v in np.asarray(res[field])[:, -1]] for field in kk.FLOAT_ARRAY_FIELDS}


class CorrectedProtocol:
    name = "corrected"

    def __init__(self, cfg, gt_dir: Path):
        rule = cfg.boxes.ignore_rule
        if rule not in ("majority", "kit"):
            from kprtrack.errors import InputError

            raise InputError(f"boxes.ignore_rule must be 'majority' or 'kit', not {rule!r}")
        threshold = cfg.boxes.ignore_threshold
        self.rule = rule
        self.threshold = float(threshold if threshold is not None else (0.5 if rule == "majority" else 0.1))
        self.distance_threshold = float(cfg.keypoints.distance_threshold)
        self.boxes: dict[str, dict] = {}
        self.joint_results: dict[str, list[dict]] = {}
        self.joint_datas: dict[str, list[dict]] = {}

    @property
    def settings(self) -> dict:
        return {"box_ignore_rule": self.rule, "box_ignore_threshold": self.threshold,
                "keypoint_distance_threshold": self.distance_threshold}

    def add(self, seq, truth, pred_seq, preds) -> None:
        self.boxes[seq.name] = pt.box_sequence_data(seq.name, truth, preds, self.rule, self.threshold)
        datas = pt.keypoint_sequence_data(seq.name, truth, preds, seq.path, self.distance_threshold)
        self.joint_datas[seq.name] = datas
        self.joint_results[seq.name] = pt.evaluate_joints(datas)

    def result(self) -> dict:
        per_seq = {s: {"HOTA": pt.combine_joints(self.joint_results[s], self.joint_datas[s])}
                   for s in self.joint_results}
        combined = {"HOTA": pt.combine_sequences_hota({s: r["HOTA"] for s, r in per_seq.items()})}
        keypoints = tm.section(per_seq, combined)
        keypoints["per_joint"] = {
            name: tm.summarise({"HOTA": pt.combine_sequences_hota({s: r[k] for s, r in self.joint_results.items()})})
            ["scalars"] for k, name in enumerate(pt.JOINT_NAMES)}
        return {"box": tm.section(*tm.evaluate_sequences(self.boxes)), "keypoints": keypoints}


def make(name: str, cfg, gt_dir: Path):
    return {"kit": KitProtocol, "corrected": CorrectedProtocol}[name](cfg, gt_dir)


def comparison(primary: str, results: dict[str, dict]) -> dict:
    """Both protocols' combined and per-sequence HOTA (keypoints and boxes) and their difference."""
    other = next(p for p in results if p != primary)
    out = {"protocols": [primary, other], "combined": {}, "per_sequence": {}}
    for part in ("keypoints", "box"):
        a, b = results[primary][part], results[other][part]
        out["combined"][part] = {primary: a["combined"].get("HOTA"), other: b["combined"].get("HOTA"),
                                 "difference": _diff(a["combined"].get("HOTA"), b["combined"].get("HOTA"))}
        for seq in a["per_sequence"]:
            x, y = a["per_sequence"][seq].get("HOTA"), b["per_sequence"].get(seq, {}).get("HOTA")
            out["per_sequence"].setdefault(seq, {})[part] = {primary: x, other: y, "difference": _diff(x, y)}
    return out


def _diff(a, b):
    return None if a is None or b is None else float(a) - float(b)
