"""Promptable Swin: the keypoint prompt tokenizer in front of a Swin backbone.

The prompt heatmaps get their own patch embedding whose tokens are added to the image patch
tokens before the first stage (KPR's ``embed_heatmaps_patches`` strategy). Attribute names match
upstream's ``PromptableTransformerBackbone`` and its timm / SOLIDER wrappers so checkpoints load
strictly; note that upstream registers the image patch embedding twice (``patch_embed`` and
``model.patch_embed``), so its state dict holds both names. The SOLIDER wrapper has no ``norm``
and embeds the prompt with SOLIDER's patch embedding (``projection``/``norm``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kprtrack.reid.kpr.solider import SOLIDER_SPECS, SoliderPatchEmbed, SoliderSwin
from kprtrack.reid.kpr.swin import PatchEmbed, SwinTransformer, swin_spec


class PromptableSwin(nn.Module):
    def __init__(self, backbone: str, img_size: tuple[int, int], prompt_channels: int, prompt_parts_num: int,
                 use_negative_keypoints: bool = True, masks_prompting: bool = True,
                 no_background_token: bool = False, sie_tokens: int = 0, semantic_weight: float = 0.2):
        super().__init__()
        arch = backbone.split(".")[0]
        solider = arch in SOLIDER_SPECS
        if solider:
            self.model = SoliderSwin(SOLIDER_SPECS[arch], semantic_weight)
        else:
            self.model = SwinTransformer(swin_spec(backbone), img_size)
        self.patch_embed = self.model.patch_embed
        embed_dim = self.model.embed_dim
        self.masks_prompting = masks_prompting
        self.no_background_token = no_background_token
        self.prompt_channels = prompt_channels  # channels the tokenizer's conv takes
        embed = SoliderPatchEmbed if solider else PatchEmbed
        self.masks_patch_embed = embed(prompt_channels, embed_dim, self.model.spec.patch_size)
        # Learned part tokens of upstream's other prompting strategy: unused by heatmap prompting
        # but part of every checkpoint.
        tokens = prompt_parts_num + 1 + (1 if use_negative_keypoints else 0)
        self.parts_embed = nn.Parameter(torch.zeros(tokens, 1, embed_dim))
        nn.init.trunc_normal_(self.parts_embed, std=0.02)
        if sie_tokens > 0:  # camera embedding (TransReID SIE) of a model trained with camera ids; unused here
            self.sie_embed = nn.Parameter(torch.zeros(sie_tokens, 1, embed_dim))
        self.stage_dims = self.model.stage_dims
        if not solider:
            self.norm = nn.LayerNorm(sum(self.stage_dims))  # upstream timm wrapper's (unused with multi-stage fusion)

    def empty_prompt(self, n: int, size: tuple[int, int], device, dtype) -> torch.Tensor:
        """The prompt the model saw in training when no keypoint was given: background channel 1."""
        channels = self.prompt_channels + (1 if self.no_background_token else 0)
        prompt = torch.zeros((n, channels, *size), device=device, dtype=dtype)
        prompt[:, 0] = 1.0
        return prompt

    def forward(self, images: torch.Tensor, prompt: torch.Tensor | None = None) -> list[torch.Tensor]:
        tokens = self.model.patch_embed(images)  # [N, h, w, C]
        if self.masks_prompting:
            size = tuple(images.shape[-2:])
            if prompt is None:
                prompt = self.empty_prompt(images.shape[0], size, images.device, tokens.dtype)
            elif tuple(prompt.shape[-2:]) != size:
                prompt = F.interpolate(prompt, size=size, mode="bilinear", align_corners=True)
            prompt = prompt.to(tokens.dtype)
            if self.no_background_token:
                prompt = prompt[:, 1:]
            tokens = tokens + self.masks_patch_embed(prompt)
        return self.model.forward_tokens(tokens)
