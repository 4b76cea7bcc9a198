"""Keypoint HOTA with default settings equals the OFFICIAL PoseTrack21 kit, to 1e-6, on every value the
kit computes: all fields, per joint and Total, per alpha, per sequence and combined.

The kit runs for real in its own venv (tests/kit/oracle.py); the cases are generated from real
PoseTrack18 frames (tests/kit/pose_cases.py), the real PoseTrack18 files, and real ``run`` outputs.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kprtrack.cli import main as cli_main
from kprtrack.eval import evaluate_posetrack
from kprtrack.eval import kit_keypoints as kk
from kprtrack.eval.posetrack_files import load_ground_truth, load_predictions
from kprtrack.eval.protocols import KIT_JOINT_NAMES
from tests.conftest import shared_file
from tests.kit.oracle import run_driver
from tests.kit.pose_cases import PERTURBATIONS, write_cases

pytestmark = pytest.mark.slow  # the official kit runs in its own venv

TOLERANCE = 1e-6


def _raw_ours(gt_dir: Path, pred_dir: Path) -> tuple[dict, dict]:
    per_seq = {}
    for gt_file in sorted(gt_dir.glob("*.json")):
        seq, truth = load_ground_truth(gt_file)
        frames = kk.kit_frames(seq.images, [t.gt for t in truth], load_predictions(pred_dir / gt_file.name, seq))
        per_seq[gt_file.stem] = kk.eval_sequence(frames)
    return per_seq, kk.combine_sequences(per_seq)


def _max_difference(ours: dict, kit: dict) -> float:
    worst = 0.0
    for field in kk.FIELDS:
        a, b = np.asarray(ours[field], float), np.asarray(kit[field], float)
        assert a.shape == b.shape, field
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def _public_differences(result: dict, kit: dict) -> dict[str, float]:
    """What users read (metrics.json: alpha-averaged per joint and Total) against the kit's arrays."""
    def row_diff(ours_row: dict, kit_res: dict, column: int) -> float:
        worst = 0.0
        for field in kk.FLOAT_ARRAY_FIELDS + kk.INTEGER_ARRAY_FIELDS:
            worst = max(worst, abs(ours_row[field] - float(np.mean(np.asarray(kit_res[field])[:, column]))))
        for field in kk.FLOAT_FIELDS + kk.INTEGER_FIELDS:
            worst = max(worst, abs(ours_row[field] - float(np.asarray(kit_res[field])[column])))
        return worst

    kp = result["keypoints"]
    out = {}
    for seq, kit_res in list(kit["sequences"].items()) + [("COMBINED", kit["combined"])]:
        total = kp["combined"] if seq == "COMBINED" else kp["per_sequence"][seq]
        joints = kp["per_joint"] if seq == "COMBINED" else kp["per_sequence_joint"][seq]
        diffs = [row_diff(total, kit_res, 15)] + [row_diff(joints[name], kit_res, j)
                                                  for j, name in enumerate(KIT_JOINT_NAMES)]
        out[seq] = max(diffs)
    return out


def _assert_equal_to_kit(gt_dir: Path, pred_dir: Path) -> dict[str, float]:
    kit = run_driver("pose_hota.py", gt_dir, pred_dir)
    per_seq, combined = _raw_ours(gt_dir, pred_dir)
    assert set(per_seq) == set(kit["sequences"])
    raw = {seq: _max_difference(per_seq[seq], kit["sequences"][seq]) for seq in per_seq}
    raw["COMBINED"] = _max_difference(combined, kit["combined"])
    public = _public_differences(evaluate_posetrack(gt_dir, pred_dir, None, {"progress": False}), kit)
    worst = {seq: max(raw[seq], public[seq]) for seq in raw}
    assert max(worst.values()) <= TOLERANCE, worst
    return worst


def test_generated_cases_equal_the_kit(tmp_path):
    real = shared_file("data/posetrack18/annotations/val")
    names = write_cases(real, tmp_path / "gt", tmp_path / "pred")
    assert len(names) == len(PERTURBATIONS) + 1
    worst = _assert_equal_to_kit(tmp_path / "gt", tmp_path / "pred")
    assert set(worst) == set(names) | {"COMBINED"}


def _perturbed_real_predictions(real: Path, pred_dir: Path, seed: int) -> None:
    """The real PoseTrack18 GT as predictions: noise, one id changed, some joints at 0, one ghost."""
    rng = np.random.default_rng(seed)
    pred_dir.mkdir(parents=True)
    for path in sorted(real.glob("*.json")):
        data = json.loads(path.read_text())
        for k, ann in enumerate(data["annotations"]):
            kp = np.asarray(ann["keypoints"], float).reshape(17, 3)
            seen = kp[:, 0] > 0
            kp[seen, :2] += rng.normal(0, 1 + 3 * seed, (seen.sum(), 2))
            kp[rng.random(17) < 0.1, :2] = 0
            ann["keypoints"] = kp.reshape(-1).tolist()
            ann["scores"] = rng.uniform(0, 1, 17).round(3).tolist()
            ann["track_id"] += 1000 * (k == 0)
        ghost = dict(data["annotations"][0], track_id=77, keypoints=(np.tile([[30.0, 40.0, 1.0]], (17, 1))
                                                                    + np.arange(17)[:, None]).reshape(-1).tolist())
        data["annotations"].append(ghost)
        (pred_dir / path.name).write_text(json.dumps(data))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_posetrack18_sequences_equal_the_kit(tmp_path, seed):
    real = shared_file("data/posetrack18/annotations/val")
    _perturbed_real_predictions(real, tmp_path / "pred", seed)
    _assert_equal_to_kit(real, tmp_path / "pred")


def _run(tmp_path: Path, *overrides: str) -> tuple[Path, Path]:
    """A real ``run``; returns (GT folder, the run's PoseTrack prediction folder)."""
    out = tmp_path / "run"
    assert cli_main(["run", f"output.dir={out}", "run.progress=false", "output.render=false", *overrides]) == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    return Path(metrics["gt"]), Path(metrics["pred"])


@pytest.mark.slow
def test_run_on_the_demo_equals_the_kit(tmp_path):
    gt, pred = _run(tmp_path, "dataset=demo")
    _assert_equal_to_kit(gt, pred)


@pytest.mark.slow
def test_run_on_real_posetrack18_equals_the_kit(tmp_path):
    root = shared_file("data/posetrack18")
    gt, pred = _run(tmp_path, "dataset=posetrack21", f"dataset.root={root}", "dataset.annotations_dir=annotations",
                    "detector=groundtruth", "pose=groundtruth", "reid=part_colors")
    copy = tmp_path / "pred_copy"  # the kit writes its summary into the folder it reads
    shutil.copytree(pred, copy)
    _assert_equal_to_kit(gt, copy)
