"""``KeypointMSELoss`` as mmpose 1.x computes it (``mmpose/models/losses/heatmap_loss.py``).

loss = loss_weight * mean over (batch, joint, pixel) of weight[b, k] * (output - target)^2.
mmpose 1.x has no 0.5 factor (0.x's JointsMSELoss had ``0.5 * mse`` per joint, averaged over
joints, and multiplied output and target by the weight before squaring); with 0/1 weights 1.x is
exactly twice 0.x. The mean runs over every joint, weighted or not, as in 1.x.
"""
from __future__ import annotations

import torch
from torch import nn


class KeypointMSELoss(nn.Module):
    def __init__(self, use_target_weight: bool = True, loss_weight: float = 1.0):
        super().__init__()
        self.use_target_weight = bool(use_target_weight)
        self.loss_weight = float(loss_weight)

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                target_weights: torch.Tensor | None = None) -> torch.Tensor:
        """output, target: [B, K, H, W]; target_weights: [B, K] (or [B, K, H, W])."""
        output = output.float()
        target = target.to(output.dtype)
        squared = (output - target) ** 2
        if self.use_target_weight and target_weights is not None:
            if target_weights.shape != target.shape[:target_weights.ndim]:
                raise ValueError(f"target_weights {tuple(target_weights.shape)} do not fit the "
                                 f"targets {tuple(target.shape)}")
            mask = target_weights.to(output.dtype)
            mask = mask.view(tuple(mask.shape) + (1,) * (target.ndim - mask.ndim))
            squared = squared * mask
        return squared.mean() * self.loss_weight
