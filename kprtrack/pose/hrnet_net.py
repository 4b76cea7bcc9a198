"""HRNet (Sun et al., CVPR 2019) for top-down pose, written with the module names of the
original release and mmpose (conv1, bn1, conv2, bn2, layer1, transition1..3, stage2..4,
branches, fuse_layers, final_layer), so their checkpoints load key for key after a prefix change.

timm's HRNet would need torchvision (unavailable on our CPU-only CI), hence this small copy of
the architecture.
"""
from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.1

# Channels per branch of stages 2..4 (stage 1 is four bottlenecks at 64 -> 256).
WIDTHS = {"w32": 32, "w48": 48}
STAGE_MODULES = (1, 4, 3)  # HR modules in stages 2, 3, 4
BLOCKS_PER_BRANCH = 4


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.bn1 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                            nn.BatchNorm2d(cout, momentum=BN_MOMENTUM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _fuse_layer(channels: list[int], i: int, j: int) -> nn.Module | None:
    """Path from branch j to branch i: upsample (j > i), identity (None), or strided convs."""
    if j > i:
        return nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                             nn.BatchNorm2d(channels[i], momentum=BN_MOMENTUM),
                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
    if j == i:
        return None
    steps = []
    for k in range(i - j):
        last = k == i - j - 1
        cout = channels[i] if last else channels[j]
        layers = [_conv3x3(channels[j], cout, 2), nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)]
        if not last:
            layers.append(nn.ReLU(inplace=True))
        steps.append(nn.Sequential(*layers))
    return nn.Sequential(*steps)


class HRModule(nn.Module):
    """Parallel branches of basic blocks, then exchange between all resolutions."""

    def __init__(self, channels: list[int], multiscale_output: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c) for _ in range(BLOCKS_PER_BRANCH)]) for c in channels)
        outputs = len(channels) if multiscale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_layer(channels, i, j) for j in range(len(channels)))
            for i in range(outputs))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            y = xs[i]
            for j, path in enumerate(paths):
                if j != i:
                    y = y + path(xs[j])
            fused.append(self.relu(y))
        return fused


def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    layers: list[nn.Module | None] = []
    for i, cout in enumerate(cur):
        if i < len(pre):
            layers.append(None if pre[i] == cout else nn.Sequential(
                _conv3x3(pre[i], cout), nn.BatchNorm2d(cout, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)))
        else:  # a new, lower resolution branch grown from the lowest existing one
            steps = []
            for k in range(i + 1 - len(pre)):
                cin = pre[-1]
                out = cout if k == i - len(pre) else cin
                steps.append(nn.Sequential(_conv3x3(cin, out, 2),
                                           nn.BatchNorm2d(out, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class PoseHighResolutionNet(nn.Module):
    """HRNet-W32/W48 + 1x1 heatmap head: [N,3,H,W] normalised RGB -> [N,K,H/4,W/4] heatmaps."""

    def __init__(self, arch: str = "w32", num_joints: int = 17):
        super().__init__()
        if arch not in WIDTHS:
            raise ValueError(f"unknown HRNet arch {arch!r}; known: {sorted(WIDTHS)}")
        width = WIDTHS[arch]
        self.arch = arch
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *[Bottleneck(256, 64) for _ in range(3)])
        pre = [256]
        for stage, modules in enumerate(STAGE_MODULES, start=2):
            cur = [width * 2 ** b for b in range(stage)]
            setattr(self, f"transition{stage - 1}", _transition(pre, cur))
            last_stage = stage == 4
            setattr(self, f"stage{stage}", nn.Sequential(*[
                HRModule(cur, multiscale_output=not (last_stage and m == modules - 1))
                for m in range(modules)]))
            pre = cur
        self.final_layer = nn.Conv2d(width, num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in (2, 3, 4):
            transition = getattr(self, f"transition{stage - 1}")
            inputs = []
            for i, layer in enumerate(transition):
                source = xs[i] if i < len(xs) else xs[-1]
                inputs.append(source if layer is None else layer(source))
            xs = getattr(self, f"stage{stage}")(inputs)
        return self.final_layer(xs[0])
