"""KPR heads: multi-stage fusion, pixel-to-part classifier, part pooling, dimension reduction, BN-neck.

Layer names follow upstream ``torchreid/models/kpr.py`` (``layers.0`` conv/linear, ``layers.1`` BN).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Module):
    """1x1 conv + BN + ReLU (upstream ``BeforePoolingDimReduceLayer``)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(in_dim, out_dim, 1), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True))
        nn.init.kaiming_normal_(self.layers[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.layers[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MultiStageFusion(nn.Module):
    """Every stage resized to the first stage's resolution, concatenated, fused by 1x1 conv."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.dim_reduce = ConvBNReLU(in_dim, out_dim)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        size = stages[0].shape[-2:]
        resized = [stages[0]] + [F.interpolate(s, size=size, mode="bilinear", align_corners=True) for s in stages[1:]]
        return self.dim_reduce(torch.cat(resized, dim=1))


class LinearBNReLU(nn.Module):
    """Linear + BN + ReLU on pooled vectors (upstream ``AfterPoolingDimReduceLayer``)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(inplace=True))
        nn.init.normal_(self.layers[0].weight, 0, 0.01)
        nn.init.zeros_(self.layers[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # [N, K, C]: parts share the layer
            n, k, _ = x.shape
            return self.layers(x.flatten(0, 1)).view(n, k, -1)
        return self.layers(x)


class PixelToPartClassifier(nn.Module):
    """BN + 1x1 conv to K+1 logits per pixel (index 0 = background)."""

    def __init__(self, dim: int, parts_num: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(dim)
        self.classifier = nn.Conv2d(dim, parts_num + 1, 1)
        nn.init.normal_(self.classifier.weight, 0, 0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bn(x))


class BNClassifier(nn.Module):
    """BN-neck + identity classifier; at test time only the BN-normalised feature is used."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        if num_classes > 0:  # training-only identity classifier; kept so checkpoints load strictly
            self.classifier = nn.Linear(dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)

    def logits(self, bn_features: torch.Tensor) -> torch.Tensor:
        """Identity logits [N, num_classes] of BN-neck features (upstream: the classifier reads the BN output)."""
        if not hasattr(self, "classifier"):
            raise RuntimeError("this BNClassifier has no identity classifier: build KPR with num_classes > 0")
        return self.classifier(bn_features)


def weighted_average_pool(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Global weighted average pooling: features [N, C, H, W], masks [N, M, H, W] -> [N, M, C]."""
    weighted = torch.einsum("nmhw,nchw->nmc", masks, features)
    return weighted / masks.sum(dim=(-2, -1)).clamp(min=1e-6).unsqueeze(-1)


def masked_average_pool(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask-weighted features averaged over ALL pixels ([N, M, C]): upstream's foreground and
    background heads use plain average pooling of the masked map, not a weighted average."""
    return torch.einsum("nmhw,nchw->nmc", masks, features) / (features.shape[-2] * features.shape[-1])
