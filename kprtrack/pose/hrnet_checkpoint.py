"""HRNet weights: the official mmpose registry and key adapters for three checkpoint formats.

Formats (detected from the keys, reported in ``LoadReport``):
- ``mmpose1``: mmpose 1.x, ``{"meta", "state_dict": {"backbone.*", "head.final_layer.*"}}``;
- ``mmpose0``: mmpose 0.x, ``backbone.*`` and ``keypoint_head.final_layer.*``;
- ``original``: the HRNet authors' release (deep-high-resolution-net.pytorch), bare keys and
  ``final_layer.*`` (sometimes under ``module.`` from DataParallel).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from kprtrack.errors import InputError
from kprtrack.weights import WeightSpec, torch_load

log = logging.getLogger(__name__)

_MMPOSE = "https://download.openmmlab.com/mmpose"
# OpenMMLab publishes no full checksum; the 8 hex digits in each file name are the start of the
# file's sha256, which kprtrack.weights checks as a prefix.
HRNET_WEIGHTS: dict[str, WeightSpec] = {
    "hrnet_w32_coco_256x192": WeightSpec(
        f"{_MMPOSE}/v1/body_2d_keypoint/topdown_heatmap/coco/"
        "td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth",
        sha256="81c58e40",
        meta={"arch": "w32", "input_size": (256, 192), "layout": "coco"}),
    "hrnet_w32_coco_384x288": WeightSpec(
        f"{_MMPOSE}/v1/body_2d_keypoint/topdown_heatmap/coco/"
        "td-hm_hrnet-w32_8xb64-210e_coco-384x288-ca5956af_20220909.pth",
        sha256="ca5956af",
        meta={"arch": "w32", "input_size": (384, 288), "layout": "coco"}),
    "hrnet_w48_coco_256x192": WeightSpec(
        f"{_MMPOSE}/v1/body_2d_keypoint/topdown_heatmap/coco/"
        "td-hm_hrnet-w48_8xb32-210e_coco-256x192-0e67c616_20220913.pth",
        sha256="0e67c616",
        meta={"arch": "w48", "input_size": (256, 192), "layout": "coco"}),
    "hrnet_w48_coco_384x288": WeightSpec(
        f"{_MMPOSE}/v1/body_2d_keypoint/topdown_heatmap/coco/"
        "td-hm_hrnet-w48_8xb32-210e_coco-384x288-c161b7de_20220915.pth",
        sha256="c161b7de",
        meta={"arch": "w48", "input_size": (384, 288), "layout": "coco"}),
    # PoseTrack18 fine-tunes (COCO pre-training): the mmpose 1.x configs
    # td-hm_hrnet-w{32,48}_8xb64-20e_posetrack18-* point at these 0.x-format checkpoints.
    "hrnet_w32_posetrack18_256x192": WeightSpec(
        f"{_MMPOSE}/top_down/hrnet/hrnet_w32_posetrack18_256x192-1ee951c4_20201028.pth",
        sha256="1ee951c4",
        meta={"arch": "w32", "input_size": (256, 192), "layout": "posetrack"}),
    "hrnet_w32_posetrack18_384x288": WeightSpec(
        f"{_MMPOSE}/top_down/hrnet/hrnet_w32_posetrack18_384x288-806f00a3_20211130.pth",
        sha256="806f00a3",
        meta={"arch": "w32", "input_size": (384, 288), "layout": "posetrack"}),
    "hrnet_w48_posetrack18_256x192": WeightSpec(
        f"{_MMPOSE}/top_down/hrnet/hrnet_w48_posetrack18_256x192-b5d9b3f1_20211130.pth",
        sha256="b5d9b3f1",
        meta={"arch": "w48", "input_size": (256, 192), "layout": "posetrack"}),
    "hrnet_w48_posetrack18_384x288": WeightSpec(
        f"{_MMPOSE}/top_down/hrnet/hrnet_w48_posetrack18_384x288-5fd6d3ff_20211130.pth",
        sha256="5fd6d3ff",
        meta={"arch": "w48", "input_size": (384, 288), "layout": "posetrack"}),
}

_HEAD_PREFIXES = {"mmpose1": "head.final_layer.", "mmpose0": "keypoint_head.final_layer.",
                  "original": "final_layer."}


@dataclass
class LoadReport:
    """What happened when a checkpoint met the model."""

    format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape vs model shape"
    layout: str | None = None  # read from the checkpoint's dataset meta, where it has one

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        parts = [f"format={self.format}"]
        for name in ("missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
                parts.append(f"{name}: {shown}")
        return "; ".join(parts)


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, meta) from any of the three formats."""
    return split_checkpoint(torch_load(path), path)  # numpy meta (sigmas, best_score...) is allowed there


def split_checkpoint(obj, path: str | Path) -> tuple[dict, dict]:
    """(state_dict, meta) of a loaded checkpoint object (see :func:`read_checkpoint`)."""
    if not isinstance(obj, dict):
        raise InputError(f"not an HRNet checkpoint (a {type(obj).__name__}, expected a dict)", path)
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    state = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(state, dict) or not state:
        raise InputError("checkpoint holds no state dict", path)
    return state, meta


def detect_format(keys: list[str]) -> str:
    if any(k.startswith("head.final_layer.") for k in keys):
        return "mmpose1"
    if any(k.startswith("keypoint_head.final_layer.") for k in keys):
        return "mmpose0"
    if any(k.startswith("final_layer.") for k in keys):
        return "original"
    return "unknown"


def adapt_keys(state: dict) -> tuple[dict, str]:
    """Rename upstream keys to ours (the original HRNet names). Returns (state, format)."""
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    fmt = detect_format(list(state))
    head = _HEAD_PREFIXES.get(fmt)
    out = {}
    for key, value in state.items():
        if head and key.startswith(head):
            key = "final_layer." + key[len(head):]
        elif fmt in ("mmpose1", "mmpose0") and key.startswith("backbone."):
            key = key[len("backbone."):]
        out[key] = value
    return out, fmt


def to_mmpose1_keys(state: dict) -> dict:
    """Our model's keys (the original HRNet names) -> mmpose 1.x's: ``final_layer.*`` ->
    ``head.final_layer.*``, everything else under ``backbone.`` (the inverse of ``adapt_keys`` on an
    ``mmpose1`` file; a ``module.`` prefix from DDP is dropped)."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        out[("head." if key.startswith("final_layer.") else "backbone.") + key] = value
    return out


def kprtrack_meta(meta: dict) -> dict:
    """What ``kprtrack.train.pose.checkpoint`` writes under ``meta['kprtrack']`` (arch, input_size,
    codec, layout), else {}."""
    found = meta.get("kprtrack")
    return found if isinstance(found, dict) else {}


def layout_from_meta(meta: dict) -> str | None:
    """coco / posetrack from what the checkpoint says about its training data, else None.

    kprtrack's fine-tunes say it under ``meta['kprtrack']['layout']``; mmpose 1.x stores the data
    set's keypoint names (PoseTrack's joint 1 is head_bottom); both mmpose generations store the
    training config as text (``meta['cfg']`` 1.x, ``meta['config']`` 0.x), which names the data
    set (a PoseTrack config also names COCO, its pre-training).
    """
    if kprtrack_meta(meta).get("layout") in ("coco", "posetrack"):
        return kprtrack_meta(meta)["layout"]
    dataset = meta.get("dataset_meta") or {}
    names = dataset.get("keypoint_id2name")
    if isinstance(names, dict) and 1 in names:
        return "posetrack" if names[1] == "head_bottom" else "coco" if names[1] == "left_eye" else None
    name = str(dataset.get("dataset_name", "")).lower()
    if "posetrack" in name:
        return "posetrack"
    if name.startswith("coco"):
        return "coco"
    return _layout_in_text(_config_text(meta))


def input_size_from_meta(meta: dict) -> tuple[int, int] | None:
    """(height, width) from ``meta['kprtrack']['input_size']`` (already (h, w)), else the stored
    config: mmpose 1.x codec ``input_size=(w, h)``, 0.x ``image_size=[w, h]``."""
    size = kprtrack_meta(meta).get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    found = re.search(r"(?:input_size|image_size)\s*=\s*[\(\[]\s*(\d+)\s*,\s*(\d+)", _config_text(meta))
    return (int(found.group(2)), int(found.group(1))) if found else None


def decode_from_meta(meta: dict) -> str | None:
    """The heatmap decoding the model was trained for: ``udp`` for a UDP-trained model (kprtrack's
    ``codec: udp``; mmpose 1.x ``UDPHeatmap`` codec; mmpose 0.x ``use_udp=True``), ``dark`` for
    mmpose 1.x ``MSRAHeatmap(unbiased=True)``; None when the file does not say (argmax then)."""
    codec = kprtrack_meta(meta).get("codec")
    if codec in ("udp", "msra"):
        return "udp" if codec == "udp" else None
    text = _config_text(meta)
    if "UDPHeatmap" in text or re.search(r"use_udp\s*=\s*True", text):
        return "udp"
    if re.search(r"MSRAHeatmap(?:(?!dict\().)*?unbiased\s*=\s*True", text, re.S):
        return "dark"
    return None


def hints_from_file_name(path: str | Path) -> tuple[str | None, tuple[int, int] | None]:
    """(layout, (height, width)) from an OpenMMLab / HRNet release file name, e.g.
    ``hrnet_w32_posetrack18_384x288-806f00a3_20211130.pth`` or ``pose_hrnet_w32_256x192.pth``."""
    name = Path(path).name.lower()
    size = re.search(r"(\d{3})x(\d{3})", name)
    return _layout_in_text(name), ((int(size.group(1)), int(size.group(2))) if size else None)


def _config_text(meta: dict) -> str:
    text = meta.get("cfg") or meta.get("config") or ""
    return text if isinstance(text, str) else ""


def _layout_in_text(text: str) -> str | None:
    text = text.lower()
    return "posetrack" if "posetrack" in text else "coco" if "coco" in text else None


def infer_arch(state: dict) -> str | None:
    """w32 / w48 from the head's input channels (works on adapted keys)."""
    weight = state.get("final_layer.weight")
    if weight is None:
        return None
    return {32: "w32", 48: "w48"}.get(int(weight.shape[1]))


def load_into(model, state: dict, fmt: str) -> LoadReport:
    """Copy matching tensors into ``model``; never raises on key problems, reports them."""
    own = model.state_dict()
    report = LoadReport(format=fmt)
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.mismatched.append(f"{key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            usable[key] = value
    # num_batches_tracked only counts training steps; old checkpoints lack it and nothing breaks.
    report.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    model.load_state_dict(usable, strict=False)
    return report


