"""What a user gets from ``python -m kprtrack eval format=posetrack`` with DEFAULT settings on a real run
folder equals what the official PoseTrack21 kit's three scripts print for it: keypoint HOTA
(run_posetrack_challenge.py), box HOTA (run_mot.py on the data set's posetrack_mot ground truth) and
MOTA/IDF1 (evaluate_mot.py --use_ignore_regions), per sequence and combined, to 1e-6."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kprtrack.cli import main as cli_main
from kprtrack.data.demo import ensure_demo
from kprtrack.eval import kit_keypoints as kk
from kprtrack.eval.kit_boxes import mot_text, posetrack_mot_ground_truth, predictions_from_json, write_posetrack_mot
from kprtrack.eval.protocols import KIT_CLEAR_NAMES
from tests.kit.oracle import run_driver, run_mot_driver

pytestmark = pytest.mark.slow  # the official kit runs in its own venv

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A real run on the demo (its own evaluation off) and the user's ``eval`` of its folder."""
    root = tmp_path_factory.mktemp("default_eval")
    run = root / "run"
    assert cli_main(["run", f"output.dir={run}", "run.progress=false", "output.render=false",
                     "run.evaluate=false", "tracker.match_thresh=0.3"]) == 0
    gt_root = ensure_demo()  # the demo the run used (generated once, cached)
    gt = gt_root / "posetrack_data" / "val"
    out = root / "eval"
    assert cli_main(["eval", f"gt={gt}", f"pred={run / 'posetrack21' / 'sequences'}", f"out={out}",
                     "progress=false"]) == 0
    return gt_root, run, json.loads((out / "metrics.json").read_text())


def _kit_boxes(gt_root: Path, run: Path, scratch: Path) -> tuple[dict, dict]:
    case = scratch / "cases" / "demo_run"
    truths = posetrack_mot_ground_truth(gt_root / "posetrack_mot" / "mot" / "val")
    (case / "pred").mkdir(parents=True)
    for name, truth in truths.items():
        write_posetrack_mot(truth, case / "gt")
        rows = predictions_from_json(run / "posetrack21" / "sequences" / f"{name}.json", truth)
        (case / "pred" / f"{name}.txt").write_text(mot_text(rows))
    hota = run_driver("box_hota.py", scratch / "cases")["demo_run"]
    clear = run_mot_driver("box_clear.py", scratch / "cases")["demo_run"]["ignore"]
    return hota, clear


def test_default_box_metrics_equal_the_kit(demo_run, tmp_path):
    gt_root, run, metrics = demo_run
    assert metrics["protocol"] == "kit"
    hota, clear = _kit_boxes(gt_root, run, tmp_path)
    box = metrics["box"]
    worst = 0.0
    for seq, kit in list(hota["sequences"].items()) + [("COMBINED", hota["combined"])]:
        ours = box["combined"] if seq == "COMBINED" else box["per_sequence"][seq]
        for field in kk.FLOAT_ARRAY_FIELDS + kk.INTEGER_ARRAY_FIELDS:
            worst = max(worst, abs(ours[field] - float(np.mean(kit[field]))))
    for seq, kit in clear.items():
        ours = box["combined"] if seq == "OVERALL" else box["per_sequence"][seq]
        for theirs, name in KIT_CLEAR_NAMES.items():
            worst = max(worst, abs(ours[name] - kit[theirs]))
    assert worst <= TOLERANCE
    assert box["combined"]["IDSW"] > 0 and box["combined"]["HOTA"] < 0.99  # a run with mistakes to find


def test_default_keypoint_metrics_equal_the_kit(demo_run, tmp_path):
    gt_root, run, metrics = demo_run
    pred = tmp_path / "sequences"
    shutil.copytree(run / "posetrack21" / "sequences", pred)  # the kit writes its summary into the folder
    kit = run_driver("pose_hota.py", gt_root / "posetrack_data" / "val", pred)
    kp = metrics["keypoints"]
    worst = 0.0
    for seq, res in list(kit["sequences"].items()) + [("COMBINED", kit["combined"])]:
        ours = kp["combined"] if seq == "COMBINED" else kp["per_sequence"][seq]
        for field in kk.FLOAT_ARRAY_FIELDS + kk.INTEGER_ARRAY_FIELDS:
            worst = max(worst, abs(ours[field] - float(np.mean(np.asarray(res[field])[:, -1]))))
    assert worst <= TOLERANCE
