"""train-detector's task (kprtrack.train.detector.task), its checkpoints and its evaluation,
driven by hand (no engine) on the synthetic demo data with YOLOX-nano at 128x128."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from kprtrack.data.demo import generate_demo
from kprtrack.detector.yolox import YOLOXDetector
from kprtrack.detector.yolox_arch import YOLOX
from kprtrack.detector.yolox_weights import load_checkpoint, save_yolox_checkpoint
from kprtrack.errors import InputError
from kprtrack.record import Detections
from kprtrack.train.detector import evaluate as evaluate_module
from kprtrack.train.detector.evaluate import detection_metrics, evaluate_detector
from kprtrack.train.detector.task import DetectorTask, person_head_state
from kprtrack.train.task import TrainTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny forwards on a shared 2-core box


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("det") / "demo", num_sequences=1, num_frames=30,
                         width=320, height=192)


def make_task(root, input_size=(128, 128), **model) -> DetectorTask:
    cfg = OmegaConf.create({
        "model": {"weights": None, "model_size": "nano", "num_classes": 1, **model},
        "data": {"root": str(root), "split": "val", "annotations_dir": "posetrack_data", "input_size": list(input_size)},
        "aug": {"max_labels": 30},
        "loss": {"use_l1": None},
        "optim": {"epochs": 3, "no_aug_epochs": 1},
        "eval": {"split": "val", "batch_size": 8, "recall_thresholds": [0.1, 0.5]},
    })
    return DetectorTask(cfg)


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    """A task, its model after 15 SGD steps on one fixed batch, the loss history, a checkpoint."""
    task = make_task(demo_root)
    members = [m for m in vars(TrainTask) if not m.startswith("_")]
    assert all(callable(getattr(task, m)) for m in members if m != "name") and task.name == "train-detector"
    torch.manual_seed(0)
    dataset = task.build_dataset()
    model = task.build_model()
    assert model.training
    opt = torch.optim.SGD(task.param_groups(model), lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batch = task.make_collate(dataset, seed=0, epoch=0)(list(dataset[:2]))
    history = []
    for _ in range(15):
        total, terms = task.loss(model, batch, epoch=0)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    path = tmp_path_factory.mktemp("ckpt") / "last.pth"
    state = {"epoch": 1, "optimizer": opt.state_dict(), "best_ap": 0.25}
    task.save_checkpoint(path, model, state)
    saved = {k: v.clone() for k, v in model.state_dict().items()}  # later tests run the model in train mode
    return task, dataset, model, history, path, state, saved


def test_loss_goes_down_over_manual_steps(trained):
    task, dataset, model, history, *_ = trained
    assert all(np.isfinite(history))
    assert np.mean(history[-3:]) < 0.9 * np.mean(history[:3]), history


def test_l1_and_mosaic_switch_in_the_no_aug_epochs(trained):
    task, dataset, model, *_ = trained
    assert task.make_collate(dataset, 0, epoch=1).mosaic and not task.make_collate(dataset, 0, epoch=2).mosaic
    batch = task.make_collate(dataset, seed=1, epoch=2)(list(dataset[2:4]))
    assert batch["images"].shape == (2, 3, 128, 128) and batch["targets"].shape == (2, 30, 5)
    _, early = task.loss(model, batch, epoch=1)
    _, late = task.loss(model, batch, epoch=2)
    assert early["l1"] == 0 and late["l1"] > 0
    assert early["iou"] == pytest.approx(late["iou"].item())


def test_param_groups_are_upstreams_three(trained):
    task, _, model, *_ = trained
    groups = task.param_groups(model)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    norm, weights, biases = groups
    assert norm["weight_decay"] == 0 and biases["weight_decay"] == 0 and "weight_decay" not in weights
    assert {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {id(p) for p in norm["params"]}
    assert all(p.ndim == 4 for p in weights["params"]) and all(p.ndim == 1 for p in biases["params"])
    assert all(m.momentum == 0.03 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_checkpoint_loads_in_the_inference_stage_with_its_recipe(trained, demo_root):
    task, _, model, _, path, state, expected = trained
    stored, meta = load_checkpoint(path)
    assert meta["preprocess"] == "yolox" and meta["input_size"] == [128, 128] and meta["num_classes"] == 1
    assert meta["nms_thresh"] == 0.45 and meta["person_class"] == 0 and "val" in meta["trained_on"]
    raw = torch.load(path, weights_only=True)
    assert raw["start_epoch"] == 1 and set(raw["optimizer"]) == {"state", "param_groups"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 1-class file with a recipe is not read as ByteTrack's
        detector = YOLOXDetector(weights=str(path), score_thresh=0.0)
    assert detector.preprocess == "yolox" and detector.input_hw == (128, 128) and detector.post.nms_thresh == 0.45
    loaded = detector.model.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    frame = next(next(task_dataset_sequences(demo_root)).frames())
    found = detector.detect([frame])[0]
    assert isinstance(found, Detections) and len(found) > 0
    # read_checkpoint round-trips what save_checkpoint wrote.
    weights, training_state = task.read_checkpoint(path)
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert training_state["epoch"] == 1 and training_state["best_ap"] == 0.25
    assert training_state["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]


def task_dataset_sequences(root):
    from kprtrack.data.posetrack import PoseTrackDataset

    return PoseTrackDataset(str(root), "val", labeled_only=True).sequences()


def test_official_one_class_file_without_recipe_is_still_bytetrack(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save({"model": YOLOX("nano", 1).state_dict()}, path)
    with pytest.warns(UserWarning, match="ByteTrack"):
        detector = YOLOXDetector(weights=str(path))
    assert detector.preprocess == "bytetrack" and detector.post.nms_thresh == 0.7


def test_bad_recipe_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    save_yolox_checkpoint(path, YOLOX("nano", 1).state_dict(), {"num_classes": 80, "preprocess": "yolox"}, {})
    with pytest.raises(InputError, match="80 classes"):
        YOLOXDetector(weights=str(path))


def test_person_head_cut_from_a_coco_checkpoint(tmp_path, demo_root):
    torch.manual_seed(3)
    coco = YOLOX("nano", 80).eval()
    path = tmp_path / "coco_like.pth"
    torch.save({"model": coco.state_dict(), "start_epoch": 300}, path)
    task = make_task(demo_root, weights=str(path), model_size=None, person_class=0)
    model = task.build_model().eval()
    assert model.head.num_classes == 1 and task.train_size == (128, 128)
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        a, b = coco(x), model(x)
    torch.testing.assert_close(b[..., :6], a[..., :6])  # boxes, objectness, person score unchanged
    with pytest.raises(InputError, match="person_class"):
        person_head_state(coco.state_dict(), 80)


def test_evaluation_of_a_random_checkpoint_is_low(trained, tmp_path):
    task, *_, path, _, _ = trained
    metrics = task.evaluate(path, tmp_path)
    assert metrics["AP"] < 0.05 and metrics["num_gt"] > 50 and metrics["num_images"] == 27
    assert {"AP50", "AP75", "recall@0.1", "recall@0.5", "precision@0.1"} <= metrics.keys()
    assert (tmp_path / "detector_eval.json").is_file()


class _GroundTruthDetector:
    """Stands in for YOLOXDetector: returns each frame's GT boxes, optionally shifted."""
    shift = 0.0

    def __init__(self, **kwargs):
        self.input_hw = (128, 128)

    def detect(self, frames):
        out = []
        for k, frame in enumerate(frames):
            boxes = frame.gt.boxes.copy()
            boxes[:, [0, 2]] += self.shift * (boxes[:, 2:3] - boxes[:, 0:1])
            out.append(Detections(boxes=boxes, scores=np.linspace(0.9, 0.8, len(boxes))))
        return out


def test_evaluation_of_ground_truth_boxes_is_perfect_and_can_fail(demo_root, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate_module, "YOLOXDetector", _GroundTruthDetector)
    metrics = evaluate_detector(tmp_path / "unused.pth", demo_root, "val", "posetrack_data", device="cpu",
                                recall_thresholds=(0.1, 0.5))
    assert metrics["AP"] > 0.99 and metrics["AP50"] > 0.99 and metrics["recall@0.5"] == 1.0
    assert metrics["precision@0.5"] == 1.0
    monkeypatch.setattr(_GroundTruthDetector, "shift", 0.4)  # IoU 0.43 with its own person
    shifted = evaluate_detector(tmp_path / "unused.pth", demo_root, "val", "posetrack_data", device="cpu",
                                recall_thresholds=(0.1, 0.5))
    assert shifted["AP"] < 0.1 and shifted["AP50"] < 0.1 and shifted["recall@0.1"] < 0.3


def test_ignore_regions_drop_gt_and_detections():
    square = [np.array([[0, 0], [50, 0], [50, 50], [0, 50]], np.float32)]
    gt = np.array([[10, 10, 30, 30], [60, 60, 90, 90]], np.float32)  # the first is centred in the region
    # Detections: the uncovered person, and a false positive inside the ignore region (not counted).
    dets = (np.array([[60, 60, 90, 90], [5, 5, 20, 20]], np.float32), np.array([0.9, 0.95], np.float32))
    m = detection_metrics([gt], [dets], [square], [(100, 100)], recall_thresholds=(0.1,))
    assert m["num_gt"] == 1 and m["num_detections"] == 1 and m["AP"] > 0.99 and m["recall@0.1"] == 1.0
    m = detection_metrics([gt], [dets], [[]], [(100, 100)], recall_thresholds=(0.1,))
    assert m["num_gt"] == 2 and m["recall@0.1"] == 0.5 and m["AP"] < 0.6


@pytest.mark.slow
def test_person_head_cut_from_the_official_coco_nano_keeps_its_ap(demo_root, tmp_path):
    """The official COCO YOLOX-nano (weights from the shared ONNX export) finds the demo people;
    its 1-class cut, saved by the task and read back by detector=yolox, scores them the same."""
    from tests.conftest import shared_file
    from tests.test_detector_real import nano_checkpoint_from_official_onnx

    coco = nano_checkpoint_from_official_onnx(shared_file("models/yolox_nano_416.onnx"), tmp_path / "coco.pth")
    before = evaluate_detector(coco, demo_root, input_size=[192, 320])
    task = make_task(demo_root, input_size=(192, 320), weights=str(coco), model_size=None)
    task.save_checkpoint(tmp_path / "person.pth", task.build_model().eval(), {})
    after = task.evaluate(tmp_path / "person.pth", tmp_path / "eval")
    assert before["AP50"] > 0.6 and before["AP"] > 0.4  # a real detector, unlike random weights
    for key in ("AP", "AP50", "AP75", "recall@0.1", "recall@0.5"):
        assert after[key] == pytest.approx(before[key], abs=0.01), key
