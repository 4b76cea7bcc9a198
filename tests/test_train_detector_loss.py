"""YOLOX training outputs and the SimOTA loss (kprtrack.train.detector.loss)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kprtrack.detector.yolox_arch import STRIDES, YOLOX
from kprtrack.detector.yolox_processing import decode
from kprtrack.train.detector.loss import YoloxLoss, box_iou_cxcywh, iou_loss

HW = (128, 128)
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny forwards on a shared 2-core box


def anchor_grid(hw=HW):
    grids, strides = [], []
    for s in STRIDES:
        ys, xs = torch.meshgrid(torch.arange(hw[0] // s), torch.arange(hw[1] // s), indexing="ij")
        grids.append(torch.stack((xs, ys), -1).reshape(-1, 2).float())
        strides.append(torch.full((len(grids[-1]),), float(s)))
    return torch.cat(grids), torch.cat(strides)


def outputs_predicting(boxes_per_anchor: torch.Tensor, num_classes: int = 1, batch: int = 1) -> dict:
    """Training outputs whose every anchor predicts ``boxes_per_anchor`` [A, 4] (cx, cy, w, h),
    with the raw regression that decodes to them."""
    grids, strides = anchor_grid()
    reg = torch.cat([boxes_per_anchor[:, :2] / strides[:, None] - grids,
                     torch.log(boxes_per_anchor[:, 2:] / strides[:, None])], 1)
    a = len(grids)
    return {"boxes": boxes_per_anchor.expand(batch, a, 4).clone(), "reg": reg.expand(batch, a, 4).clone(),
            "obj": torch.zeros(batch, a), "cls": torch.zeros(batch, a, num_classes),
            "grids": grids, "strides": strides}


def targets_of(*rows, batch: int = 1, max_labels: int = 4) -> torch.Tensor:
    t = torch.zeros(batch, max_labels, 5)
    for i, row in enumerate(rows):
        t[0, i] = torch.tensor(row, dtype=torch.float32)
    return t


def test_training_outputs_match_the_inference_path():
    torch.manual_seed(0)
    model = YOLOX("nano", 3).eval()
    x = torch.rand(2, 3, *HW) * 255
    with torch.no_grad():
        raw = model(x)
        train = model(x, train_outputs=True)
    rows = decode(raw.numpy(), HW)
    a = raw.shape[1]
    assert train["boxes"].shape == (2, a, 4) and train["cls"].shape == (2, a, 3)
    assert train["obj"].shape == (2, a) and train["reg"].shape == (2, a, 4)
    np.testing.assert_allclose(train["boxes"].numpy(), rows[..., :4], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(train["reg"].numpy(), raw[..., :4].numpy(), atol=0)
    np.testing.assert_allclose(train["obj"].sigmoid().numpy(), raw[..., 4].numpy(), atol=1e-6)
    np.testing.assert_allclose(train["cls"].sigmoid().numpy(), raw[..., 5:].numpy(), atol=1e-6)
    assert train["grids"].shape == (a, 2) and train["strides"].shape == (a,)
    assert train["strides"].unique().tolist() == [8.0, 16.0, 32.0]


def test_perfect_prediction_has_no_box_loss_and_dynamic_k_is_the_iou_sum():
    gt = torch.tensor([[60.0, 64.0, 40.0, 80.0]])
    out = outputs_predicting(gt.expand(len(anchor_grid()[0]), 4))
    loss = YoloxLoss(1, use_l1=True)
    total, terms = loss(out, targets_of([0, 60, 64, 40, 80]))
    assert terms["iou"].item() < 1e-5 and terms["l1"].item() < 1e-5
    # Every candidate predicts the GT exactly: the 10 best IoUs sum to 10 -> 10 foreground anchors.
    fg, matched, ious = loss.assign(gt, torch.zeros(1), out["boxes"][0], out["obj"][0], out["cls"][0],
                                    out["grids"], out["strides"])
    assert int(fg.sum()) == 10 and torch.allclose(ious, torch.ones(10))
    # obj: BCE(0 logit) = log 2 per anchor, over num_fg = 10; cls target 1 * IoU 1 at logit 0.
    a = len(out["grids"])
    assert terms["obj"].item() == pytest.approx(a * math.log(2) / 10, rel=1e-5)
    assert terms["cls"].item() == pytest.approx(math.log(2), rel=1e-5)
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)


def test_dynamic_k_follows_the_ious():
    # Every anchor predicts a box with IoU 0.25 with the GT (same centre, half width and height):
    # sum of the top-10 IoUs = 2.5 -> k = 2.
    gt = torch.tensor([[64.0, 64.0, 48.0, 96.0]])
    out = outputs_predicting(torch.tensor([[64.0, 64.0, 24.0, 48.0]]).expand(len(anchor_grid()[0]), 4))
    assert box_iou_cxcywh(gt, out["boxes"][0, :1]).item() == pytest.approx(0.25)
    fg, *_ = YoloxLoss(1).assign(gt, torch.zeros(1), out["boxes"][0], out["obj"][0], out["cls"][0],
                                 out["grids"], out["strides"])
    assert int(fg.sum()) == 2


def test_assignment_picks_anchors_inside_their_box_one_gt_each():
    torch.manual_seed(1)
    grids, strides = anchor_grid()
    noisy = torch.cat([torch.rand(len(grids), 2) * 128, 10 + torch.rand(len(grids), 2) * 60], 1)
    gts = torch.tensor([[40.0, 60.0, 30.0, 70.0], [90.0, 50.0, 40.0, 60.0]])
    loss = YoloxLoss(2)
    fg, matched, ious = loss.assign(gts, torch.tensor([0.0, 1.0]), noisy, torch.zeros(len(grids)),
                                    torch.zeros(len(grids), 2), grids, strides)
    assert fg.sum() == len(matched) == len(ious) > 0
    assert set(matched.tolist()) == {0, 1}
    centres = (grids[fg] + 0.5) * strides[fg, None]
    box = gts[matched]
    assert ((centres - box[:, :2]).abs() < box[:, 2:] / 2).all()  # inside its own GT box
    assert ((centres - box[:, :2]).abs() < 2.5 * strides[fg, None]).all()  # and its centre square
    expected = box_iou_cxcywh(box, noisy[fg]).diagonal()
    assert torch.allclose(ious, expected)


def test_iou_loss_values():
    a = torch.tensor([[10.0, 10.0, 4.0, 4.0]])
    assert iou_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    b = torch.tensor([[12.0, 10.0, 4.0, 4.0]])  # IoU 8 / 24 = 1/3
    assert iou_loss(a, b).item() == pytest.approx(1 - 1 / 9, rel=1e-5)
    assert iou_loss(a, b, "giou").item() == pytest.approx(1 - 1 / 3, rel=1e-5)  # hull 6x4 = union


def test_images_without_targets_only_have_objectness_loss():
    torch.manual_seed(0)
    model = YOLOX("nano", 1).train()
    out = model(torch.rand(2, 3, *HW) * 255, train_outputs=True)
    total, terms = YoloxLoss(1, use_l1=True)(out, torch.zeros(2, 5, 5))
    assert terms["iou"] == 0 and terms["cls"] == 0 and terms["l1"] == 0 and terms["obj"] > 0
    total.backward()
    assert all(p.grad is not None for p in model.parameters())  # every branch stays in the graph (DDP)
    # Mixed batch: one image with a box, one without.
    model.zero_grad()
    out = model(torch.rand(2, 3, *HW) * 255, train_outputs=True)
    total, terms = YoloxLoss(1)(out, targets_of([0, 64, 64, 30, 60], batch=2))
    assert torch.isfinite(total) and terms["iou"] > 0 and terms["cls"] > 0
    total.backward()


@pytest.mark.slow
def test_loss_goes_down_on_a_fixed_batch():
    torch.manual_seed(0)
    model = YOLOX("nano", 1).train()
    x = torch.rand(2, 3, *HW) * 255
    targets = torch.zeros(2, 4, 5)
    targets[0, 0] = torch.tensor([0, 60, 60, 30, 80])
    targets[0, 1] = torch.tensor([0, 20, 30, 16, 40])
    targets[1, 0] = torch.tensor([0, 90, 70, 40, 90])
    loss = YoloxLoss(1, use_l1=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(20):
        total, terms = loss(model(x, train_outputs=True), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    assert all(math.isfinite(v) for v in history)
    assert np.mean(history[-3:]) < 0.3 * history[0], history


def test_loss_equals_the_official_yolox_head_term_by_term():
    """tests/fixtures/reference/yolox_loss.npz: what Megvii's YOLOXHead (0.3.0) received and
    returned on seeded nano outputs (tools/yolox_loss_reference.py): 80- and 1-class heads, an image
    without boxes, overlapping people, with and without the L1 term."""
    from pathlib import Path

    ref = np.load(Path(__file__).parent / "fixtures" / "reference" / "yolox_loss.npz")
    for case in range(int(ref["num_cases"])):
        outputs = {name: torch.from_numpy(ref[f"case{case}_{name}"])
                   for name in ("boxes", "obj", "cls", "reg", "grids", "strides")}
        labels = torch.from_numpy(ref[f"case{case}_labels"])
        for use_l1 in (0, 1):
            total, terms = YoloxLoss(outputs["cls"].shape[-1], use_l1=bool(use_l1))(outputs, labels)
            mine = [float(total), *(float(terms[k]) for k in ("iou", "obj", "cls", "l1"))]
            assert mine == pytest.approx(ref[f"case{case}_l1{use_l1}_terms"].tolist(), rel=1e-5, abs=1e-6), case
