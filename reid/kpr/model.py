"""The KPR network (inference path) with upstream module names.

Output per crop: ``embeddings`` [N, 1+K, D] (index 0 = foreground/global, 1..K = parts) and
``visibility`` [N, 1+K], exactly what the tracker's part distance consumes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from kprtrack.reid.kpr.heads import (BNClassifier, LinearBNReLU, MultiStageFusion, PixelToPartClassifier,
                                     masked_average_pool, weighted_average_pool)
from kprtrack.reid.kpr.tokenizer import PromptableSwin

# test_embeddings names upstream accepts for the global slot and the part slots.
GLOBAL_EMBEDDINGS = ("bn_foreg", "foreg", "bn_globl", "globl", "bn_backg", "backg")
PART_EMBEDDINGS = ("parts", "bn_parts")


@dataclass(frozen=True)
class KPRArch:
    """Everything that fixes the network's shapes (and how its outputs are read)."""

    backbone: str = "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k"
    height: int = 256
    width: int = 128
    parts_num: int = 8  # K body parts (+1 background in the pixel classifier)
    prompt_parts_num: int = 8  # prompt channels for the person's own keypoints (cck8 -> 8)
    use_negative_keypoints: bool = True
    masks_prompting: bool = True
    no_background_token: bool = False
    dim_reduce_output: int = 512
    num_classes: int = 0  # training identities (classifier rows); only matters for loading
    shared_parts_id_classifier: bool = False
    sie_tokens: int = 0
    test_embeddings: tuple[str, str] = ("bn_foreg", "parts")
    binary_visibility: bool = True
    semantic_weight: float = 0.2  # SOLIDER backbones only (upstream model.solider.semantic_weight)

    @property
    def prompt_channels(self) -> int:
        """Channels of the prompt tensor given to ``forward``: [background, negative?, parts]."""
        return self.prompt_parts_num + 1 + (1 if self.use_negative_keypoints else 0)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainOutputs:
    """Everything the training losses read (``KPR.forward_train``); names follow upstream's
    ``globl``/``foreg``/``backg``/``conct``/``parts`` embeddings. N crops, K parts, D = dim_reduce_output,
    C = num_classes, Hf x Wf = feature map size."""

    globl: torch.Tensor  # [N, D] global average pooled, after its dim-reduce head
    foreg: torch.Tensor  # [N, D] foreground-masked pooling
    backg: torch.Tensor  # [N, D] background-masked pooling
    parts: torch.Tensor  # [N, K, D] part-weighted pooling (shared dim-reduce head)
    conct: torch.Tensor  # [N, K*D] the K parts concatenated
    bn_globl: torch.Tensor  # BN-neck outputs of the above (same shapes)
    bn_foreg: torch.Tensor
    bn_backg: torch.Tensor
    bn_parts: torch.Tensor
    bn_conct: torch.Tensor
    globl_logits: torch.Tensor | None  # [N, C] identity logits from each BNClassifier (None when num_classes=0)
    foreg_logits: torch.Tensor | None
    backg_logits: torch.Tensor | None
    conct_logits: torch.Tensor | None
    parts_logits: torch.Tensor | None  # [N, K, C]
    pixel_logits: torch.Tensor  # [N, 1+K, Hf, Wf] pixel-to-part logits before softmax (0 = background)
    visibility: torch.Tensor  # [N, 1+K] as the inference path computes it (index 0 = foreground)

    def as_dict(self) -> dict[str, torch.Tensor | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class KPR(nn.Module):
    def __init__(self, arch: KPRArch):
        super().__init__()
        self.arch = arch
        tokenizer_channels = arch.prompt_channels - (1 if arch.no_background_token else 0)
        self.backbone_appearance_feature_extractor = PromptableSwin(
            arch.backbone, (arch.height, arch.width), tokenizer_channels, arch.prompt_parts_num,
            arch.use_negative_keypoints, arch.masks_prompting, arch.no_background_token, arch.sie_tokens,
            arch.semantic_weight)
        stage_dims = self.backbone_appearance_feature_extractor.stage_dims
        depth = stage_dims[-1]
        self.msf = MultiStageFusion(sum(stage_dims), depth)
        d, k = arch.dim_reduce_output, arch.parts_num
        self.global_after_pooling_dim_reduce = LinearBNReLU(depth, d)
        self.foreground_after_pooling_dim_reduce = LinearBNReLU(depth, d)
        self.background_after_pooling_dim_reduce = LinearBNReLU(depth, d)
        self.parts_after_pooling_dim_reduce = LinearBNReLU(depth, d)
        self.pixel_classifier = PixelToPartClassifier(depth, k)
        c = arch.num_classes
        self.global_identity_classifier = BNClassifier(d, c)
        self.background_identity_classifier = BNClassifier(d, c)
        self.foreground_identity_classifier = BNClassifier(d, c)
        self.concat_parts_identity_classifier = BNClassifier(k * d, c)
        if arch.shared_parts_id_classifier:
            self.parts_identity_classifier = BNClassifier(d, c)
        else:
            self.parts_identity_classifier = nn.ModuleList([BNClassifier(d, c) for _ in range(k)])
        self.eval()

    def forward(self, images: torch.Tensor, prompt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """images [N, 3, H, W] normalised; prompt [N, prompt_channels, H, W] or None (no prompt).

        Returns embeddings [N, 1+K, D] and visibility [N, 1+K] (float, 0/1 when binary).
        """
        features, _, probabilities = self._features(images, prompt)
        background, parts = probabilities[:, :1], probabilities[:, 1:]
        foreground = parts.max(dim=1, keepdim=True)[0]
        vis = self._visibility(probabilities)
        first = self._global_embedding(features, foreground, background)
        part_feats = self.parts_after_pooling_dim_reduce(weighted_average_pool(features, parts))  # [N, K, D]
        if self.arch.test_embeddings[1] == "bn_parts":
            part_feats = self._bn_parts(part_feats)
        return torch.cat([first.unsqueeze(1), part_feats], dim=1), vis

    def forward_train(self, images: torch.Tensor, prompt: torch.Tensor | None = None) -> TrainOutputs:
        """The training outputs (upstream KPR/BPBReID train mode): every embedding, its BN-neck output,
        identity logits (when the model has classifiers) and the pixel-to-part logits. Put the model in
        ``train()`` mode first for training (BatchNorm batch statistics); this method does not change the mode."""
        features, pixel_logits, probabilities = self._features(images, prompt)
        background, parts = probabilities[:, :1], probabilities[:, 1:]
        foreground = parts.max(dim=1, keepdim=True)[0]
        globl = self.global_after_pooling_dim_reduce(features.mean(dim=(-2, -1)))
        foreg = self.foreground_after_pooling_dim_reduce(masked_average_pool(features, foreground)[:, 0])
        backg = self.background_after_pooling_dim_reduce(masked_average_pool(features, background)[:, 0])
        part_feats = self.parts_after_pooling_dim_reduce(weighted_average_pool(features, parts))  # [N, K, D]
        conct = part_feats.flatten(1)
        bn_globl = self.global_identity_classifier(globl)
        bn_foreg = self.foreground_identity_classifier(foreg)
        bn_backg = self.background_identity_classifier(backg)
        bn_conct = self.concat_parts_identity_classifier(conct)
        bn_parts = self._bn_parts(part_feats)
        logits: dict[str, torch.Tensor | None] = dict.fromkeys(("globl", "foreg", "backg", "conct", "parts"))
        if self.arch.num_classes > 0:
            logits["globl"] = self.global_identity_classifier.logits(bn_globl)
            logits["foreg"] = self.foreground_identity_classifier.logits(bn_foreg)
            logits["backg"] = self.background_identity_classifier.logits(bn_backg)
            logits["conct"] = self.concat_parts_identity_classifier.logits(bn_conct)
            if self.arch.shared_parts_id_classifier:
                logits["parts"] = self.parts_identity_classifier.logits(bn_parts)
            else:
                logits["parts"] = torch.stack([head.logits(bn_parts[:, i])
                                               for i, head in enumerate(self.parts_identity_classifier)], dim=1)
        return TrainOutputs(
            globl=globl, foreg=foreg, backg=backg, parts=part_feats, conct=conct,
            bn_globl=bn_globl, bn_foreg=bn_foreg, bn_backg=bn_backg, bn_parts=bn_parts, bn_conct=bn_conct,
            globl_logits=logits["globl"], foreg_logits=logits["foreg"], backg_logits=logits["backg"],
            conct_logits=logits["conct"], parts_logits=logits["parts"],
            pixel_logits=pixel_logits, visibility=self._visibility(probabilities).detach())

    def _features(self, images, prompt):
        """-> fused feature map [N, C, Hf, Wf], pixel-to-part logits and their softmax [N, 1+K, Hf, Wf]."""
        features = self.msf(self.backbone_appearance_feature_extractor(images, prompt))
        logits = self.pixel_classifier(features)
        return features, logits, F.softmax(logits, dim=1)

    def _visibility(self, probabilities: torch.Tensor) -> torch.Tensor:
        """[N, 1+K]: index 0 foreground, 1..K parts (binary: the part wins at least one pixel)."""
        if self.arch.binary_visibility:
            winner = F.one_hot(probabilities.argmax(dim=1), probabilities.shape[1]).permute(0, 3, 1, 2)
            visibility = winner.amax(dim=(2, 3)).to(probabilities.dtype)
        else:
            visibility = probabilities.amax(dim=(2, 3))
        # Upstream: foreground visibility is the max over all K+1 maps (incl. background).
        return torch.cat([visibility.amax(dim=1, keepdim=True), visibility[:, 1:]], dim=1)

    def _global_embedding(self, features, foreground, background) -> torch.Tensor:
        name = self.arch.test_embeddings[0]
        kind = name.removeprefix("bn_")
        if kind == "globl":
            pooled = features.mean(dim=(-2, -1))
            reduce, bn = self.global_after_pooling_dim_reduce, self.global_identity_classifier
        elif kind == "foreg":
            pooled = masked_average_pool(features, foreground)[:, 0]
            reduce, bn = self.foreground_after_pooling_dim_reduce, self.foreground_identity_classifier
        else:
            pooled = masked_average_pool(features, background)[:, 0]
            reduce, bn = self.background_after_pooling_dim_reduce, self.background_identity_classifier
        embedding = reduce(pooled)
        return bn(embedding) if name.startswith("bn_") else embedding

    def _bn_parts(self, parts: torch.Tensor) -> torch.Tensor:
        if self.arch.shared_parts_id_classifier:
            n, k, d = parts.shape
            return self.parts_identity_classifier(parts.flatten(0, 1)).view(n, k, d)
        return torch.stack([head(parts[:, i]) for i, head in enumerate(self.parts_identity_classifier)], dim=1)
