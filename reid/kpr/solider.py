"""SOLIDER's Swin Transformer (mmseg-style), the backbone of KPR_SOL, with its parameter names.

KPR builds ``solider_swin_base_patch4_window7_224`` (SOLIDER weights) and
``imagenet_swin_base_patch4_window7_224`` (same network, ImageNet start) from SOLIDER's code, not
timm's. The network differs from timm's Swin in ways that change the numbers, not just the names:
- windows stay 7x7 on every stage: a feature map smaller than a window is zero-padded up to it
  (padded tokens take part in attention, only the shift regions are masked), and the map is padded
  BEFORE the cyclic shift (timm shifts, then pads);
- patch merging is ``nn.Unfold`` order (channel-major within each 2x2 neighbourhood) and sits at
  the END of a stage;
- each stage's output gets its own LayerNorm (``norm0`` .. ``norm3``) before KPR's fusion;
- semantic-weight modulation: after stage i the tokens passed on are scaled by
  ``softplus(semantic_embed_w[i]([w, 1-w]))`` and shifted by ``semantic_embed_b[i]([w, 1-w])``.
Names follow SOLIDER (``stages.<i>.blocks.<j>.attn.w_msa.qkv``, ``ffn.layers.0.0`` ...) so a
KPR_SOL checkpoint loads strictly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kprtrack.reid.kpr.swin import WindowAttentionV1, _init_weights, _partition, _reverse


@dataclass(frozen=True)
class SoliderSpec:
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 7
    patch_size: int = 4
    mlp_ratio: int = 4


# KPR backbone names (torchreid promptable_solider.solider_models) -> architecture.
SOLIDER_SPECS: dict[str, SoliderSpec] = {
    "solider_swin_base_patch4_window7_224": SoliderSpec(),
    "imagenet_swin_base_patch4_window7_224": SoliderSpec(),
}


class SoliderPatchEmbed(nn.Module):
    """Conv patches, bottom/right zero padding to a multiple of the patch ('corner'), LayerNorm; NHWC out."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 4):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (p - x.shape[-1] % p) % p, 0, (p - x.shape[-2] % p) % p))
        return self.norm(self.projection(x).permute(0, 2, 3, 1))


class ShiftWindowMSA(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, shift: int):
        super().__init__()
        self.window, self.shift = window, shift
        # SOLIDER's WindowMSA is timm's V1 window attention under another name (its saved
        # relative_position_index is the same table, rebuilt here from the window).
        self.w_msa = WindowAttentionV1(dim, num_heads, (window, window))

    def _mask(self, hp: int, wp: int, device) -> torch.Tensor:
        win, shift = self.window, self.shift
        img = torch.zeros((1, hp, wp, 1), device=device)
        region = 0
        for hs in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
            for ws in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
                img[:, hs, ws, :] = region
                region += 1
        windows = _partition(img, (win, win)).squeeze(-1)
        diff = windows.unsqueeze(1) - windows.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC
        _, h, w, _ = x.shape
        win, shift = self.window, self.shift
        x = F.pad(x, (0, 0, 0, (win - w % win) % win, 0, (win - h % win) % win))
        hp, wp = x.shape[1:3]
        mask = None
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = self._mask(hp, wp, x.device)
        out = _reverse(self.w_msa(_partition(x, (win, win)), mask), (win, win), hp, wp)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return out[:, :h, :w, :]


class SoliderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, shift: bool, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftWindowMSA(dim, num_heads, window, window // 2 if shift else 0)
        self.norm2 = nn.LayerNorm(dim)
        # mmcv FFN layout: layers.0 = (Linear, GELU), layers.1 = Linear
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU()),
                                        nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn.layers(self.norm2(x))


class SoliderPatchMerging(nn.Module):
    """2x2 neighbourhoods in ``nn.Unfold`` order (channel-major), LayerNorm(4C), Linear to 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class SoliderStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList([SoliderBlock(dim, num_heads, window, i % 2 == 1, mlp_ratio)
                                     for i in range(depth)])
        self.downsample = SoliderPatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (tokens passed on, this stage's output before merging)."""
        for block in self.blocks:
            x = block(x)
        return (self.downsample(x) if self.downsample is not None else x), x


class SoliderSwin(nn.Module):
    """SOLIDER Swin feature extractor; ``forward_tokens`` returns every stage's normed NCHW map."""

    def __init__(self, spec: SoliderSpec, semantic_weight: float = 0.2):
        super().__init__()
        self.spec = spec
        self.embed_dim = spec.embed_dim
        self.patch_embed = SoliderPatchEmbed(3, spec.embed_dim, spec.patch_size)
        dims = [spec.embed_dim * 2 ** i for i in range(len(spec.depths))]
        self.stage_dims = dims
        self.stages = nn.ModuleList([
            SoliderStage(dims[i], depth, spec.num_heads[i], spec.window_size, spec.mlp_ratio,
                         downsample=i < len(spec.depths) - 1)
            for i, depth in enumerate(spec.depths)])
        for i, dim in enumerate(dims):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.semantic_weight = float(semantic_weight)
        if self.semantic_weight >= 0:  # SOLIDER only builds these for a non-negative weight
            # the tokens leaving stage i have the next stage's width (the last stage keeps its own)
            out_dims = [dims[min(i + 1, len(dims) - 1)] for i in range(len(dims))]
            self.semantic_embed_w = nn.ModuleList([nn.Linear(2, d) for d in out_dims])
            self.semantic_embed_b = nn.ModuleList([nn.Linear(2, d) for d in out_dims])
        self.apply(_init_weights)  # the same truncated-normal Linear init as timm's Swin

    def forward_tokens(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Patch tokens [N, h, w, C] (prompt already added) -> per-stage maps [N, C_i, h_i, w_i]."""
        weights = None
        if self.semantic_weight >= 0:
            w = torch.full((tokens.shape[0], 1), self.semantic_weight, device=tokens.device, dtype=tokens.dtype)
            weights = torch.cat([w, 1 - w], dim=-1)
        outs = []
        for i, stage in enumerate(self.stages):
            tokens, out = stage(tokens)
            if weights is not None:
                scale = F.softplus(self.semantic_embed_w[i](weights))[:, None, None, :]
                tokens = tokens * scale + self.semantic_embed_b[i](weights)[:, None, None, :]
            outs.append(getattr(self, f"norm{i}")(out).permute(0, 3, 1, 2))
        return outs
