"""Training checkpoints in upstream torchreid's layout, loadable strictly by ``reid=kpr``.

A file holds ``{"state_dict", "epoch", "optimizer", "scheduler", "config"}`` (+ ``extra`` keys such as
``rank1``/``mAP``); ``config`` is a plain nested dict with the upstream keys that
``kprtrack.reid.kpr.checkpoint.checkpoint_settings`` and ``unsupported_features`` read, so
``KPRReID(weights=<file>, ...)`` rebuilds the same architecture and loads every tensor strictly.
Files are written atomically (a killed run leaves the previous checkpoint intact).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from kprtrack.errors import InputError
from kprtrack.io import atomic_open
from kprtrack.reid.body_parts import PART_SCHEMES
from kprtrack.reid.crops import IMAGENET_MEAN, IMAGENET_STD
from kprtrack.reid.kpr.checkpoint import _plain, _safe_globals
from kprtrack.reid.kpr.model import KPR, KPRArch
from kprtrack.reid.prompts import PROMPT_GROUPS
from kprtrack.weights import torch_load

__all__ = ["tokenizer_parameters", "freeze_tokenizer", "torchreid_config", "save_torchreid_checkpoint",
           "load_training_checkpoint"]

_PART_SCHEME_BY_K = {len(parts): name for name, parts in PART_SCHEMES.items()}


def tokenizer_parameters(model: KPR) -> dict[str, torch.nn.Parameter]:
    """The keypoint prompt tokenizer's parameters: the prompt patch embedding (``masks_patch_embed``)
    and the learned prompt part tokens (``parts_embed``, unused by heatmap prompting)."""
    extractor = model.backbone_appearance_feature_extractor
    prefix = "backbone_appearance_feature_extractor."
    params = {f"{prefix}masks_patch_embed.{n}": p for n, p in extractor.masks_patch_embed.named_parameters()}
    params[f"{prefix}parts_embed"] = extractor.parts_embed
    return params


def freeze_tokenizer(model: KPR, frozen: bool) -> list[str]:
    """Freeze (``frozen=True``) or unfreeze the keypoint prompt tokenizer (KPR_SOL: frozen for the first
    20 epochs). Frozen parameters get ``requires_grad=False`` and their ``.grad`` cleared, so SGD
    (momentum and weight decay included) leaves them unchanged. Returns the parameter names."""
    params = tokenizer_parameters(model)
    for p in params.values():
        p.requires_grad_(not frozen)
        if frozen:
            p.grad = None
    return sorted(params)


def _name_for(groups: Mapping, count: int, given: str | None, what: str) -> str:
    if given is not None:
        return given
    for name, value in groups.items():
        if len(value) == count:
            return name
    raise ValueError(f"no known {what} scheme with {count} parts: pass it explicitly")


def torchreid_config(arch: KPRArch, parts: str | None = None, prompt_parts: str | None = None,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     vis_thresh: float = 0.3, sources: Sequence[str] = ()) -> dict[str, Any]:
    """The upstream-layout config (nested dicts) describing ``arch`` and its input settings."""
    parts = parts or _PART_SCHEME_BY_K.get(arch.parts_num)
    if parts is None:
        raise ValueError(f"no known part scheme with {arch.parts_num} parts: pass parts=")
    prompt_parts = _name_for(PROMPT_GROUPS, arch.prompt_parts_num, prompt_parts, "prompt")
    return {
        "model": {
            "name": "kpr",
            "kpr": {
                "backbone": arch.backbone, "dim_reduce": "after_pooling", "dim_reduce_output": arch.dim_reduce_output,
                "enable_msf": True, "enable_fpn": False, "pooling": "gwap", "normalization": "identity",
                "learnable_attention_enabled": True, "test_use_target_segmentation": "none",
                "use_prompt_visibility_score": False, "msf_spatial_scale": -1,
                "shared_parts_id_classifier": arch.shared_parts_id_classifier,
                "test_embeddings": list(arch.test_embeddings),
                "testing_binary_visibility_score": arch.binary_visibility,
                "masks": {"parts_num": arch.parts_num, "preprocess": parts, "prompt_parts_num": arch.prompt_parts_num},
                "keypoints": {"prompt_masks": "keypoints_gaussian", "prompt_preprocess": prompt_parts,
                              "use_negative_keypoints": arch.use_negative_keypoints, "vis_thresh": float(vis_thresh),
                              "vis_continous": False},
            },
            "promptable_trans": {"masks_prompting": arch.masks_prompting,
                                 "no_background_token": arch.no_background_token,
                                 "pose_encoding_strategy": "embed_heatmaps_patches",
                                 "pose_encoding_all_layers": False},
            "solider": {"semantic_weight": float(arch.semantic_weight)},
        },
        "data": {"height": arch.height, "width": arch.width, "norm_mean": [float(v) for v in mean],
                 "norm_std": [float(v) for v in std], "sources": list(sources)},
    }


def _deep_update(base: dict, more: Mapping) -> dict:
    for key, value in more.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def save_torchreid_checkpoint(path: str | Path, model: KPR, arch: KPRArch | None = None, epoch: int = 0,
                              optimizer_state: Mapping | None = None, scheduler_state: Mapping | None = None,
                              extra: Mapping | None = None, *, parts: str | None = None,
                              prompt_parts: str | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                              std: Sequence[float] = IMAGENET_STD, vis_thresh: float = 0.3) -> Path:
    """Write ``model`` as an upstream torchreid checkpoint, atomically.

    ``arch`` defaults to ``model.arch``; ``extra``: more top-level keys (``rank1``, ``mAP``, ...) and,
    under ``"config"``, keys merged into the generated config. Only tensors, plain containers and
    numbers are stored, so the file loads with ``weights_only=True``.
    """
    arch = arch or model.arch
    extra = dict(extra or {})
    config = torchreid_config(arch, parts, prompt_parts, mean, std, vis_thresh)
    _deep_update(config, extra.pop("config", None) or {})
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in model.state_dict().items())
    payload = {"state_dict": state, "epoch": int(epoch), "optimizer": optimizer_state,
               "scheduler": scheduler_state, "config": config, **extra}
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint for resuming: ``{"state_dict" (no 'module.' prefixes), "config", "epoch",
    "optimizer", "scheduler", ...}`` (safe ``weights_only`` loading, as for inference)."""
    payload = torch_load(path, extra_safe_globals=tuple(_safe_globals()))
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise InputError("not a training checkpoint: no 'state_dict'", path)
    state = {k.removeprefix("module."): v for k, v in payload["state_dict"].items()}
    config = _plain(payload.get("config") or {})
    out = {k: v for k, v in payload.items() if k not in ("state_dict", "config")}
    out.update(state_dict=state, config=config)
    out.setdefault("epoch", 0)
    out.setdefault("optimizer", None)
    out.setdefault("scheduler", None)
    return out
