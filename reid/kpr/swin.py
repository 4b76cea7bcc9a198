"""Swin Transformer V1/V2 backbones with timm's parameter names.

timm cannot be imported without torchvision (its ``timm.layers`` imports torchvision ops), so the
few pieces KPR needs are written here. Module and parameter names follow timm 0.9/1.0
(``patch_embed.proj``, ``layers.<i>.downsample``, ``layers.<i>.blocks.<j>.attn.qkv`` ...) so the
``backbone_appearance_feature_extractor.model.*`` part of a KPR checkpoint loads strictly.
Index tables and attention masks are derived from the geometry, so they are non-persistent
buffers (as in timm) and never read from a checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SwinSpec:
    """Architecture of one timm Swin variant."""

    version: int  # 1 or 2
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 7
    pretrained_window_sizes: tuple[int, ...] = (0, 0, 0, 0)  # SwinV2 only
    patch_size: int = 4
    mlp_ratio: float = 4.0


# timm model names KPR configs use (the ".tag" suffix after the architecture is ignored).
SWIN_SPECS: dict[str, SwinSpec] = {
    "swinv2_base_window12to16_192to256": SwinSpec(2, window_size=16, pretrained_window_sizes=(12, 12, 12, 6)),
    "swinv2_base_window12to24_192to384": SwinSpec(2, window_size=24, pretrained_window_sizes=(12, 12, 12, 6)),
    "swinv2_base_window8_256": SwinSpec(2, window_size=8),
    "swinv2_base_window16_256": SwinSpec(2, window_size=16),
    "swinv2_base_window12_192": SwinSpec(2, window_size=12),
    "swin_base_patch4_window7_224": SwinSpec(1, window_size=7),
    "swin_base_patch4_window12_384": SwinSpec(1, window_size=12),
    "swin_large_patch4_window12_384": SwinSpec(1, embed_dim=192, num_heads=(6, 12, 24, 48), window_size=12),
    # Tiny variants: not used by published KPR models, handy for fast tests and benchmarks.
    "swin_tiny_patch4_window7_224": SwinSpec(1, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "swinv2_tiny_window8_256": SwinSpec(2, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=8),
}


def swin_spec(name: str) -> SwinSpec:
    arch = name.split(".")[0]
    if arch not in SWIN_SPECS:
        raise KeyError(arch)
    return SWIN_SPECS[arch]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, NHWC output (timm ``PatchEmbed(output_fmt='NHWC')``)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 4, norm: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += window[0] - 1
    rel[:, :, 1] += window[1] - 1
    return rel[:, :, 0] * (2 * window[1] - 1) + rel[:, :, 1]


class WindowAttentionV1(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        return self.proj(_masked_softmax_apply(attn, v, mask).transpose(1, 2).reshape(b, n, c))


class WindowAttentionV2(nn.Module):
    """Scaled cosine attention with a continuous (log-spaced, MLP) position bias."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], pretrained_window: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("relative_coords_table", _relative_coords_table(window, pretrained_window), persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.clamp(self.logit_scale, max=math.log(1.0 / 0.01)).exp()
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        rel_bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = attn + 16 * torch.sigmoid(rel_bias).unsqueeze(0)
        return self.proj(_masked_softmax_apply(attn, v, mask).transpose(1, 2).reshape(b, n, c))


def _relative_coords_table(window: tuple[int, int], pretrained: tuple[int, int]) -> torch.Tensor:
    rh = torch.arange(-(window[0] - 1), window[0], dtype=torch.float32)
    rw = torch.arange(-(window[1] - 1), window[1], dtype=torch.float32)
    table = torch.stack(torch.meshgrid(rh, rw, indexing="ij")).permute(1, 2, 0).contiguous().unsqueeze(0)
    norm = pretrained if pretrained[0] > 0 else window
    # A window of 1 has no relative offsets; max(.., 1) only avoids 0/0 there.
    table[:, :, :, 0] /= max(norm[0] - 1, 1)
    table[:, :, :, 1] /= max(norm[1] - 1, 1)
    table *= 8
    return torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / math.log2(8)


def _masked_softmax_apply(attn: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        windows = mask.shape[0]
        attn = attn.view(-1, windows, *attn.shape[1:]) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, *attn.shape[2:])
    return attn.softmax(dim=-1) @ v


def _partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // window[0], window[0], w // window[1], window[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window[0] * window[1], c)


def _reverse(windows: torch.Tensor, window: tuple[int, int], h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // window[0], w // window[1], window[0], window[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


class SwinBlock(nn.Module):
    """One (shifted) window attention block; V1 is pre-norm, V2 res-post-norm."""

    def __init__(self, version: int, dim: int, resolution: tuple[int, int], num_heads: int, window: int,
                 shift: bool, pretrained_window: int, mlp_ratio: float):
        super().__init__()
        self.version = version
        # Windows never exceed the feature map; no shift along a dimension that fits one window.
        self.window_size = tuple(r if r <= window else window for r in resolution)
        target_shift = window // 2 if shift else 0
        self.shift_size = tuple(0 if r <= w else target_shift for r, w in zip(resolution, self.window_size))
        self.resolution = resolution
        win = self.window_size
        self.norm1 = nn.LayerNorm(dim)
        if version == 1:
            self.attn = WindowAttentionV1(dim, num_heads, win)
        else:
            self.attn = WindowAttentionV2(dim, num_heads, win, (pretrained_window, pretrained_window))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", self._attn_mask(), persistent=False)

    def _attn_mask(self) -> torch.Tensor | None:
        if not any(self.shift_size):
            return None
        win, shift = self.window_size, self.shift_size
        h = math.ceil(self.resolution[0] / win[0]) * win[0]
        w = math.ceil(self.resolution[1] / win[1]) * win[1]
        img_mask = torch.zeros((1, h, w, 1))
        region = 0
        # Same region layout as timm; a zero shift along one axis makes that axis one region.
        for hs in ((0, -win[0]), (-win[0], -shift[0]), (-shift[0], None)):
            for ws in ((0, -win[1]), (-win[1], -shift[1]), (-shift[1], None)):
                img_mask[:, hs[0]:hs[1], ws[0]:ws[1], :] = region
                region += 1
        windows = _partition(img_mask, win).squeeze(-1)
        diff = windows.unsqueeze(1) - windows.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        win, shift = self.window_size, self.shift_size
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        pad_h, pad_w = (win[0] - h % win[0]) % win[0], (win[1] - w % win[1]) % win[1]
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        out = _reverse(self.attn(_partition(x, win), self.attn_mask), win, hp, wp)[:, :h, :w, :]
        if any(shift):
            out = torch.roll(out, shifts=shift, dims=(1, 2))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.version == 1:
            x = x + self._window_attention(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.norm1(self._window_attention(x))
        return x + self.norm2(self.mlp(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token with twice the channels (V1: norm then reduce; V2: reverse)."""

    def __init__(self, version: int, dim: int):
        super().__init__()
        self.version = version
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim if version == 1 else 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        if self.version == 1:
            return self.reduction(self.norm(x))
        return self.norm(self.reduction(x))


class SwinStage(nn.Module):
    def __init__(self, version: int, dim: int, out_dim: int, resolution: tuple[int, int], depth: int,
                 num_heads: int, window: int, pretrained_window: int, mlp_ratio: float, downsample: bool):
        super().__init__()
        self.downsample = PatchMerging(version, dim) if downsample else nn.Identity()
        if downsample:
            resolution = (math.ceil(resolution[0] / 2), math.ceil(resolution[1] / 2))
        self.blocks = nn.Sequential(*[
            SwinBlock(version, out_dim, resolution, num_heads, window, shift=(i % 2 == 1),
                      pretrained_window=pretrained_window, mlp_ratio=mlp_ratio)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class SwinTransformer(nn.Module):
    """timm-compatible Swin feature extractor (no classifier); stages return NHWC maps."""

    def __init__(self, spec: SwinSpec, img_size: tuple[int, int]):
        super().__init__()
        self.spec = spec
        self.embed_dim = spec.embed_dim
        self.patch_embed = PatchEmbed(3, spec.embed_dim, spec.patch_size)
        grid = (img_size[0] // spec.patch_size, img_size[1] // spec.patch_size)
        self.grid_size = grid
        dims = [spec.embed_dim * 2 ** i for i in range(len(spec.depths))]
        self.stage_dims = dims
        stages, resolution, in_dim = [], grid, dims[0]
        for i, depth in enumerate(spec.depths):
            stages.append(SwinStage(spec.version, in_dim, dims[i], resolution, depth, spec.num_heads[i],
                                    spec.window_size, spec.pretrained_window_sizes[i], spec.mlp_ratio,
                                    downsample=i > 0))
            if i > 0:
                resolution = (math.ceil(resolution[0] / 2), math.ceil(resolution[1] / 2))
            in_dim = dims[i]
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1])  # timm's final norm; present in checkpoints, unused by KPR's fusion
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        outs = []
        for stage in self.layers:
            x = stage(x)
            outs.append(x)
        return outs

    def forward_tokens(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Patch tokens [N, h, w, C] (prompt already added) -> per-stage maps [N, C_i, h_i, w_i]."""
        outs = []
        for stage in self.layers:
            tokens = stage(tokens)
            outs.append(tokens.permute(0, 3, 1, 2))
        return outs


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
