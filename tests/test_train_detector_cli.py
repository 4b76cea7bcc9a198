"""``python -m kprtrack train-detector`` end to end, through the real command line (subprocesses, as
users run it): a random-init YOLOX-nano learns the synthetic demo's people (loss down, AP up), runs on
the real PoseTrack18 sample, its checkpoint loads in the inference stage and drives ``kprtrack run``,
a stopped run resumes to the same weights, 2 DDP processes equal 1 process with 2 sub-batches, and a
bad data root is one line on stderr."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from kprtrack.data.demo import generate_demo
from kprtrack.train.common import read_metrics_csv
from kprtrack.train.detector.data import load_detection_items
from tests.conftest import shared_file

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess

DEMO_SEQUENCE = "900001_demo_val"
TIME_COLUMNS = ("time_s", "it_per_s")


def kprtrack(*args: str, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m kprtrack <args>`` (``torch.distributed.run`` with ``nproc`` > 1), one torch thread
    per process (a shared 2-core box)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    return subprocess.run([sys.executable, *launcher, "-m", "kprtrack", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def train_detector(root: Path, out: Path, *extra: str, nproc: int = 1) -> subprocess.CompletedProcess:
    """A small run: YOLOX-nano from random init at 128x128 on split val, batch 4, no TensorBoard."""
    return kprtrack("train-detector", f"data.root={root}", "data.split=val", f"output_dir={out}",
                    "model.weights=null", "model.model_size=nano", "data.input_size=[128,128]", "batch_size=4",
                    "num_workers=0", "device=cpu", "tensorboard=false", *extra, nproc=nproc)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def without_time(rows: list[dict]) -> list[dict]:
    """Metrics rows without the timing columns, NaN (precision with no detections) made comparable."""
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()
             if k not in TIME_COLUMNS} for row in rows]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("demo") / "demo", num_sequences=2, num_frames=30,
                         width=320, height=192)


# The learning run: 10 epochs x 10 iterations, mosaic/mixup off (HSV, flip, affine on), the L1 term in
# the last 2 (no-aug) epochs, lr 0.02 (random init), EMA on (the recipe), evaluation at epochs 5 and 10.
LEARN = ("max_iters_per_epoch=10", "optim.epochs=10", "optim.no_aug_epochs=2", "optim.lr=0.02",
         "aug.mosaic_prob=0", "aug.mixup_prob=0", "eval_every=5", f"eval.sequences=[{DEMO_SEQUENCE}]")


@pytest.fixture(scope="module")
def learned(demo_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learn") / "run"
    result = ok(train_detector(demo_root, out, *LEARN))
    assert f"checkpoint: {out / 'checkpoints' / 'model.pth'}" in result.stdout
    return out


def test_cli_run_learns_the_demo_people(learned, demo_root):
    rows = read_metrics_csv(learned / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, 11)) and all(r["iterations"] == 10 for r in rows)
    assert (learned / "checkpoints" / "model.pth").is_file() and (learned / "checkpoints" / "last.pth").is_file()
    for r in rows:  # the total is the sum of the logged terms; L1 only in the 2 no-aug epochs
        assert r["loss"] == pytest.approx(r["iou"] + r["obj"] + r["cls"] + r["l1"], rel=1e-4)
        assert (r["l1"] > 0) == (r["epoch"] > 8), r
    base = [r["iou"] + r["obj"] + r["cls"] for r in rows]  # without L1, which switches on at epoch 9
    assert (base[-1] + base[-2]) / 2 < 0.8 * base[0], base
    assert rows[0]["lr"] == pytest.approx(0.02) and rows[-1]["lr"] == pytest.approx(0.02 * 0.05)  # warmcos floor
    # Evaluation every 5 epochs, through the inference stage, on the one eval sequence.
    evaluated = {r["epoch"]: r for r in rows if r.get("AP") is not None}
    assert sorted(evaluated) == [5, 10]
    gt = sum(len(item.boxes) for item in load_detection_items(demo_root, "val", sequences=[DEMO_SEQUENCE]))
    for r in evaluated.values():
        assert r["num_images"] == 27 and r["num_gt"] == gt
        for key in ("AP", "AP50", "AP75", "AR100", "recall@0.1", "recall@0.5", "recall@0.6"):
            assert 0.0 <= r[key] <= 1.0, (key, r)
    # The trained weights are what is evaluated: a random-init head scores ~1e-4 (prior 0.01 squared),
    # under eval.score_thresh 0.01; after training some boxes pass. (AP itself stays near 0 after
    # 100 CPU iterations from random init, too seed-dependent to assert on.)
    assert evaluated[10]["num_detections"] > 0, evaluated
    saved = json.loads((learned / "eval" / "epoch_010" / "detector_eval.json").read_text())
    assert saved["metrics"]["AP50"] == pytest.approx(evaluated[10]["AP50"]) and saved["input_size"] == [128, 128]


def test_cli_run_on_posetrack18(tmp_path):
    """The real sample (3 sequences, 1 labelled 1920x1080 image each), upstream augmentation (mosaic,
    mixup), a non-square input, DataLoader workers, evaluation on it."""
    root = shared_file("data/posetrack18")
    shared_file("data/posetrack18/annotations/val")
    out = tmp_path / "run"
    result = ok(train_detector(root, out, "data.annotations_dir=annotations", "data.input_size=[192,320]",
                               "batch_size=2", "optim.epochs=2", "optim.no_aug_epochs=1", "num_workers=2"))
    assert "checkpoint: " in result.stdout
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and [r["iterations"] for r in rows] == [1, 1]
    assert all(r["loss"] > 0 for r in rows) and rows[0]["l1"] == 0 and rows[1]["l1"] > 0
    gt = sum(len(item.boxes) for item in load_detection_items(root, "val", "annotations"))
    assert gt == 14 and all(r["num_images"] == 3 and r["num_gt"] == gt for r in rows)
    assert all(0.0 <= r["AP"] <= 1.0 for r in rows)
    checkpoint = torch.load(out / "checkpoints" / "model.pth", map_location="cpu", weights_only=True)
    assert checkpoint["kprtrack"]["input_size"] == [192, 320]
    assert checkpoint["kprtrack"]["trained_on"] == "posetrack18/annotations/val"
    saved = json.loads((out / "eval" / "epoch_002" / "detector_eval.json").read_text())
    assert saved["input_size"] == [192, 320] and saved["annotations_dir"] == "annotations"


def test_checkpoint_runs_in_the_inference_stage(learned, demo_root):
    from kprtrack.data.posetrack import PoseTrackDataset
    from kprtrack.detector.yolox import YOLOXDetector
    from kprtrack.record import Detections

    path = learned / "checkpoints" / "model.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "read as ByteTrack" guess: the file carries its recipe
        detector = YOLOXDetector(weights=str(path), score_thresh=0.0)
    assert detector.preprocess == "yolox" and detector.input_hw == (128, 128)
    assert detector.model.head.num_classes == 1 and detector.model.size_name == "nano"
    stored, loaded = weights(path), detector.model.state_dict()
    assert stored.keys() == loaded.keys() and all(torch.equal(stored[k], loaded[k]) for k in stored)
    frames = [f for _, f in zip(range(3), next(PoseTrackDataset(str(demo_root), "val").sequences()).frames())]
    found = detector.detect(frames)
    assert len(found) == 3
    for frame, det in zip(frames, found):
        assert isinstance(det, Detections) and 0 < len(det) <= 300
        assert det.boxes.shape == (len(det), 4) and det.scores.shape == (len(det),)
        assert det.boxes.dtype == det.scores.dtype == np.float32
        h, w = frame.image.shape[:2]
        assert (det.boxes[:, 0::2] >= 0).all() and (det.boxes[:, 0::2] <= w).all()
        assert (det.boxes[:, 1::2] >= 0).all() and (det.boxes[:, 1::2] <= h).all()
        assert ((det.scores >= 0) & (det.scores <= 1)).all()


def test_checkpoint_drives_the_tracking_pipeline(learned, demo_root, tmp_path):
    """``kprtrack run detector=yolox detector.weights=<model.pth>``; the tracker's thresholds are
    lowered to the young model's scores so its boxes become tracks."""
    out = tmp_path / "run"
    result = ok(kprtrack(
        "run", "dataset=demo", f"dataset.root={demo_root}", "dataset.num_sequences=2", "dataset.num_frames=30",
        "dataset.width=320", "dataset.height=192", f"dataset.sequences=[{DEMO_SEQUENCE}]",
        "detector=yolox", f"detector.weights={learned / 'checkpoints' / 'model.pth'}", "detector.score_thresh=0.0",
        "pose=groundtruth", "reid=part_colors", "tracker.det_low_thresh=0.0", "tracker.det_high_thresh=0.0",
        "tracker.new_track_thresh=0.0", "run.progress=false", "output.render=false", f"output.dir={out}"))
    assert f"{DEMO_SEQUENCE}: 30 frames" in result.stderr + result.stdout
    tracks = json.loads((out / "posetrack21" / "sequences" / f"{DEMO_SEQUENCE}.json").read_text())
    assert len(tracks["images"]) == 30 and tracks["annotations"]
    assert (out / "mot" / f"{DEMO_SEQUENCE}.txt").read_text().strip()
    assert (out / "eval" / "metrics.json").is_file()
    assert sorted(p.stem for p in (out / "posetrack21" / "sequences").glob("*.json")) == [DEMO_SEQUENCE]


def test_stopped_run_resumes_to_the_uninterrupted_weights(learned, demo_root, tmp_path):
    """Stop after epoch 7 (evaluated at 5), rerun: epochs 8-10 (the no-aug switch at 9, evaluation
    at 10) give the uninterrupted run's weights and rows. The rerun uses DataLoader workers and a
    copy of the data in another folder: the batches depend neither on which process collates them
    nor on where the data set lies."""
    out = tmp_path / "run"
    moved = tmp_path / "copy" / "demo"  # the data set moved between the runs (another machine)
    shutil.copytree(demo_root, moved)
    first = ok(train_detector(demo_root, out, *LEARN, "stop_after_epoch=7"))
    assert "checkpoint: " + str(out / "checkpoints" / "last.pth") in first.stdout
    assert not (out / "checkpoints" / "model.pth").exists()
    assert [r["epoch"] for r in read_metrics_csv(out / "metrics.csv")] == list(range(1, 8))
    second = ok(train_detector(moved, out, *LEARN, "num_workers=2"))
    assert "resuming" in second.stdout and "after epoch 7" in second.stdout
    assert "epoch 8/10" in second.stdout and "epoch 7/10" not in second.stdout
    a, b = weights(learned / "checkpoints" / "model.pth"), weights(out / "checkpoints" / "model.pth")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert without_time(read_metrics_csv(out / "metrics.csv")) == without_time(read_metrics_csv(learned / "metrics.csv"))


def test_two_ddp_processes_equal_one_with_two_sub_batches(demo_root, tmp_path):
    """torchrun with 2 gloo processes (2 images each) against 1 process with sub_batches=2: the same
    samples, augmentation (mosaic, mixup) and BatchNorm statistics per slice, the all-reduced gradient
    equal to the accumulated one. 1 process over the undivided batch (BatchNorm over all 4) differs,
    so the comparison can fail."""
    common = ("max_iters_per_epoch=3", "optim.epochs=2", "optim.no_aug_epochs=1", "optim.lr=0.02", "eval_every=0")
    two = ok(train_detector(demo_root, tmp_path / "two", *common, nproc=2))
    assert two.stdout.count("checkpoint: ") == 1  # rank 0 alone reports (and writes)
    ok(train_detector(demo_root, tmp_path / "one", *common, "sub_batches=2"))
    ok(train_detector(demo_root, tmp_path / "plain", *common))
    a, b, c = (weights(tmp_path / d / "checkpoints" / "model.pth") for d in ("two", "one", "plain"))
    assert a.keys() == b.keys() == c.keys()
    far = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point()}
    assert max(far.values()) < 1e-5, sorted(far.items(), key=lambda kv: -kv[1])[:5]
    assert any(not torch.allclose(a[k].double(), c[k].double(), atol=1e-5) for k in a if a[k].is_floating_point())
    ra, rb = (read_metrics_csv(tmp_path / d / "metrics.csv") for d in ("two", "one"))
    assert [r["epoch"] for r in ra] == [r["epoch"] for r in rb] == [1, 2]
    for x, y in zip(ra, rb):
        for key in ("loss", "iou", "obj", "cls", "l1", "lr"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7), (key, x, y)
    assert ra[1]["l1"] > 0


def test_missing_data_root_is_one_clear_line(tmp_path):
    missing = tmp_path / "no_such_posetrack"
    result = train_detector(missing, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "not found" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_diverging_run_is_one_clear_error(demo_root, tmp_path):
    """An lr that blows the model up: the engine's "loss became nan" error (exit 2), not a traceback
    from SimOTA's cross-entropy on NaN scores."""
    result = train_detector(demo_root, tmp_path / "out", "max_iters_per_epoch=4", "optim.epochs=1",
                            "optim.warmup_epochs=0", "optim.lr=1e6", "aug.mosaic_prob=0", "aug.mixup_prob=0",
                            "eval_every=0")
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "loss became nan" in last and "lower optim.lr" in last, result.stderr
    assert "Traceback" not in result.stderr
