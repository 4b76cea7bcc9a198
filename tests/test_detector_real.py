"""YOLOX on real material: the official COCO YOLOX-nano ONNX export on real PoseTrack18 and COCO
frames, scored against their ground-truth person boxes (IoU >= 0.5, one-to-one matching).

It also checks our PyTorch architecture against the official network: the export's weights
(BatchNorm fused into the convolutions) are put into our ``YOLOX("nano")`` module, saved as an
official-style checkpoint, and ``detector=yolox`` must reproduce ``detector=yolox_onnx``.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from kprtrack.detector.yolox import YOLOXDetector
from kprtrack.detector.yolox_arch import YOLOX, BaseConv
from kprtrack.detector.yolox_onnx import YOLOXOnnxDetector
from kprtrack.nms import box_iou
from kprtrack.record import Frame
from tests.conftest import shared_file

pytest.importorskip("onnxruntime")

# Measured with this code (14 GT people each): PoseTrack18 3 frames 1920x1080, COCO 4 images.
# (threshold, recall, precision); the asserts allow one person less.
EXPECTED = {
    "posetrack18": [(0.1, 12 / 14, 12 / 15), (0.3, 8 / 14, 8 / 9)],
    "coco": [(0.1, 14 / 14, 14 / 14), (0.3, 11 / 14, 11 / 11)],
}
MARGIN = 1 / 14 + 1e-6


def posetrack18_samples():
    samples = []
    root = shared_file("data/posetrack18")
    for path in sorted((root / "annotations" / "val").glob("*.json")):
        data = json.loads(path.read_text())
        for image in data["images"]:
            gt = np.array([a["bbox"] for a in data["annotations"] if a["image_id"] == image["id"]], float)
            gt[:, 2:] += gt[:, :2]
            ignore = [np.stack([x, y], 1).astype(np.float32) for x, y in
                      zip(image["ignore_regions_x"], image["ignore_regions_y"]) if len(x) > 2]
            samples.append((root / image["file_name"], gt, ignore))
    return samples


def coco_samples():
    root = shared_file("data/coco_kpts")
    data = json.loads((root / "test_coco.json").read_text())
    samples = []
    for image in data["images"]:
        gt = np.array([a["bbox"] for a in data["annotations"] if a["image_id"] == image["id"]], float)
        gt[:, 2:] += gt[:, :2]
        samples.append((root / image["file_name"], gt, []))
    return samples


def recall_precision(samples, detections, threshold):
    """One-to-one IoU >= 0.5 matching; an unmatched box centred in an ignore region is no FP."""
    true_pos = false_pos = people = 0
    for (_, gt, ignore), dets in zip(samples, detections):
        boxes = dets.boxes[dets.scores >= threshold]
        people += len(gt)
        iou = box_iou(gt, boxes)
        rows, cols = linear_sum_assignment(-iou)
        matched = set(cols[iou[rows, cols] >= 0.5])
        true_pos += len(matched)
        for j in set(range(len(boxes))) - matched:
            centre = (float(boxes[j, 0] + boxes[j, 2]) / 2, float(boxes[j, 1] + boxes[j, 3]) / 2)
            if not any(cv2.pointPolygonTest(poly, centre, False) >= 0 for poly in ignore):
                false_pos += 1
    return true_pos / people, true_pos / max(true_pos + false_pos, 1)


def as_frames(samples):
    return [Frame("real", i, cv2.imread(str(path)), file_name=path.name) for i, (path, _, _) in enumerate(samples)]


@pytest.fixture(scope="module")
def nano_onnx():
    return YOLOXOnnxDetector(weights=str(shared_file("models/yolox_nano_416.onnx")), score_thresh=0.1)


@pytest.mark.parametrize("dataset", ["posetrack18", "coco"])
def test_official_nano_recall_and_precision(nano_onnx, dataset):
    samples = posetrack18_samples() if dataset == "posetrack18" else coco_samples()
    detections = nano_onnx.detect(as_frames(samples))
    assert nano_onnx.input_hw == (416, 416) and nano_onnx.batch_size == 1
    for threshold, recall, precision in EXPECTED[dataset]:
        got = recall_precision(samples, detections, threshold)
        print(f"{dataset} score>={threshold}: recall {got[0]:.3f} precision {got[1]:.3f}")
        assert got[0] >= recall - MARGIN and got[1] >= precision - MARGIN, (threshold, got)
    # low-confidence boxes are kept for the tracker's second round
    scores = np.concatenate([d.scores for d in detections])
    assert scores.min() >= 0.1 and (scores < 0.3).any()


def nano_checkpoint_from_official_onnx(onnx_path, out_path):
    """Our YOLOX-nano filled with the export's fused weights, saved as {'model': state dict}."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    onnx_convs = [node for node in graph.node if node.op_type == "Conv"]
    model = YOLOX("nano", 80).eval()
    ours = []  # our convolutions in execution order = the export's node order
    hooks = [m.register_forward_hook(lambda m, i, o: ours.append(m))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    model(torch.zeros(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert len(ours) == len(onnx_convs) == 113
    batchnorm_of = {m.conv: m.bn for m in model.modules() if isinstance(m, BaseConv)}
    with torch.no_grad():
        for node, conv in zip(onnx_convs, ours):
            weight, bias = (torch.from_numpy(tensors[name].copy()) for name in node.input[1:3])
            assert weight.shape == conv.weight.shape  # every layer's shape agrees with upstream
            conv.weight.copy_(weight)
            if conv in batchnorm_of:  # BatchNorm made the identity plus the fused bias
                bn = batchnorm_of[conv]
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            else:
                conv.bias.copy_(bias)
    torch.save({"model": model.state_dict()}, out_path)
    return out_path


@pytest.mark.slow
def test_pytorch_architecture_reproduces_official_nano(nano_onnx, tmp_path):
    onnx_path = shared_file("models/yolox_nano_416.onnx")
    checkpoint = nano_checkpoint_from_official_onnx(onnx_path, tmp_path / "yolox_nano_from_onnx.pth")
    pytorch = YOLOXDetector(weights=str(checkpoint), score_thresh=0.1)
    assert pytorch.model.size_name == "nano" and pytorch.input_hw == (416, 416)
    frames = as_frames(coco_samples() + posetrack18_samples())
    for frame, a, b in zip(frames, pytorch.detect(frames), nano_onnx.detect(frames)):
        assert len(a) == len(b), frame.file_name
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
