"""KPR training losses (BPBReID's GiLt loss + body part attention loss, as KPR trains them).

Upstream defaults (torchreid fork ``default_config``: ``loss.part_based.weights``), used here:

* identity cross-entropy with label smoothing 0.1 on the holistic embeddings' logits:
  ``globl``, ``foreg`` and ``conct`` (weight 1 each; ``backg`` and ``parts`` 0);
* batch-hard triplet loss, margin 0.3, on the K part embeddings (``parts``, weight 1) compared with
  a visibility-masked part distance (:func:`masked_part_distance_torch`, the torch twin of the
  tracker's, here by default on upstream's raw-Euclidean scale); holistic triplets (``globl``/``foreg``/``conct`` ``tr``) are 0
  by default and, when enabled, use the same distance on the single embedding (no visibility);
* part-prediction loss: pixel-wise cross-entropy (label smoothing 0.1, upstream
  ``BodyPartAttentionLoss``) of the pixel-to-part logits against integer parsing labels, weight 0.35.

Triplet distance (``triplet_distance``): ``euclidean`` (default, upstream's training scale: raw part
embeddings, per-part Euclidean distance, visibility-weighted mean over mutually visible parts) or
``tracker`` (the tracker's L2-normalised, halved [0, 1] distance; with margin 0.3 it barely trains a
random-init model, see docs/train_reid.md). Pairs without a mutually visible part are left out of the
mining (upstream gives them no valid distance either); visibility is read without gradient.
"""
from __future__ import annotations

import copy
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEFAULT_WEIGHTS", "KPRLoss", "identity_loss", "masked_part_distance_torch", "batch_hard_triplet_loss",
           "part_prediction_loss"]

# Upstream loss.part_based.weights (id = identity CE, tr = triplet, ce = pixel-wise part prediction).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "globl": {"id": 1.0, "tr": 0.0},
    "foreg": {"id": 1.0, "tr": 0.0},
    "backg": {"id": 0.0, "tr": 0.0},
    "conct": {"id": 1.0, "tr": 0.0},
    "parts": {"id": 0.0, "tr": 1.0},
    "pixls": {"ce": 0.35},
}


def masked_part_distance_torch(a_feats: torch.Tensor, a_vis: torch.Tensor | None, b_feats: torch.Tensor,
                               b_vis: torch.Tensor | None, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of ``tracker.part_distance.part_distance`` (differentiable in the features).

    a_feats [A, P, D], b_feats [B, P, D]; visibility [A, P] / [B, P] bool or float (None = all visible).
    Every part vector is L2-normalised; per-part Euclidean distance weighted by sqrt(vis_a * vis_b)
    (= AND for binary visibility); weighted mean over parts, halved, clipped to [0, 1]; 1 where no part
    is mutually visible. Parts with non-finite values count as invisible (as in the numpy code).
    ``normalize=False``: upstream BPBReID's training scale instead: raw (not normalised) per-part
    Euclidean distances, visibility-weighted mean over parts, not halved nor clipped (pairs without a
    common part read 0 and must be masked with ``has_common_part``).
    Returns (distance [A, B], has_common_part [A, B] bool).
    """
    def prepare(feats, vis):
        feats = feats.float()
        weights = torch.ones(feats.shape[:2], device=feats.device) if vis is None else vis.to(feats.device).float()
        if weights.shape != feats.shape[:2]:
            raise ValueError(f"visibility shape {tuple(weights.shape)} does not match features {tuple(feats.shape[:2])}")
        finite = torch.isfinite(feats).all(dim=-1) & torch.isfinite(weights)
        feats = torch.where(finite[..., None], feats, torch.zeros((), device=feats.device))
        weights = torch.where(finite, weights, torch.zeros((), device=feats.device))
        unit = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12) if normalize else feats
        return unit.transpose(0, 1), weights.clamp_min(0.0).sqrt().T  # [P, N, D], [P, N]

    unit_a, w_a = prepare(a_feats, a_vis)
    unit_b, w_b = prepare(b_feats, b_vis)
    if unit_a.shape[0] != unit_b.shape[0] or unit_a.shape[2] != unit_b.shape[2]:
        raise ValueError(f"part layouts differ: {tuple(a_feats.shape[1:])} vs {tuple(b_feats.shape[1:])}")
    sq_a = (unit_a * unit_a).sum(-1)  # [P, A]
    sq_b = (unit_b * unit_b).sum(-1)
    sq = sq_a[:, :, None] + sq_b[:, None, :] - 2.0 * unit_a @ unit_b.transpose(1, 2)  # [P, A, B]
    # sqrt with a finite gradient at 0 (identical vectors, e.g. an anchor with itself).
    positive = sq > 1e-12
    dist = torch.where(positive, sq.clamp_min(1e-12).sqrt(), torch.zeros((), device=sq.device))
    weight = w_a[:, :, None] * w_b[:, None, :]
    total = weight.sum(0)
    has_common = total > 0
    if not normalize:
        mean = (dist * weight).sum(0) / total.clamp_min(1e-12)
        return torch.where(has_common, mean, torch.zeros((), device=mean.device)), has_common
    mean = (dist * weight).sum(0) / (2.0 * total.clamp_min(1e-12))
    distance = torch.where(has_common, mean, torch.ones((), device=mean.device)).clamp(0.0, 1.0)
    return distance, has_common


def batch_hard_triplet_loss(distance: torch.Tensor, pids: torch.Tensor, margin: float = 0.3,
                            valid: torch.Tensor | None = None) -> torch.Tensor:
    """Batch-hard triplet loss on a [N, N] distance matrix: mean over anchors of
    max(0, hardest_positive - hardest_negative + margin). ``valid`` [N, N] bool: pairs that may be
    mined (e.g. sharing a visible part). Anchors without a valid positive (self excluded) or negative
    are left out; a batch without any gives 0 (with a gradient path)."""
    n = distance.shape[0]
    same = pids[:, None] == pids[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=distance.device)
    ok = torch.ones_like(same) if valid is None else valid.bool()
    pos_mask = same & ~eye & ok
    neg_mask = ~same & ok
    hardest_pos = torch.where(pos_mask, distance, torch.full_like(distance, -float("inf"))).amax(dim=1)
    hardest_neg = torch.where(neg_mask, distance, torch.full_like(distance, float("inf"))).amin(dim=1)
    anchors = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    if not anchors.any():
        return distance.sum() * 0.0
    return F.relu(hardest_pos[anchors] - hardest_neg[anchors] + margin).mean()


def identity_loss(logits: torch.Tensor, pids: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy with label smoothing (targets (1 - eps) * onehot + eps / C, as torchreid's
    ``CrossEntropyLoss(label_smooth=True)``). logits [N, C] or [N, K, C] (averaged over the K)."""
    if logits.dim() == 3:
        n, k, c = logits.shape
        return F.cross_entropy(logits.reshape(n * k, c), pids.repeat_interleave(k), label_smoothing=label_smoothing)
    return F.cross_entropy(logits, pids, label_smoothing=label_smoothing)


def part_prediction_loss(pixel_logits: torch.Tensor, part_labels: torch.Tensor, label_smoothing: float = 0.1,
                         ignore_index: int = -100) -> torch.Tensor:
    """Pixel-wise cross-entropy of the pixel-to-part logits [N, 1+K, Hf, Wf] against integer parsing
    labels [N, H, W] (0 = background, 1..K = parts, ``ignore_index`` = unlabelled). Labels at another
    resolution are resized to the logits' size by nearest neighbour."""
    labels = part_labels.long()
    if labels.shape[-2:] != pixel_logits.shape[-2:]:
        labels = F.interpolate(labels[:, None].float(), size=pixel_logits.shape[-2:], mode="nearest")[:, 0].long()
    return F.cross_entropy(pixel_logits, labels.to(pixel_logits.device), label_smoothing=label_smoothing,
                           ignore_index=ignore_index)


def _merged_weights(weights: Mapping | None) -> dict[str, dict[str, float]]:
    merged = copy.deepcopy(DEFAULT_WEIGHTS)
    for name, terms in (weights or {}).items():
        if name not in merged:
            raise ValueError(f"unknown loss weight group {name!r} (known: {', '.join(merged)})")
        for term, value in dict(terms).items():
            if term not in merged[name]:
                raise ValueError(f"unknown loss term {name}.{term} (known: {', '.join(merged[name])})")
            merged[name][term] = float(value)
    return merged


class KPRLoss(nn.Module):
    """Total KPR training loss.

    ``KPRLoss(num_classes)(outputs, pids, part_labels) -> (total, {term: value})``: ``outputs`` a
    ``TrainOutputs``; ``pids`` [N] identity indices in [0, num_classes); ``part_labels`` [N, H, W]
    integer parsing labels or None (then the pixel term is skipped). Terms are named
    ``<group>_<id|tr>`` and ``pixls_ce``, before weighting; only terms with a non-zero weight are
    computed. ``weights`` overrides ``DEFAULT_WEIGHTS`` per group/term.
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.1, triplet_margin: float = 0.3,
                 weights: Mapping | None = None, part_label_smoothing: float = 0.1,
                 use_visibility: bool = True, triplet_distance: str = "euclidean"):
        super().__init__()
        if triplet_distance not in ("euclidean", "tracker"):
            raise ValueError(f"triplet_distance must be 'euclidean' or 'tracker', got {triplet_distance!r}")
        self.triplet_distance = triplet_distance
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.triplet_margin = float(triplet_margin)
        self.part_label_smoothing = float(part_label_smoothing)
        self.use_visibility = bool(use_visibility)
        self.weights = _merged_weights(weights)

    def forward(self, outputs, pids: torch.Tensor, part_labels: torch.Tensor | None = None):
        terms: dict[str, torch.Tensor] = {}
        pids = pids.long()
        for group in ("globl", "foreg", "backg", "conct", "parts"):
            if self.weights[group]["id"]:
                logits = getattr(outputs, f"{group}_logits")
                if logits is None:
                    raise ValueError("identity loss needs identity logits: build the model with num_classes > 0")
                if logits.shape[-1] != self.num_classes:
                    raise ValueError(f"{group} logits have {logits.shape[-1]} classes, loss expects {self.num_classes}")
                terms[f"{group}_id"] = identity_loss(logits, pids, self.label_smoothing)
            if self.weights[group]["tr"]:
                if group == "parts":
                    feats = outputs.parts
                    vis = outputs.visibility[:, 1:].detach() if self.use_visibility else None
                else:
                    feats, vis = getattr(outputs, group)[:, None], None
                distance, common = masked_part_distance_torch(feats, vis, feats, vis,
                                                              normalize=self.triplet_distance == "tracker")
                terms[f"{group}_tr"] = batch_hard_triplet_loss(distance, pids, self.triplet_margin, common)
        if self.weights["pixls"]["ce"] and part_labels is not None:
            terms["pixls_ce"] = part_prediction_loss(outputs.pixel_logits, part_labels, self.part_label_smoothing)
        total = sum(self._weight(name) * value for name, value in terms.items())
        if not terms:
            total = outputs.pixel_logits.sum() * 0.0
        return total, {name: value.detach() for name, value in terms.items()}

    def _weight(self, name: str) -> float:
        group, term = name.rsplit("_", 1)
        return self.weights[group][term]
