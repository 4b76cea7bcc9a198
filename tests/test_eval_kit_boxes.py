"""Box HOTA, MOTA and IDF1 equal to the OFFICIAL PoseTrack21 kit's (run_mot.py, evaluate_mot.py) to 1e-6.

Cases are generated here (the demo, the real PoseTrack18 sample, and a hand-made stress set with a
self-intersecting ignore region), written in the posetrack_mot layout, and evaluated by the real kit
in one call per script (tests/kit/box_hota.py, tests/kit/box_clear.py) and by kprtrack.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kprtrack.eval import kit_boxes, kit_mot_clear
from kprtrack.eval.kit_boxes import (FIELDS, KitBoxTruth, box_hota_kit, load_predictions, mot_text,
                                     posetrack_mot_ground_truth, predictions_from_json, predictions_from_mot_txt,
                                     region_ious, truth_from_posetrack_json, write_posetrack_mot)
from kprtrack.eval.kit_mot_clear import METRICS, clear_identity_kit
from tests.kit.oracle import REPO, run_driver, run_mot_driver

SHARED = Path(os.environ.get("KPRTRACK_SHARED", REPO.parent / "shared"))
PT18 = SHARED / "data" / "posetrack18" / "annotations" / "val"
TOL = 1e-6


# ------------------------------------------------------------------------------------------- the cases
def _stress_truths() -> dict[str, KitBoxTruth]:
    """Tracks walking past three kinds of ignore region (concave, self-intersecting bow tie, flat-list form),
    frames without any person, a track born late, rows with conf 0, a 1-frame sequence and a sequence
    without GT rows."""
    rng = np.random.default_rng(7)
    concave = [[300, 200, 420, 420, 360, 360, 300], [20, 20, 20, 60, 60, 140, 140]]
    # edges cross at (120, 270); shapely 1.8 (GEOS 3.9) keeps the right lobe, shapely 1.7 (GEOS 3.8) the left
    bowtie = [[200, 40, 40, 200], [200, 340, 200, 340]]
    flipped = [[460, 600, 460, 600], [220, 220, 340, 340]]  # crossing at (530, 280)
    truths = {}
    n = 24
    info, rows = [], []
    for t in range(n):
        if t < 8:
            regions = ([concave[0], bowtie[0], flipped[0]], [concave[1], bowtie[1], flipped[1]])
        elif t < 16:
            regions = (concave[0], concave[1])  # a single region given as flat lists
        else:
            regions = ([], [])
        if t == 5:
            regions = ([bowtie[0], []], [bowtie[1], []])  # an empty region next to a real one
        info.append({"file_name": f"images/val/stress_a/{t:06d}.jpg", "id": 5000 + t, "frame_id": 5000 + t,
                     "vid_id": "stress", "frame_index": t + 1, "ignore_regions_x": regions[0],
                     "ignore_regions_y": regions[1]})
        if 10 <= t <= 12:
            continue  # frames without GT
        for track in range(5):
            if track == 4 and t < 6:
                continue
            x = 30 + 110 * track + 6 * t + rng.normal(0, 2)
            y = 120 + 20 * np.sin(t / 4 + track)
            conf = 0 if track == 2 and 14 <= t <= 17 else 1  # conf 0: only the MOTA script skips these rows
            rows.append([t + 1, track + 1, round(x, 2), round(y, 2), 50 + 5 * track, 110 + 3 * track, conf, -1, -1, -1])
    truths["stress_a"] = KitBoxTruth("stress_a", info, np.asarray(rows, float))
    truths["stress_b"] = KitBoxTruth("stress_b", [{"file_name": "images/val/stress_b/000000.jpg", "id": 1,
                                                   "frame_id": 1, "vid_id": "b", "frame_index": 1,
                                                   "ignore_regions_x": [bowtie[0]], "ignore_regions_y": [bowtie[1]]}],
                                     np.array([[1, 3, 250.5, 40.25, 60, 120, 1, -1, -1, -1]], float))
    truths["stress_c"] = KitBoxTruth("stress_c", [{"file_name": f"images/val/stress_c/{t:06d}.jpg", "id": t,
                                                   "frame_id": t, "vid_id": "c", "frame_index": t + 1,
                                                   "ignore_regions_x": [concave[0]],
                                                   "ignore_regions_y": [concave[1]]} for t in range(3)],
                                     np.zeros((0, 10)))
    return truths


def _region_boxes(truth: KitBoxTruth, t: int, rng) -> list[list[float]]:
    """Boxes around a frame's ignore regions, at sizes that put some above and some below IoU 0.1."""
    boxes = []
    for polygon in truth.regions(t):
        if len(polygon) < 3:
            continue
        lo, hi = polygon.min(0), polygon.max(0)
        for scale in (0.3, 0.6, 1.0, 1.6):
            size = (hi - lo) * scale * rng.uniform(0.8, 1.2, 2)
            centre = lo + (hi - lo) * rng.uniform(0.2, 0.8, 2)
            boxes.append([*(centre - size / 2), *size])
    return boxes


def _perturb(truth: KitBoxTruth, kind: str, rng) -> np.ndarray:
    rows = truth.rows.copy()
    out = np.zeros((len(rows), 10))
    out[:, :6] = rows[:, :6]
    out[:, 1] += 100  # predicted ids are not the GT's
    out[:, 6] = rng.uniform(0.3, 1.0, len(rows))
    out[:, 7:] = -1
    if kind in ("noise_small", "noise_large", "chaos"):
        sigma = {"noise_small": 0.03, "noise_large": 0.2, "chaos": 0.1}[kind]
        wh = out[:, 4:6].copy()
        out[:, 2:4] += rng.normal(0, sigma, (len(out), 2)) * wh
        out[:, 4:6] = np.maximum(1, wh * (1 + rng.normal(0, sigma, (len(out), 2))))
    if kind in ("swap", "chaos") and len(out):
        ids = np.unique(out[:, 1])
        if len(ids) >= 2:
            a, b = rng.choice(ids, 2, replace=False)
            late = out[:, 0] > np.median(out[:, 0])
            sel_a, sel_b = late & (out[:, 1] == a), late & (out[:, 1] == b)
            out[sel_a, 1], out[sel_b, 1] = b, a
            out[(out[:, 0] % 5 == 0) & (out[:, 1] == ids[0]), 1] = 999  # a short-lived id in between
    if kind in ("drop", "chaos") and len(out):
        keep = rng.random(len(out)) > 0.3
        keep &= out[:, 1] != out[0, 1]  # a whole person missed
        out = out[keep]
    if kind in ("fp", "chaos", "empty_frames"):
        extra = []
        for t in range(truth.num_frames):
            for box in _region_boxes(truth, t, rng):
                extra.append([t + 1, 500 + len(extra), *box])
            for _ in range(2):  # false positives away from everything
                extra.append([t + 1, 500 + len(extra), *rng.uniform(0, 500, 2), *rng.uniform(10, 80, 2)])
        # boxes on top of GT boxes inside regions: matched or not, they are ignore candidates
        for row in truth.rows[::3]:
            extra.append([row[0], 500 + len(extra), row[2] + 3, row[3] - 2, row[4] * 1.1, row[5]])
        extra = np.asarray(extra, float).reshape(-1, 6)
        out = np.concatenate([out, np.column_stack([extra, np.full(len(extra), 0.5), -np.ones((len(extra), 3))])])
    if kind == "empty_frames" and len(out):
        frames = np.unique(out[:, 0])
        out = out[~np.isin(out[:, 0], frames[::3])]
    order = rng.permutation(len(out)) if kind == "chaos" else np.argsort(out[:, 0], kind="stable")
    out = out[order]
    # one id per frame, as the kit requires (later duplicates of the 999 swap id go)
    _, first = np.unique(out[:, :2], axis=0, return_index=True)
    return out[np.sort(first)]


KINDS = ["copy", "noise_small", "noise_large", "swap", "drop", "fp", "empty_frames", "chaos"]


def _run_outputs(dataset_root: Path, out: Path, *extra: str) -> Path:
    """A real ``kprtrack run`` (ground-truth boxes and keypoints, the part_colors ReID) writing both formats."""
    args = [sys.executable, "-m", "kprtrack", "run", "dataset=posetrack21", f"dataset.root={dataset_root}",
            "detector=groundtruth", "pose=groundtruth", "reid=part_colors", "run.progress=false",
            "run.evaluate=false", "output.render=false", f"output.dir={out}", *extra]
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _cases(root: Path) -> dict[str, tuple[dict[str, KitBoxTruth], dict[str, str]]]:
    """case -> (ground truth, {sequence: prediction MOT text})."""
    from kprtrack.data.demo import generate_demo

    demo = generate_demo(root / "demo", seed=3, num_sequences=2, num_frames=30, width=320, height=240)
    bases = {"demo": posetrack_mot_ground_truth(demo / "posetrack_mot" / "mot" / "val"), "stress": _stress_truths()}
    if PT18.is_dir():
        bases["pt18"] = posetrack_mot_ground_truth(PT18)
    rng = np.random.default_rng(2024)
    cases = {}
    for base, truths in bases.items():
        for kind in KINDS:
            preds = {name: _perturb(truth, kind, rng) for name, truth in truths.items()}
            if kind == "drop":
                preds[sorted(truths)[0]] = np.zeros((0, 10))  # an empty prediction sequence
            cases[f"{base}_{kind}"] = truths, {name: mot_text(rows) for name, rows in preds.items()}
    # real run outputs: the PoseTrack JSON (through predictions_from_json) and the MOT writer's txt as written
    runs = {"demo": _run_outputs(demo, root / "run_demo")}
    if PT18.is_dir():
        runs["pt18"] = _run_outputs(PT18.parent.parent, root / "run_pt18", "dataset.annotations_dir=annotations")
    for base, run in runs.items():
        truths = bases[base]
        preds = load_predictions(run / "posetrack21" / "sequences", truths)
        cases[f"run_{base}_json"] = truths, {name: mot_text(rows) for name, rows in preds.items()}
        cases[f"run_{base}_mot"] = truths, {name: (run / "mot" / f"{name}.txt").read_text() for name in truths}
    return cases


@pytest.fixture(scope="module")
def kit_cases(tmp_path_factory):
    """(our inputs read back from the written files, the kit's HOTA results, the kit's MOTA results)."""
    root = tmp_path_factory.mktemp("kit_boxes")
    cases_dir = root / "cases"
    ours = {}
    for case, (truths, texts) in _cases(root).items():
        for name, truth in truths.items():
            write_posetrack_mot(truth, cases_dir / case / "gt")
            (cases_dir / case / "pred").mkdir(parents=True, exist_ok=True)
            (cases_dir / case / "pred" / f"{name}.txt").write_text(texts[name])
        gt = posetrack_mot_ground_truth(cases_dir / case / "gt")
        ours[case] = gt, {name: predictions_from_mot_txt(cases_dir / case / "pred" / f"{name}.txt") for name in gt}
    hota = run_driver("box_hota.py", cases_dir)
    clear = run_mot_driver("box_clear.py", cases_dir)
    return ours, hota, clear


def _max_diff(a, b) -> float:
    a = np.asarray(a, float)
    b = np.asarray([np.nan if v is None else v for v in np.ravel(b)], float).reshape(np.shape(a))
    if np.any(np.isnan(a) != np.isnan(b)):
        return np.inf
    same = (a == b) | (np.isnan(a) & np.isnan(b))  # equal infinities (MOTA without GT objects) and NaNs
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    return float(np.max(np.where(same, 0.0, diff), initial=0.0))


@pytest.mark.slow
def test_box_hota_equals_kit(kit_cases, monkeypatch):
    ours, hota, _ = kit_cases
    worst = {}
    for case, (truths, preds) in ours.items():
        per_seq, combined = box_hota_kit(truths, preds)
        kit = hota[case]
        assert sorted(kit["sequences"]) == sorted(per_seq)
        diffs = [_max_diff(per_seq[s][f], kit["sequences"][s][f]) for s in per_seq for f in FIELDS]
        diffs += [_max_diff(combined[f], kit["combined"][f]) for f in FIELDS]
        worst[case] = max(diffs)
    print("\nbox HOTA, max |ours - kit| per case:", json.dumps(worst, indent=1))
    assert max(worst.values()) <= TOL, worst
    assert any(np.mean(kit["combined"]["HOTA"]) < 0.99 for kit in hota.values())
    # a run's JSON and its MOT txt are the same predictions
    for base in ("demo", "pt18"):
        if f"run_{base}_json" in hota:
            assert hota[f"run_{base}_json"]["combined"] == hota[f"run_{base}_mot"]["combined"]
    # which lobe of the self-intersecting region counts (GEOS 3.9's rule, not 3.8's) shows in the numbers
    monkeypatch.setattr(kit_boxes, "GEOS_HOTA", "3.8")
    _, other = box_hota_kit(*ours["stress_fp"])
    assert max(_max_diff(other[f], hota["stress_fp"]["combined"][f]) for f in FIELDS) > TOL


@pytest.mark.slow
def test_mota_idf1_equal_kit(kit_cases, monkeypatch):
    ours, _, clear = kit_cases
    worst = {}
    for case, (truths, preds) in ours.items():
        for flag, use in (("ignore", True), ("no_ignore", False)):
            per_seq, overall = clear_identity_kit(truths, preds, use_ignore_regions=use)
            kit = clear[case][flag]
            assert sorted(kit) == sorted([*per_seq, "OVERALL"])
            diffs = [_max_diff(per_seq[s][m], kit[s][m]) for s in per_seq for m in METRICS]
            diffs += [_max_diff(overall[m], kit["OVERALL"][m]) for m in METRICS]
            worst[f"{case}/{flag}"] = max(diffs)
    print("\nMOTA/IDF1, max |ours - kit| per case:", json.dumps(worst, indent=1))
    assert max(worst.values()) <= TOL, worst
    # the script's shapely decides which lobe of the bow tie counts: with the other GEOS rule, numbers move
    truths, preds = ours["stress_fp"]
    monkeypatch.setattr(kit_mot_clear, "GEOS_MOTA", "3.9")
    _, other = clear_identity_kit(truths, preds)
    assert _max_diff([other[m] for m in METRICS], [clear["stress_fp"]["ignore"]["OVERALL"][m] for m in METRICS]) > TOL
    # ignore regions change the numbers somewhere (otherwise the fork's candidates went untested)
    assert any(clear[c]["ignore"]["OVERALL"]["mota"] != clear[c]["no_ignore"]["OVERALL"]["mota"] for c in clear)


@pytest.mark.slow
def test_region_iou_matches_shapely_in_both_kit_venvs(tmp_path):
    """Self-intersecting regions: what GEOS's buffer(0) keeps differs between the two scripts' pinned
    shapely versions (1.8.0: GEOS 3.9, 1.7.1: GEOS 3.8); both are reproduced."""
    rng = np.random.default_rng(11)
    cases = []
    for k in range(160):
        n = int(rng.integers(3, 10))
        if k % 3 == 0:
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(20, 100, n)
            polygon = np.stack([200 + radii * np.cos(angles), 200 + radii * np.sin(angles)], 1)
        else:
            polygon = rng.uniform(100, 300, (n, 2)).round(k % 2 * 3)
        x, y = rng.uniform(80, 300, (2, 8))
        w, h = rng.uniform(5, 150, (2, 8))
        cases.append({"polygon": polygon.tolist(), "boxes": np.stack([x, y, x + w, y + h], 1).tolist()})
    path = tmp_path / "regions.json"
    path.write_text(json.dumps(cases))
    for runner, geos in ((run_driver, "3.9"), (run_mot_driver, "3.8")):
        ref = runner("region_iou.py", path)
        assert not all(ref["valid"]) and max(ref["parts"]) > 1
        for case, want in zip(cases, ref["ious"]):
            got = region_ious(np.array(case["polygon"]), np.array(case["boxes"]), geos)
            assert _max_diff(got, want) <= 1e-9, (geos, case)


def test_ground_truth_from_posetrack_json(tmp_path):
    """No posetrack_mot folder: the same sequence is derived from the PoseTrack JSON (all images in order,
    every box, track ids, the images' ignore regions), and a prediction JSON gives the same rows as MOT txt."""
    if not PT18.is_dir():
        pytest.skip(f"the PoseTrack18 sample is not at {PT18}")
    path = PT18 / "012834_mpii_test.json"
    truth = truth_from_posetrack_json(path)
    data = json.loads(path.read_text())
    assert [i["frame_index"] for i in truth.image_info] == list(range(1, len(data["images"]) + 1))
    assert truth.image_info[0]["ignore_regions_x"] == data["images"][0]["ignore_regions_x"]
    assert len(truth.rows) == len(data["annotations"]) and set(truth.rows[:, 6:].ravel()) == {1, -1}
    np.testing.assert_array_equal(truth.rows[:, 2:6], [a["bbox"] for a in data["annotations"]])
    back = posetrack_mot_ground_truth(write_posetrack_mot(truth, tmp_path / "mot"))[truth.name]
    np.testing.assert_array_equal(back.rows, truth.rows)
    assert back.image_info == truth.image_info

    pred = {"images": data["images"], "annotations": [dict(a, track_id=a["track_id"] + 7, score=0.5)
                                                      for a in data["annotations"]]}
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    rows = predictions_from_json(tmp_path / "pred.json", truth)
    np.testing.assert_array_equal(rows[:, 1], truth.rows[:, 1] + 7)
    (tmp_path / "pred.txt").write_text(mot_text(rows))
    np.testing.assert_array_equal(predictions_from_mot_txt(tmp_path / "pred.txt"), rows)
