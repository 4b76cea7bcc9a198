"""Seeded random weights keyed by parameter name, shared by the reference tools and the tests.

A reference tool sets these values in the OFFICIAL model; a test sets the same values in
kprtrack's model by regenerating them from the same names, so no weight file is committed.
"""
from __future__ import annotations

import zlib

# index-derived buffers: rebuilt from the geometry on both sides, never seeded
DERIVED = ("relative_position_index", "relative_coords_table", "attn_mask", "k_bias")


def seeded_value(key: str, shape: tuple[int, ...]):
    """Deterministic weights from the parameter's name: both sides regenerate them independently."""
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    noise = torch.randn(shape, generator=g)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return noise.abs() * 0.2 + 0.5
    if leaf == "running_mean":
        return noise * 0.1
    if len(shape) == 1 and leaf == "weight":  # LayerNorm / BatchNorm scale
        return 1.0 + 0.1 * noise
    return noise * 0.05


def seeded_state(state: dict) -> dict:
    """Seeded values for every floating tensor of a state dict except geometry-derived buffers.

    Upstream registers the image patch embedding twice (``patch_embed`` and ``model.patch_embed``,
    one module): both names get the values of the second, whichever order a load applies them in.
    """
    alias = ("feature_extractor.patch_embed.", "feature_extractor.model.patch_embed.")
    return {k: seeded_value(k.replace(*alias), tuple(v.shape)) for k, v in state.items()
            if v.is_floating_point() and k.rsplit(".", 1)[-1] not in DERIVED}


def fan_in_scaled(values: dict, input_range: dict[str, float] | None = None) -> dict:
    """Convolution weights rescaled to a 1/sqrt(fan-in) spread (divided further by the input's
    range for the convolutions named in ``input_range``), so that a deep random network keeps
    features that vary from pixel to pixel without exploding or collapsing to its biases."""
    out = dict(values)
    for key, value in values.items():
        if value.dim() == 4:
            fan_in = value.shape[1] * value.shape[2] * value.shape[3]
            out[key] = value / 0.05 / fan_in ** 0.5 / (input_range or {}).get(key, 1.0)
    return out
