"""Backbone start weights of KPR training: a registry, and an explicit upstream -> kprtrack key mapping.

``model.backbone_weights`` (configs/train_reid.yaml) is a registry name, a path or a URL, resolved like
every other weight file (``kprtrack.weights.resolve_weights``: cache, ``$KPRTRACK_WEIGHTS_MIRROR``,
sha256 where known). Three file layouts are read:

* ``timm``: timm's Swin / SwinV2 state dict (Hugging Face hub files). reid/kpr/swin.py uses timm's
  names, so the mapping is the identity except for the older (Microsoft / timm < 0.9) layout where
  ``layers.<i>.downsample`` ends stage i instead of starting stage i+1 (timm's ``checkpoint_filter_fn``
  moves it; so do we, detected by a ``layers.0.downsample`` key).
* ``solider``: SOLIDER's own Swin (mmseg names, reid/kpr/solider.py uses them): a ``teacher`` /
  ``state_dict`` / ``model`` wrapper, a ``backbone.`` and a ``module.`` prefix are removed, as
  SOLIDER's ``init_weights`` does.
* ``swin_official`` into a SOLIDER-code backbone (KPR's ``imagenet_swin_base_patch4_window7_224``):
  Microsoft's Swin names converted by SOLIDER's ``swin_converter`` (``SWIN_TO_SOLIDER`` below), which
  also reorders the patch-merging weights into ``nn.Unfold`` order.

Buffers derived from the geometry (``relative_position_index``, ``relative_coords_table``,
``attn_mask``) are dropped; the classifier (``head.*``) is dropped and reported as unexpected.
A Swin V1 ``relative_position_bias_table`` of another window size is resized bicubically, as timm's
and SOLIDER's loaders do (reported as reshaped); any other shape difference is an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from kprtrack.errors import InputError
from kprtrack.weights import WeightSpec, resolve_weights, torch_load

_HF = "https://huggingface.co/timm/{name}/resolve/main/pytorch_model.bin"  # safetensors is not a dependency

BACKBONE_WEIGHTS: dict[str, WeightSpec] = {
    # KPR_IN (configs/recipe/in.yaml): timm's SwinV2-B, ImageNet-22k then 1k at 192 (window 12),
    # fine-tuned at 256 (window 16). sha256: not confirmed here (no network), left None.
    "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k": WeightSpec(
        url=_HF.format(name="swinv2_base_window12to16_192to256.ms_in22k_ft_in1k"),
        filename="swinv2_base_window12to16_192to256.ms_in22k_ft_in1k.bin",
        meta={"layout": "timm"}),
    # timm's Swin-B (V1) ImageNet-22k -> 1k, for model.backbone=swin_base_patch4_window7_224[.tag].
    "swin_base_patch4_window7_224.ms_in22k_ft_in1k": WeightSpec(
        url=_HF.format(name="swin_base_patch4_window7_224.ms_in22k_ft_in1k"),
        filename="swin_base_patch4_window7_224.ms_in22k_ft_in1k.bin",
        meta={"layout": "timm"}),
    # KPR_IN on Market (upstream imagenet_swin): SOLIDER's Swin code started from Microsoft's
    # ImageNet-22k Swin-B, the file KPR names SOLIDER/swin_base_patch4_window7_224_22k.pth
    # (promptable_solider.imagenet_swin, convert_weights=True). sha256 not confirmed.
    "imagenet_swin_base_patch4_window7_224": WeightSpec(
        url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
            "swin_base_patch4_window7_224_22k.pth",
        meta={"layout": "swin_official"}),
    # KPR_SOL (configs/recipe/sol.yaml): SOLIDER's Swin-B. KPR loads it as SOLIDER/swin_base_reid.pth
    # (promptable_solider.solider_swin, convert_weights=False). SOLIDER publishes its weights on Google
    # Drive / Baidu from its README (no direct link, hence manual_download); which release file KPR
    # renamed to swin_base_reid.pth (presumably SOLIDER's swin_base teacher, ``swin_base_tea.pth``) is
    # NOT confirmed; nor is a checksum.
    "solider_swin_base_patch4_window7_224": WeightSpec(
        url="https://github.com/tinyvision/SOLIDER#models", filename="swin_base_reid.pth",
        meta={"layout": "solider", "manual_download": True}),
}

# Derived from the window geometry: non-persistent here, rebuilt, never read from a file.
DERIVED_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")
# Wrappers a file may hold its state dict under, tried in this order (SOLIDER: teacher first).
WRAPPERS = ("teacher", "state_dict", "model")
PREFIXES = ("backbone.", "module.")

# Microsoft Swin names -> SOLIDER (mmseg) names: SOLIDER's swin_converter as data.
# (pattern, replacement, value transform or None); first match wins; applied to ``layers.*`` keys,
# then ``layers`` -> ``stages``.
SWIN_TO_SOLIDER: tuple[tuple[str, str, str | None], ...] = (
    (r"\.attn\.", ".attn.w_msa.", None),
    (r"\.mlp\.fc1\.", ".ffn.layers.0.0.", None),
    (r"\.mlp\.fc2\.", ".ffn.layers.1.", None),
    (r"(\.downsample\.reduction\.)", r"\1", "unfold_reduction"),
    (r"(\.downsample\.norm\.)", r"\1", "unfold_norm"),
)
SWIN_TO_SOLIDER_PATCH_EMBED = (r"^patch_embed\.proj\.", "patch_embed.projection.")

# Backbone keys a file may lack without an error: timm's final norm (unused by KPR's fusion),
# SOLIDER's per-stage norms and semantic embeddings (absent from ImageNet files; SOLIDER inits them).
OPTIONAL = re.compile(r"^(norm\.|norm\d\.|semantic_embed_[wb]\.)")


def _unfold_reduction(x: torch.Tensor) -> torch.Tensor:
    out_ch, in_ch = x.shape
    return x.reshape(out_ch, 4, in_ch // 4)[:, [0, 2, 1, 3], :].transpose(1, 2).reshape(out_ch, in_ch)


def _unfold_norm(x: torch.Tensor) -> torch.Tensor:
    in_ch = x.shape[0]
    return x.reshape(4, in_ch // 4)[[0, 2, 1, 3], :].transpose(0, 1).reshape(in_ch)


VALUE_TRANSFORMS = {"unfold_reduction": _unfold_reduction, "unfold_norm": _unfold_norm}


@dataclass
class LoadReport:
    path: Path
    layout: str
    loaded: list[str] = field(default_factory=list)  # backbone keys set from the file
    missing: list[str] = field(default_factory=list)  # KPR keys not in the file (tokenizer, heads, optional)
    unexpected: list[str] = field(default_factory=list)  # file keys unused (after mapping), head.* included
    reshaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, file shape, our shape)
    dropped: list[str] = field(default_factory=list)  # derived buffers in the file

    def summary(self) -> str:
        return (f"backbone weights {self.path} ({self.layout}): {len(self.loaded)} tensors loaded, "
                f"{len(self.reshaped)} resized, {len(self.missing)} of KPR not in the file, "
                f"{len(self.unexpected)} unused from the file")


def _unwrap(payload, path: Path) -> dict[str, torch.Tensor]:
    state = payload
    for key in WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("not a state dict (no tensors under teacher/state_dict/model)", path)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for prefix in PREFIXES:
        if any(k.startswith(prefix) for k in state):
            # SOLIDER keeps only backbone.* keys (the rest is its projection heads)
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def map_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm Swin/SwinV2 names -> reid/kpr/swin.py names (identity but for the old downsample place)."""
    if not any(k.startswith("layers.0.downsample.") for k in state):
        return dict(state)
    return {re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", k): v
            for k, v in state.items()}


def map_swin_official_to_solider(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k.startswith("layers."):
            for pattern, repl, transform in SWIN_TO_SOLIDER:
                if re.search(pattern, k):
                    k = re.sub(pattern, repl, k, count=1)
                    v = VALUE_TRANSFORMS[transform](v) if transform else v
                    break
            k = "stages." + k[len("layers."):]
        else:
            k = re.sub(SWIN_TO_SOLIDER_PATCH_EMBED[0], SWIN_TO_SOLIDER_PATCH_EMBED[1], k)
        out[k] = v
    return out


def _bicubic_table(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    l1, heads = table.shape
    s1 = int(round(l1 ** 0.5))
    src = table.t().reshape(1, heads, s1, s1).float()
    out = F.interpolate(src, size=grid, mode="bicubic", align_corners=False)
    return out.reshape(heads, grid[0] * grid[1]).t().contiguous().to(table.dtype)


def _window_grid(backbone, key: str) -> tuple[int, int]:
    """(2*wh-1, 2*ww-1) of the window of a V1 bias table key (timm block ``window_size`` or SOLIDER ``window``)."""
    owner = key[: -len(".relative_position_bias_table")]
    owner = owner[: -len(".w_msa")] if owner.endswith(".w_msa") else owner[: -len(".attn")]
    module = backbone.get_submodule(owner)
    if hasattr(module, "window_size"):  # timm SwinBlock (key ...blocks.j.attn.*)
        wh, ww = module.window_size
    else:  # SOLIDER ShiftWindowMSA (key ...blocks.j.attn.w_msa.*)
        wh = ww = module.window
    return 2 * wh - 1, 2 * ww - 1


def load_backbone_weights(model, source: str, download: bool = True, registry: dict | None = None) -> LoadReport:
    """Backbone weights (registry name, path or URL) into ``model`` (a KPR) -> LoadReport.

    Raises InputError naming the key and the file when a required backbone tensor is missing or
    has another shape without a resizing rule.
    """
    from kprtrack.reid.kpr.solider import SoliderSwin

    registry = BACKBONE_WEIGHTS if registry is None else registry
    spec = registry.get(str(source))
    manual = bool(spec is not None and spec.meta.get("manual_download"))
    try:
        path = resolve_weights(str(source), registry, download=download and not manual)
    except InputError as err:
        if manual:
            raise InputError(f"{err}; {spec.url} links the file (manual download; save it as "
                             f"{spec.file_name} in the cache folder)") from None
        raise
    extractor = model.backbone_appearance_feature_extractor
    backbone = extractor.model
    solider = isinstance(backbone, SoliderSwin)
    state = _unwrap(torch_load(path), path)
    dropped = sorted(k for k in state if any(b in k for b in DERIVED_BUFFERS))
    state = {k: v for k, v in state.items() if k not in set(dropped)}
    if solider:
        layout = "swin_official" if any(k.startswith("layers.") for k in state) else "solider"
        if layout == "swin_official":
            state = map_swin_official_to_solider(state)
    else:
        layout = "timm"
        state = map_timm(state)
    own = backbone.state_dict()
    report = LoadReport(path=Path(path), layout=layout, dropped=dropped)
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        if value.shape != own[key].shape:
            if key.endswith("relative_position_bias_table"):
                grid = _window_grid(backbone, key)
                l1, heads = value.shape
                s1 = int(round(l1 ** 0.5))
                if heads == own[key].shape[1] and s1 * s1 == l1:
                    usable[key] = _bicubic_table(value, grid)
                    report.reshaped.append((key, tuple(value.shape), tuple(own[key].shape)))
                    continue
            raise InputError(f"backbone weight {key}: shape {tuple(value.shape)} in the file, "
                             f"{tuple(own[key].shape)} in model {type(backbone).__name__} (no resizing rule); "
                             "does model.backbone match the weights?", path)
        usable[key] = value
    absent = [k for k in own if k not in usable]
    required = [k for k in absent if not OPTIONAL.match(k)]
    if required:
        shown = ", ".join(required[:5]) + (f" (+{len(required) - 5} more)" if len(required) > 5 else "")
        raise InputError(f"backbone weights lack {len(required)} required tensor(s) of the "
                         f"{type(backbone).__name__} backbone ({layout} layout): {shown}", path)
    backbone.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    prefix = "backbone_appearance_feature_extractor."
    alias = {prefix + "model." + k for k in usable} | {prefix + k for k in usable if k.startswith("patch_embed.")}
    report.missing = [k for k in model.state_dict() if k not in alias]
    print(f"train-reid: {report.summary()}")
    return report
