"""The YOLOX network (CSPDarknet + PAFPN + decoupled head), written for kprtrack.

Module and attribute names follow the official Megvii-BaseDetection/YOLOX code exactly, so an
official checkpoint's ``model`` state dict (``backbone.backbone.stem.conv.conv.weight``,
``head.cls_preds.0.weight``, ...) loads with ``strict=True``.

The head returns the *raw* per-anchor rows ``[B, A, 5 + C]`` = (dx, dy, log w, log h,
sigmoid(obj), sigmoid(cls)...) like the official ONNX exports (``decode_in_inference=False``),
so the PyTorch and ONNX Runtime paths share one grid/stride decode (yolox_processing.py).
``model(x, train_outputs=True)`` gives what the training loss needs instead (:meth:`YOLOXHead.forward_train`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

STRIDES = (8, 16, 32)
BN_EPS = 1e-3  # every official YOLOX experiment sets BatchNorm eps to 1e-3


@dataclass(frozen=True)
class YoloxSize:
    depth: float
    width: float
    depthwise: bool
    input_size: tuple[int, int]  # (height, width) the official model is evaluated at

    @property
    def base_channels(self) -> int:
        return int(self.width * 64)

    @property
    def base_depth(self) -> int:
        return max(round(self.depth * 3), 1)


MODEL_SIZES: dict[str, YoloxSize] = {
    "nano": YoloxSize(0.33, 0.25, True, (416, 416)),
    "tiny": YoloxSize(0.33, 0.375, False, (416, 416)),
    "s": YoloxSize(0.33, 0.50, False, (640, 640)),
    "m": YoloxSize(0.67, 0.75, False, (640, 640)),
    "l": YoloxSize(1.0, 1.0, False, (640, 640)),
    "x": YoloxSize(1.33, 1.25, False, (640, 640)),
}


class BaseConv(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> SiLU, 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, ksize: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, ksize, stride, (ksize - 1) // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise conv then pointwise conv (nano)."""

    def __init__(self, in_channels: int, out_channels: int, ksize: int, stride: int = 1):
        super().__init__()
        self.dconv = BaseConv(in_channels, in_channels, ksize, stride, groups=in_channels)
        self.pconv = BaseConv(in_channels, out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def _conv(depthwise: bool):
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, shortcut: bool, depthwise: bool):
        super().__init__()
        self.conv1 = BaseConv(in_channels, out_channels, 1, 1)  # expansion 1.0 inside CSPLayer
        self.conv2 = _conv(depthwise)(out_channels, out_channels, 3, 1)
        self.use_add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, n: int, shortcut: bool = True,
                 depthwise: bool = False):
        super().__init__()
        hidden = int(out_channels * 0.5)
        self.conv1 = BaseConv(in_channels, hidden, 1, 1)
        self.conv2 = BaseConv(in_channels, hidden, 1, 1)
        self.conv3 = BaseConv(2 * hidden, out_channels, 1, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, depthwise) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_1, x_2 = self.conv1(x), self.conv2(x)  # upstream's order of execution
        return self.conv3(torch.cat((self.m(x_1), x_2), dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_sizes=(5, 9, 13)):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes)
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth: 2x2 pixel blocks become channels (order as upstream: TL, BL, TR, BR)."""

    def __init__(self, in_channels: int, out_channels: int, ksize: int = 3):
        super().__init__()
        self.conv = BaseConv(in_channels * 4, out_channels, ksize, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2],
                                    x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, size: YoloxSize):
        super().__init__()
        c, n, dw = size.base_channels, size.base_depth, size.depthwise
        conv = _conv(dw)
        self.stem = Focus(3, c, ksize=3)
        self.dark2 = nn.Sequential(conv(c, c * 2, 3, 2), CSPLayer(c * 2, c * 2, n, depthwise=dw))
        self.dark3 = nn.Sequential(conv(c * 2, c * 4, 3, 2), CSPLayer(c * 4, c * 4, n * 3, depthwise=dw))
        self.dark4 = nn.Sequential(conv(c * 4, c * 8, 3, 2), CSPLayer(c * 8, c * 8, n * 3, depthwise=dw))
        self.dark5 = nn.Sequential(conv(c * 8, c * 16, 3, 2), SPPBottleneck(c * 16, c * 16),
                                   CSPLayer(c * 16, c * 16, n, shortcut=False, depthwise=dw))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        dark3 = self.dark3(x)
        dark4 = self.dark4(dark3)
        return dark3, dark4, self.dark5(dark4)


class YOLOPAFPN(nn.Module):
    def __init__(self, size: YoloxSize):
        super().__init__()
        w, dw = size.width, size.depthwise
        c0, c1, c2 = int(256 * w), int(512 * w), int(1024 * w)
        n = round(3 * size.depth)
        conv = _conv(dw)
        self.backbone = CSPDarknet(size)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c2, c1, 1, 1)
        self.C3_p4 = CSPLayer(2 * c1, c1, n, False, depthwise=dw)
        self.reduce_conv1 = BaseConv(c1, c0, 1, 1)
        self.C3_p3 = CSPLayer(2 * c0, c0, n, False, depthwise=dw)
        self.bu_conv2 = conv(c0, c0, 3, 2)
        self.C3_n3 = CSPLayer(2 * c0, c1, n, False, depthwise=dw)
        self.bu_conv1 = conv(c1, c1, 3, 2)
        self.C3_n4 = CSPLayer(2 * c1, c2, n, False, depthwise=dw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


class YOLOXHead(nn.Module):
    def __init__(self, num_classes: int, size: YoloxSize):
        super().__init__()
        self.num_classes = num_classes
        hidden = int(256 * size.width)
        conv = _conv(size.depthwise)
        self.stems = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.obj_preds = nn.ModuleList()
        for in_channels in (256, 512, 1024):
            self.stems.append(BaseConv(int(in_channels * size.width), hidden, 1, 1))
            self.cls_convs.append(nn.Sequential(conv(hidden, hidden, 3, 1), conv(hidden, hidden, 3, 1)))
            self.reg_convs.append(nn.Sequential(conv(hidden, hidden, 3, 1), conv(hidden, hidden, 3, 1)))
            self.cls_preds.append(nn.Conv2d(hidden, num_classes, 1))
            self.reg_preds.append(nn.Conv2d(hidden, 4, 1))
            self.obj_preds.append(nn.Conv2d(hidden, 1, 1))

    def _level(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reg, obj logit, cls logits) maps of level ``k``."""
        x = self.stems[k](x)
        cls_out = self.cls_preds[k](self.cls_convs[k](x))  # upstream's order of execution
        reg_feat = self.reg_convs[k](x)
        return self.reg_preds[k](reg_feat), self.obj_preds[k](reg_feat), cls_out

    def forward(self, features) -> torch.Tensor:
        outputs = []
        for k, x in enumerate(features):
            reg, obj, cls_out = self._level(k, x)
            out = torch.cat([reg, obj.sigmoid(), cls_out.sigmoid()], 1)
            outputs.append(out.flatten(start_dim=2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)

    def forward_train(self, features) -> dict[str, torch.Tensor]:
        """Per-anchor training outputs, anchors in the inference order (level, row, column):

        - ``boxes`` [B, A, 4]: (cx, cy, w, h) in input pixels, ``(reg_xy + grid) * stride`` and
          ``exp(reg_wh) * stride`` as upstream's training path (``get_output_and_grid``);
        - ``obj`` [B, A] and ``cls`` [B, A, C]: logits (no sigmoid);
        - ``reg`` [B, A, 4]: the undecoded regression (the L1 term's prediction);
        - ``grids`` [A, 2] (x, y cell indices) and ``strides`` [A], float32 (as ``boxes``).
        """
        boxes, objs, clss, regs, grids, strides = [], [], [], [], [], []
        for k, x in enumerate(features):
            reg, obj, cls_out = self._level(k, x)
            h, w = reg.shape[-2:]
            stride = STRIDES[k]
            reg = reg.flatten(start_dim=2).transpose(1, 2)  # [B, h*w, 4]
            ys, xs = torch.meshgrid(torch.arange(h, device=reg.device), torch.arange(w, device=reg.device),
                                    indexing="ij")
            grid = torch.stack((xs, ys), -1).reshape(-1, 2).float()
            wide = reg.float()  # decoded in float32: exp() of a float16 log-size overflows early
            boxes.append(torch.cat([(wide[..., :2] + grid) * stride, torch.exp(wide[..., 2:4]) * stride], -1))
            regs.append(reg)
            objs.append(obj.flatten(start_dim=1))
            clss.append(cls_out.flatten(start_dim=2).transpose(1, 2))
            grids.append(grid)
            strides.append(torch.full((h * w,), float(stride), device=reg.device))
        return {"boxes": torch.cat(boxes, 1), "obj": torch.cat(objs, 1), "cls": torch.cat(clss, 1),
                "reg": torch.cat(regs, 1), "grids": torch.cat(grids), "strides": torch.cat(strides)}


class YOLOX(nn.Module):
    """Input ``[B, 3, H, W]`` (H, W multiples of 32); output raw rows ``[B, A, 5 + C]``, or with
    ``train_outputs=True`` the training outputs of :meth:`YOLOXHead.forward_train` (a keyword of
    ``forward`` so that a DDP-wrapped model is called through its own ``forward``)."""

    def __init__(self, size: str = "s", num_classes: int = 80):
        super().__init__()
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown YOLOX size {size!r}; known: {', '.join(MODEL_SIZES)}")
        self.size_name = size
        self.backbone = YOLOPAFPN(MODEL_SIZES[size])
        self.head = YOLOXHead(num_classes, MODEL_SIZES[size])

    def forward(self, x: torch.Tensor, train_outputs: bool = False):
        if train_outputs:
            return self.head.forward_train(self.backbone(x))
        return self.head(self.backbone(x))
