"""YOLOX's training loss: SimOTA label assignment, IoU + objectness + class (+ L1) terms.

Written after Megvii-BaseDetection/YOLOX ``yolox/models/yolo_head.py`` (``get_losses``,
``get_assignments``, ``simota_matching``) and ``yolox/models/losses.py`` (``IOUloss``):

- candidates: anchors whose centre ``(grid + 0.5) * stride`` lies inside a GT box or within
  ``center_radius`` strides of its centre (``in_box_candidates=True``, radius 2.5: the assigner the
  official 0.1.1rc0 COCO checkpoints were trained with); ``in_box_candidates=False`` with radius
  1.5 is upstream's later ``get_geometry_constraint`` (2023);
- cost per (GT, candidate) = BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot class) summed over
  classes + 3 * -log(IoU + 1e-8) + 1e6 where the geometry does not hold (outside the centre square,
  and for the 2.5 variant also outside the box);
- dynamic k per GT = clamp(int(sum of its 10 best IoUs), min=1); each GT takes its k cheapest
  candidates; an anchor taken by several GTs keeps the cheapest one;
- losses over the batch, each divided by the number of foreground anchors (at least 1):
  reg_weight (5.0) * (1 - IoU^2) on foreground boxes, BCE-with-logits objectness on every anchor
  (target 1 on foreground), BCE-with-logits class on foreground with target one-hot * IoU of the
  matched prediction, and, when ``use_l1``, L1 between the raw regression and its encoded target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_LOG_EPS = 1e-8


def box_iou_cxcywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``[len(a), len(b)]`` of (cx, cy, w, h) boxes."""
    tl = torch.maximum(a[:, None, :2] - a[:, None, 2:] / 2, b[None, :, :2] - b[None, :, 2:] / 2)
    br = torch.minimum(a[:, None, :2] + a[:, None, 2:] / 2, b[None, :, :2] + b[None, :, 2:] / 2)
    inter = (br - tl).clamp(min=0).prod(-1)
    union = a[:, 2:].prod(-1)[:, None] + b[:, 2:].prod(-1)[None, :] - inter
    return inter / (union + 1e-16)


def iou_loss(pred: torch.Tensor, target: torch.Tensor, loss_type: str = "iou") -> torch.Tensor:
    """Element-wise IoU loss of matched (cx, cy, w, h) rows: ``1 - IoU^2`` ("iou", upstream's
    default) or ``1 - GIoU`` ("giou")."""
    p_tl, p_br = pred[:, :2] - pred[:, 2:] / 2, pred[:, :2] + pred[:, 2:] / 2
    t_tl, t_br = target[:, :2] - target[:, 2:] / 2, target[:, :2] + target[:, 2:] / 2
    inter = (torch.minimum(p_br, t_br) - torch.maximum(p_tl, t_tl)).clamp(min=0).prod(-1)
    union = pred[:, 2:].prod(-1) + target[:, 2:].prod(-1) - inter
    iou = inter / (union + 1e-16)
    if loss_type == "iou":
        return 1 - iou ** 2
    if loss_type == "giou":
        enclose = (torch.maximum(p_br, t_br) - torch.minimum(p_tl, t_tl)).prod(-1)
        giou = iou - (enclose - union) / enclose.clamp(min=1e-16)
        return 1 - giou.clamp(min=-1.0, max=1.0)
    raise ValueError(f"iou loss type must be 'iou' or 'giou', got {loss_type!r}")


class YoloxLoss:
    """``loss(outputs, targets) -> (total, {"iou", "obj", "cls", "l1"})``.

    ``outputs``: the dict of ``YOLOX(x, train_outputs=True)``. ``targets``: ``[B, max_labels, 5]``
    rows (class, cx, cy, w, h) in input pixels; rows with a non-positive width or height are
    padding. The "iou" term is reported already multiplied by ``reg_weight`` (as upstream logs
    it), so the terms sum to the total.
    """

    def __init__(self, num_classes: int, use_l1: bool = False, reg_weight: float = 5.0,
                 center_radius: float = 2.5, in_box_candidates: bool = True, iou_type: str = "iou",
                 candidate_k: int = 10):
        if iou_type not in ("iou", "giou"):
            raise ValueError(f"iou_type must be 'iou' or 'giou', got {iou_type!r}")
        self.num_classes = int(num_classes)
        self.use_l1 = bool(use_l1)
        self.reg_weight = float(reg_weight)
        self.center_radius = float(center_radius)
        self.in_box_candidates = bool(in_box_candidates)
        self.iou_type = iou_type
        self.candidate_k = int(candidate_k)

    # -- assignment -------------------------------------------------------------------------
    def geometry(self, gt: torch.Tensor, grids: torch.Tensor, strides: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidate mask [A], geometry relation [G, num candidates]) for GT boxes ``gt`` [G, 4]."""
        centers = (grids + 0.5) * strides[:, None]  # [A, 2]
        offset = (centers[None] - gt[:, None, :2]).abs()  # [G, A, 2]
        in_center = (offset < self.center_radius * strides[None, :, None]).all(-1)
        if not self.in_box_candidates:
            candidates = in_center.any(0)
            return candidates, in_center[:, candidates]
        in_box = (offset < gt[:, None, 2:] / 2).all(-1)
        candidates = (in_box | in_center).any(0)
        return candidates, (in_box & in_center)[:, candidates]

    @torch.no_grad()
    def assign(self, gt: torch.Tensor, gt_classes: torch.Tensor, boxes: torch.Tensor, obj: torch.Tensor,
               cls: torch.Tensor, grids: torch.Tensor, strides: torch.Tensor):
        """SimOTA for one image. -> (fg mask [A], matched GT index per fg anchor, IoU of each fg
        anchor's prediction with its GT). All float32."""
        candidates, relation = self.geometry(gt, grids, strides)
        fg = torch.zeros_like(candidates)
        if not bool(candidates.any()):
            empty = gt.new_zeros(0)
            return fg, empty.long(), empty
        ious = box_iou_cxcywh(gt, boxes[candidates])  # [G, N]
        scores = (cls[candidates].sigmoid() * obj[candidates, None].sigmoid()).sqrt()  # [N, C]
        onehot = F.one_hot(gt_classes.long(), self.num_classes).to(scores.dtype)  # [G, C]
        num_gt, num_cand = ious.shape
        cls_cost = F.binary_cross_entropy(scores[None].expand(num_gt, -1, -1),
                                          onehot[:, None].expand(-1, num_cand, -1), reduction="none").sum(-1)
        cost = cls_cost + 3.0 * -torch.log(ious + _LOG_EPS) + 1e6 * (~relation).to(ious.dtype)

        top_ious = ious.topk(min(self.candidate_k, num_cand), dim=1).values
        dynamic_k = top_ious.sum(1).int().clamp(min=1)  # int() truncates, as upstream
        order = cost.argsort(dim=1, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(num_cand, device=cost.device).expand(num_gt, -1))
        matching = ranks < dynamic_k[:, None]  # [G, N]: each GT's k cheapest candidates
        shared = matching.sum(0) > 1
        if bool(shared.any()):
            cheapest = cost[:, shared].argmin(0)
            matching[:, shared] = False
            matching[cheapest, shared.nonzero()[:, 0]] = True
        taken = matching.any(0)
        matched_gt = matching[:, taken].float().argmax(0)
        fg[candidates.nonzero()[:, 0][taken]] = True
        return fg, matched_gt, ious[:, taken].gather(0, matched_gt[None])[0]

    # -- loss ---------------------------------------------------------------------------------
    def __call__(self, outputs: dict, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        boxes = outputs["boxes"].float()
        obj = outputs["obj"].float()
        cls = outputs["cls"].float()
        grids, strides = outputs["grids"].float(), outputs["strides"].float()
        targets = targets.to(device=boxes.device, dtype=torch.float32)
        batch, num_anchors = obj.shape
        if not bool(torch.isfinite(obj).all() & torch.isfinite(cls).all()):
            # A diverged model: SimOTA's BCE would raise on NaN scores; a NaN total lets the
            # engine stop with its one-line "the loss became nan" error instead.
            nan = (obj.sum() + cls.sum()) * float("nan")
            return nan, {name: nan.detach() for name in ("iou", "obj", "cls", "l1")}
        valid = (targets[..., 3] > 0) & (targets[..., 4] > 0)

        obj_target = torch.zeros_like(obj)
        fg_masks, reg_targets, cls_targets, l1_targets = [], [], [], []
        for b in range(batch):
            gt = targets[b, valid[b]]
            fg = torch.zeros(num_anchors, dtype=torch.bool, device=boxes.device)
            if len(gt):
                with torch.autocast(device_type=boxes.device.type, enabled=False):
                    fg, matched, pred_ious = self.assign(gt[:, 1:5], gt[:, 0], boxes[b].detach(),
                                                         obj[b].detach(), cls[b].detach(), grids, strides)
                matched_boxes = gt[matched, 1:5]
                reg_targets.append(matched_boxes)
                cls_targets.append(F.one_hot(gt[matched, 0].long(), self.num_classes).float()
                                   * pred_ious[:, None])
                if self.use_l1:
                    s = strides[fg][:, None]
                    l1_targets.append(torch.cat([matched_boxes[:, :2] / s - grids[fg],
                                                 torch.log(matched_boxes[:, 2:] / s + _LOG_EPS)], 1))
            fg_masks.append(fg)
            obj_target[b] = fg.float()
        fg_mask = torch.stack(fg_masks)
        num_fg = max(int(fg_mask.sum()), 1)

        # Keeps every head branch in the graph (DDP) when a term is empty; from the raw outputs,
        # which stay finite where an exp() of a diverged box would not (inf * 0 = nan).
        zero = outputs["reg"].float().sum() * 0.0 + cls.sum() * 0.0
        if reg_targets:
            reg_target = torch.cat(reg_targets)
            loss_iou = iou_loss(boxes[fg_mask], reg_target, self.iou_type).sum() / num_fg
            loss_cls = F.binary_cross_entropy_with_logits(
                cls[fg_mask], torch.cat(cls_targets), reduction="sum") / num_fg
        else:
            loss_iou, loss_cls = zero, zero
        loss_obj = F.binary_cross_entropy_with_logits(obj, obj_target, reduction="sum") / num_fg
        if self.use_l1 and l1_targets:
            loss_l1 = F.l1_loss(outputs["reg"].float()[fg_mask], torch.cat(l1_targets), reduction="sum") / num_fg
        else:
            loss_l1 = zero
        loss_iou = self.reg_weight * loss_iou
        total = loss_iou + loss_obj + loss_cls + loss_l1
        return total, {"iou": loss_iou.detach(), "obj": loss_obj.detach(), "cls": loss_cls.detach(),
                       "l1": loss_l1.detach()}
