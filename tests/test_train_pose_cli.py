"""``python -m kprtrack train-pose`` end to end, as users run it (subprocesses): the training loop
on the synthetic demo and on the real PoseTrack18 sample, the OFFICIAL PoseTrack21 kit's pose mAP
at the evaluated epoch, the checkpoint read back by the inference stage (``pose=hrnet``) and the
whole ``run`` pipeline, resume, DDP (two gloo processes) against sub-batches, and bad input.

Small on purpose (2 shared CPU cores): HRNet-W32 from random init, 64x64 or 128x96 crops, batch 4,
a few iterations per epoch, the kit's evaluation on one sequence of the demo.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kprtrack.train.common import read_metrics_csv

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess

SMALL = ["model.weights=null", "model.arch=w32", "data.input_size=[64,64]", "batch_size=4", "num_workers=0",
         "tensorboard=false", "optim.warmup_iters=0"]
DEMO_EVAL_SEQUENCE = "900002_demo_val"
TIME_COLUMNS = ("time_s", "it_per_s")
POSE_METRICS = ["pose_mAP", *(f"pose_AP_{p}" for p in ("head", "shoulder", "elbow", "wrist", "hip", "knee",
                                                          "ankle")), "pose_precision", "pose_recall"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train_pose(out: Path, *args: str, nproc: int = 1, timeout: float = 600) -> subprocess.CompletedProcess:
    command = ["-m", "kprtrack", "train-pose", f"output_dir={out}", *SMALL, *args]
    if nproc > 1:
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *command]
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, env=_env(), timeout=timeout)


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def _weights(path: Path) -> dict:
    from kprtrack.train.pose.checkpoint import read_pose_checkpoint

    return read_pose_checkpoint(path)[0]


def _rows(out: Path, drop=TIME_COLUMNS) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in drop} for row in read_metrics_csv(out / "metrics.csv")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from kprtrack.data.demo import generate_demo

    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, num_sequences=2, num_frames=30, width=320, height=192)
    return root


DEMO_PARAMS = ["dataset.num_sequences=2", "dataset.num_frames=30", "dataset.width=320", "dataset.height=192"]


def _demo_data(root: Path) -> list[str]:
    return [f"data.root={root}", "data.split=val"]


@pytest.fixture(scope="module")
def no_kit_run(demo, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Two short epochs, evaluation every epoch but no kit interpreter, 128x96 crops (not the default)."""
    out = tmp_path_factory.mktemp("no_kit") / "run"
    done = train_pose(out, *_demo_data(demo), "data.input_size=[128,96]", "optim.epochs=2", "eval_every=1",
                      "max_iters_per_epoch=1")
    return out, done


# 1 -------------------------------------------------------------------------------------------------
def test_demo_training_loss_goes_down_and_the_kit_scores_the_last_epoch(demo, tmp_path):
    from tests.kit.oracle import kit_python

    python = kit_python()  # skips with the reason where the kit's venv cannot be built
    out = tmp_path / "run"
    epochs = 4
    done = _ok(train_pose(out, *_demo_data(demo), f"data.sequences=[{DEMO_EVAL_SEQUENCE}]", "aug.enabled=false",
                          "optim.lr=0.002", f"optim.epochs={epochs}", "max_iters_per_epoch=3",
                          f"eval_every={epochs}", f"eval.kit_python={python}",
                          f"eval.sequences=[{DEMO_EVAL_SEQUENCE}]"))
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert all(r["iterations"] == 3 and r["mse"] is not None for r in rows)
    losses = [r["mse"] for r in rows]
    print("demo mse per epoch:", losses)
    assert losses[-1] < 0.8 * losses[0] and min(losses) == losses[-1], losses
    for r in rows[:-1]:  # only the evaluated epoch has the kit's numbers
        assert all(r[k] is None for k in POSE_METRICS), r
    final = rows[-1]
    assert all(isinstance(final[k], float) and 0.0 <= final[k] <= 100.0 for k in POSE_METRICS), final
    print("demo kit:", {k: final[k] for k in POSE_METRICS})

    ev = out / "eval" / f"epoch_{epochs:03d}"
    kit_table = ev / "kit" / "sequences" / "pose_hota_results.txt"
    assert kit_table.is_file() and (ev / "kit" / "kit_stdout.txt").is_file()
    assert "PosemAP" in (ev / "kit" / "kit_stdout.txt").read_text()
    from kprtrack.train.pose.evaluate import parse_pose_results

    assert parse_pose_results(kit_table.read_text()) == {k: final[k] for k in POSE_METRICS}
    assert json.loads((ev / "pose_map.json").read_text())["metrics"]["pose_mAP"] == final["pose_mAP"]
    assert sorted(p.name for p in (ev / "sequences").glob("*.json")) == [f"{DEMO_EVAL_SEQUENCE}.json"]
    assert (out / "checkpoints" / "model.pth").is_file() and (out / "checkpoints" / "last.pth").is_file()
    assert f"pose_mAP={final['pose_mAP']:.4g}" in done.stdout


# 2 -------------------------------------------------------------------------------------------------
def test_posetrack18_sample_trains_and_the_kit_scores_it(tmp_path):
    from tests.conftest import shared_file
    from tests.kit.oracle import kit_python

    root = shared_file("data/posetrack18")
    python = kit_python()
    out = tmp_path / "run"
    epochs = 3
    _ok(train_pose(out, f"data.root={root}", "data.annotations_dir=annotations", "data.split=val",
                   "aug.enabled=false", "optim.lr=0.002", f"optim.epochs={epochs}", f"eval_every={epochs}",
                   f"eval.kit_python={python}"))
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert all(r["iterations"] == 3 for r in rows)  # 14 labelled people / batch 4
    losses = [r["mse"] for r in rows]
    print("posetrack18 mse per epoch:", losses, "kit:", {k: rows[-1][k] for k in POSE_METRICS})
    assert losses[-1] < losses[0], losses
    assert all(isinstance(rows[-1][k], float) and 0.0 <= rows[-1][k] <= 100.0 for k in POSE_METRICS)

    ev = out / "eval" / f"epoch_{epochs:03d}"
    assert (ev / "kit" / "sequences" / "pose_hota_results.txt").is_file()
    gt_names = sorted(p.name for p in (root / "annotations" / "val").glob("*.json"))
    assert sorted(p.name for p in (ev / "sequences").glob("*.json")) == gt_names
    people = 0
    for name in gt_names:  # the kit needs one score per joint: our writer gives them
        for ann in json.loads((ev / "sequences" / name).read_text())["annotations"]:
            assert len(ann["keypoints"]) == 51 and len(ann["scores"]) == 17, ann.keys()
            scores = np.asarray(ann["scores"], dtype=float)  # heatmap maxima (can dip below 0 untrained)
            assert np.isfinite(scores).all() and scores.max() > 0.05 and np.ptp(scores) > 0, scores
            people += 1
    assert people == 14


# 3 -------------------------------------------------------------------------------------------------
def test_without_the_kit_training_runs_and_says_once_why_it_is_not_evaluated(no_kit_run):
    out, done = no_kit_run
    _ok(done)
    said = [line for line in (done.stdout + done.stderr).splitlines() if "pose evaluation skipped" in line]
    assert len(said) == 1 and "eval.kit_python is not set" in said[0], said
    assert "Traceback" not in done.stderr
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["mse"] > 0 for r in rows)
    assert not any(k.startswith("pose_") for k in rows[0])
    assert not (out / "eval").exists() or not list((out / "eval").rglob("*.json"))
    assert (out / "checkpoints" / "model.pth").is_file()


# 4 -------------------------------------------------------------------------------------------------
def test_the_checkpoint_loads_in_the_inference_stage(no_kit_run, demo):
    from kprtrack.data.posetrack import PoseTrackDataset
    from kprtrack.pose.hrnet import HRNetPose
    from kprtrack.train.pose.checkpoint import checkpoint_meta

    out, done = no_kit_run
    _ok(done)
    model = out / "checkpoints" / "model.pth"
    assert checkpoint_meta(model) == {"arch": "w32", "input_size": [128, 96], "codec": "msra",
                                      "layout": "posetrack"}
    est = HRNetPose(weights=str(model), device="cpu", strict=True, download=False, batch_size=4)
    assert est.layout == "posetrack" and est.arch == "w32" and tuple(est.input_size) == (128, 96)
    assert est.decode == "argmax"
    trained = _weights(model)
    loaded = est.model.state_dict()
    assert trained.keys() == loaded.keys() and all(torch.equal(trained[k], loaded[k].cpu()) for k in trained)

    source = next(iter(PoseTrackDataset(str(demo), split="val", annotations_dir="posetrack_data").sequences()))
    frame = next(f for f in source.frames() if f.gt is not None and len(f.gt))
    people = est.estimate(frame, frame.gt)
    assert people.keypoints.shape == (len(frame.gt), 17, 3)
    assert np.isfinite(people.keypoints).all()
    boxes = frame.gt.boxes  # keypoints land inside the crop of their box (3:4, padded 1.25)
    margin = 1.25 * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None]
    xs, ys = people.keypoints[..., 0], people.keypoints[..., 1]
    assert (xs >= boxes[:, :1] - margin).all() and (xs <= boxes[:, 2:3] + margin).all()
    assert (ys >= boxes[:, 1:2] - margin).all() and (ys <= boxes[:, 3:4] + margin).all()


def test_the_checkpoint_runs_in_the_tracking_pipeline(no_kit_run, demo, tmp_path):
    out, done = no_kit_run
    _ok(done)
    run_dir = tmp_path / "tracks"
    result = subprocess.run(
        [sys.executable, "-m", "kprtrack", "run", "dataset=demo", f"dataset.root={demo}", *DEMO_PARAMS,
         f"dataset.sequences=[{DEMO_EVAL_SEQUENCE}]", "detector=groundtruth", "pose=hrnet",
         f"pose.weights={out / 'checkpoints' / 'model.pth'}", "pose.device=cpu", "reid=part_colors",
         f"output.dir={run_dir}", "run.progress=false", "output.render=false", "run.cache=false"],
        capture_output=True, text=True, env=_env(), timeout=600)
    _ok(result)
    written = run_dir / "posetrack21" / "sequences" / f"{DEMO_EVAL_SEQUENCE}.json"
    assert sorted(p.name for p in (run_dir / "posetrack21" / "sequences").glob("*.json")) == [written.name]
    anns = json.loads(written.read_text())["annotations"]
    assert anns and all(len(a["keypoints"]) == 51 for a in anns)
    assert (run_dir / "mot" / f"{DEMO_EVAL_SEQUENCE}.txt").is_file()
    assert (run_dir / "eval" / "metrics.json").is_file()
    config = (run_dir / "config.yaml").read_text()
    assert "kprtrack.pose.hrnet.HRNetPose" in config and "model.pth" in config


def test_a_udp_trained_checkpoint_decodes_with_udp(demo, tmp_path):
    from kprtrack.pose.hrnet import HRNetPose

    out = tmp_path / "udp"
    _ok(train_pose(out, *_demo_data(demo), "data.codec=udp", "optim.epochs=1", "max_iters_per_epoch=1",
                   "eval_every=0"))
    est = HRNetPose(weights=str(out / "checkpoints" / "model.pth"), device="cpu", download=False)
    assert est.decode == "udp" and tuple(est.input_size) == (64, 64) and est.layout == "posetrack"


# 5 -------------------------------------------------------------------------------------------------
def test_resume_through_the_cli_equals_an_uninterrupted_run(demo, tmp_path):
    """Augmentation on (the collate's generator must restart where it was), Adam state restored."""
    args = [*_demo_data(demo), "optim.epochs=3", "max_iters_per_epoch=2", "eval_every=0", "optim.lr=0.002"]
    whole = tmp_path / "whole"
    _ok(train_pose(whole, *args))
    split = tmp_path / "split"
    first = _ok(train_pose(split, *args, "stop_after_epoch=1"))
    assert not (split / "checkpoints" / "model.pth").exists() and (split / "checkpoints" / "last.pth").is_file()
    assert [r["epoch"] for r in _rows(split)] == [1]
    assert "resuming" not in first.stdout
    second = _ok(train_pose(split, *args))
    assert "resuming" in second.stdout and "after epoch 1" in second.stdout
    assert "train-pose epoch 1/3" not in second.stdout
    assert _rows(split) == _rows(whole)
    a, b = _weights(whole / "checkpoints" / "model.pth"), _weights(split / "checkpoints" / "model.pth")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=0, atol=1e-7) for k in a), \
        max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# 6 -------------------------------------------------------------------------------------------------
def test_two_gloo_processes_equal_one_process_with_two_sub_batches(demo, tmp_path):
    """DDP's averaged gradient equals the accumulated one, with the same samples, augmentation and
    BatchNorm statistics per slice; one process over the undivided batch differs (BatchNorm over 4),
    so the comparison can fail."""
    args = [*_demo_data(demo), "optim.epochs=2", "max_iters_per_epoch=2", "eval_every=0", "optim.lr=0.002",
            "device=cpu"]
    two = _ok(train_pose(tmp_path / "two", *args, nproc=2))
    assert "Traceback" not in two.stderr
    _ok(train_pose(tmp_path / "one", *args, "sub_batches=2"))
    _ok(train_pose(tmp_path / "plain", *args))
    a, b, c = (_weights(tmp_path / d / "checkpoints" / "model.pth") for d in ("two", "one", "plain"))
    assert a.keys() == b.keys() == c.keys()
    floats = [k for k in a if a[k].is_floating_point()]
    worst = max(float((a[k] - b[k]).abs().max()) for k in floats)
    assert worst < 1e-5, worst
    assert max(float((a[k] - c[k]).abs().max()) for k in floats) > 1e-3
    ra, rb, rc = (_rows(tmp_path / d) for d in ("two", "one", "plain"))
    assert [r["epoch"] for r in ra] == [r["epoch"] for r in rb] == [1, 2]
    assert [r["iterations"] for r in ra] == [2, 2]
    assert [r["loss"] for r in ra] == pytest.approx([r["loss"] for r in rb], rel=1e-5)
    assert [r["loss"] for r in ra] != pytest.approx([r["loss"] for r in rc], rel=1e-5)


def test_with_frozen_batchnorm_two_gloo_processes_equal_one_plain_process(demo, tmp_path):
    """Without augmentation draws and with BatchNorm in inference mode nothing depends on how the
    batch is split: the heatmap MSE is a mean over equal slices, so DDP's averaged gradient is the
    whole batch's, and 2 processes equal 1 process over the undivided batch. (SGD: Adam's first steps
    are lr * sign(gradient), which turns float rounding in near-zero gradients into lr-sized steps.)"""
    args = [*_demo_data(demo), "optim.epochs=2", "max_iters_per_epoch=2", "eval_every=0", "optim.lr=0.002",
            "device=cpu", "aug.enabled=false", "freeze_bn_stats=true", "optim.name=sgd", "optim.lr=0.05"]
    _ok(train_pose(tmp_path / "two", *args, nproc=2))
    _ok(train_pose(tmp_path / "one", *args))
    a, b = (_weights(tmp_path / d / "checkpoints" / "model.pth") for d in ("two", "one"))
    worst = max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point())
    assert worst < 1e-5, worst
    assert [r["loss"] for r in _rows(tmp_path / "two")] == pytest.approx([r["loss"] for r in _rows(tmp_path / "one")],
                                                                         rel=1e-5)


# 7 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("corrupt, message", [
    ('{"images": [{"id": 1, "file_name"', "malformed or truncated JSON"),
    (None, "has 50 keypoint values"),  # a person with 50 keypoint numbers instead of 51
])
def test_a_corrupt_annotation_file_is_one_clear_error(demo, tmp_path, corrupt, message):
    root = tmp_path / "data"
    shutil.copytree(demo / "posetrack_data", root / "posetrack_data")
    (root / "images").symlink_to(demo / "images")
    bad = root / "posetrack_data" / "val" / "900001_demo_val.json"
    if corrupt is None:
        data = json.loads(bad.read_text())
        data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:-1]
        bad.write_text(json.dumps(data))
    else:
        bad.write_text(corrupt)
    out = tmp_path / "run"
    done = train_pose(out, *_demo_data(root), "optim.epochs=1", "max_iters_per_epoch=1", "eval_every=0")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1, lines
    assert "error" in lines[0] and str(bad) in lines[0] and message in lines[0], lines[0]
    assert not (out / "checkpoints").exists()
