"""Reading official KPR checkpoints (``*.pth.tar`` from upstream torchreid) safely and strictly.

Upstream saves ``{'state_dict', 'epoch', 'rank1', 'mAP', 'config' (a yacs CfgNode), 'optimizer',
'scheduler'}``, sometimes with ``module.`` prefixes (DataParallel). We load with
``weights_only=True``: the yacs node is rebuilt as nested ``OrderedDict`` (no yacs needed, no code
executed); numpy scalars (``rank1``, ``mAP``...) pickled under numpy 1.x or 2.x load through
``kprtrack.weights.torch_load``. The stored config is read, compared with the user's and
never silently applied.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kprtrack.errors import InputError
from kprtrack.weights import torch_load

# Geometry-derived buffers: timm versions differ in whether they are saved; we always recompute them.
DERIVED_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask", "k_bias")


class _ConfigNode:
    """Stand-in for ``yacs.config.CfgNode`` in the restricted unpickler: becomes an OrderedDict."""

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


def _safe_globals() -> list:
    """Besides tensors and numpy data (allowed by ``torch_load`` under numpy 1.x and 2.x names): the yacs config."""
    return [(_ConfigNode, "yacs.config.CfgNode")]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """-> (state dict without ``module.`` prefixes, stored config as nested dicts or {})."""
    payload = torch_load(path, extra_safe_globals=tuple(_safe_globals()))
    if not isinstance(payload, dict):
        raise InputError(f"not a KPR checkpoint: expected a dict, got {type(payload).__name__}", path)
    state = payload.get("state_dict", payload)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("not a KPR checkpoint: no 'state_dict' of tensors", path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    config = payload.get("config") or {}
    return state, _plain(config) if isinstance(config, dict) else {}


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    if isinstance(node, (np.generic, np.ndarray)):
        return node.tolist()
    return node


def lookup(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def checkpoint_settings(state: dict[str, torch.Tensor], config: dict) -> dict[str, Any]:
    """The settings a checkpoint fixes, from its stored config and (where shapes tell) its tensors.

    Keys use kprtrack's config names (``reid.<key>``), so conflicts can be reported as overrides.
    """
    out: dict[str, Any] = {}
    kpr = lambda key: lookup(config, f"model.kpr.{key}")  # noqa: E731
    trans = lambda key: lookup(config, f"model.promptable_trans.{key}")  # noqa: E731
    pairs = {
        "backbone": kpr("backbone"), "parts_num": kpr("masks.parts_num"),
        "parts": kpr("masks.preprocess"), "prompt_parts": kpr("keypoints.prompt_preprocess"),
        "dim": kpr("dim_reduce_output"), "height": lookup(config, "data.height"),
        "width": lookup(config, "data.width"), "mean": lookup(config, "data.norm_mean"),
        "std": lookup(config, "data.norm_std"),
        "use_negative_keypoints": kpr("keypoints.use_negative_keypoints"),
        "masks_prompting": trans("masks_prompting"), "vis_thresh": kpr("keypoints.vis_thresh"),
        # Test-time choices upstream reads from the same config: which embeddings, binary visibility.
        "test_embeddings": kpr("test_embeddings"), "binary_visibility": kpr("testing_binary_visibility_score"),
        "semantic_weight": lookup(config, "model.solider.semantic_weight"),
    }
    out.update({k: v for k, v in pairs.items() if v is not None})
    # Tensor shapes are the ground truth for the architecture.
    if "pixel_classifier.classifier.weight" in state:
        out["parts_num"] = int(state["pixel_classifier.classifier.weight"].shape[0]) - 1
    if "parts_after_pooling_dim_reduce.layers.0.weight" in state:
        out["dim"] = int(state["parts_after_pooling_dim_reduce.layers.0.weight"].shape[0])
    return out


def unsupported_features(config: dict) -> list[str]:
    """Upstream options this implementation does not reproduce (a model using them would be wrong)."""
    problems = []
    expect = {
        "model.kpr.dim_reduce": "after_pooling", "model.kpr.enable_msf": True, "model.kpr.enable_fpn": False,
        "model.kpr.pooling": "gwap", "model.kpr.normalization": "identity",
        "model.kpr.learnable_attention_enabled": True, "model.kpr.test_use_target_segmentation": "none",
        "model.kpr.use_prompt_visibility_score": False,
        "model.promptable_trans.pose_encoding_strategy": "embed_heatmaps_patches",
        "model.promptable_trans.pose_encoding_all_layers": False,
        "model.kpr.keypoints.prompt_masks": "keypoints_gaussian",
        "model.kpr.keypoints.vis_continous": False,
    }
    for key, wanted in expect.items():
        value = lookup(config, key)
        if value is not None and value != wanted:
            problems.append(f"{key}={value!r} (supported: {wanted!r})")
    # Upstream's fusion resizes the later stages to image/scale but never the first one, so only
    # -1 (first stage's size) or the patch size 4 (the same size) make a working model.
    scale = lookup(config, "model.kpr.msf_spatial_scale")
    if scale is not None and scale not in (-1, 4):
        problems.append(f"model.kpr.msf_spatial_scale={scale!r} (supported: -1 or 4, the first stage's resolution)")
    return problems


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load every learned tensor; any missing, unexpected or mis-shaped key is an InputError."""
    state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in DERIVED_BUFFERS}
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and k.rsplit(".", 1)[-1] not in DERIVED_BUFFERS)
    unexpected = sorted(k for k in state if k not in expected)
    shapes = sorted(f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                    for k, v in state.items() if k in expected and v.shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
        raise InputError("checkpoint does not match the KPR model built from the configuration: "
                         + "; ".join(parts), path)
    model.load_state_dict(state, strict=False)  # strictness checked above (derived buffers excluded)
