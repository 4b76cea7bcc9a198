"""Known YOLOX weight files, and reading/validating YOLOX checkpoints.

Megvii publishes no checksums. The sha256 values below were recorded by independent projects
that verify the same release assets (nano/tiny/s/m agree across at least two of them; l/x come
from one). A mismatch raises an InputError naming the file, never a silent load.
ByteTrack's MOT detectors live on Google Drive, which needs a browser confirmation for large
files: they are never downloaded automatically; the error says where to fetch them and where
to put them.

Checkpoints written by ``train-detector`` keep the official layout (``model``, ``start_epoch``,
``optimizer``...) and add a ``kprtrack`` entry with the recipe they were trained with
(preprocess, input size, NMS threshold, classes), which ``detector=yolox`` reads in place of
guessing from the class count.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from kprtrack.detector.yolox_arch import MODEL_SIZES
from kprtrack.errors import InputError
from kprtrack.weights import WeightSpec, torch_load

_RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"
_SHA256 = {
    "nano": "cd28f55fbbc1829f99d9ac9b38a16d259a22889739c8728ea877610201feff7b",
    "tiny": "9de513de589ac98bb92d3bca53b5af7b9acfa9b0bacb831f7999d0f7afaee8f0",
    "s": "f55ded7181e1b0c13285c56e7790b8f0e8f8db590fe4edb37f0b7f345c913a30",
    "m": "60076992b32da82951c90cfa7bd6ab70eba9eda243e08b940a396f60ac2d19b6",
    "l": "1e6b7fa6240375370b2a8a8eab9066b3cdd43fd1d0bfa8d2027fd3a51def2917",
    "x": "5652330b6ae860043f091b8f550a60c10e1129f416edfdb65c259be6caf355cf",
}


def _coco(size: str) -> WeightSpec:
    return WeightSpec(url=f"{_RELEASE}/yolox_{size}.pth", sha256=_SHA256[size], meta={
        "model_size": size, "num_classes": 80, "input_size": list(MODEL_SIZES[size].input_size),
        "preprocess": "yolox", "nms_thresh": 0.45})


def _bytetrack(size: str, data: str, drive_id: str, input_size: tuple[int, int]) -> WeightSpec:
    return WeightSpec(
        url=f"https://drive.google.com/uc?export=download&id={drive_id}",
        filename=f"bytetrack_{size}_{data}.pth.tar",
        meta={"model_size": size, "num_classes": 1, "input_size": list(input_size),
              "preprocess": "bytetrack", "nms_thresh": 0.7, "manual_download": True})


YOLOX_WEIGHTS: dict[str, WeightSpec] = {
    **{f"yolox_{size}": _coco(size) for size in MODEL_SIZES},
    # ByteTrack (ifzhang/ByteTrack README): person-only fine-tunes on MOT17/MOT20 + CrowdHuman...
    "bytetrack_x_mot17": _bytetrack("x", "mot17", "1P4mY0Yyd3PPTybgZkjMYhFri88nTmJX5", (800, 1440)),
    "bytetrack_l_mot17": _bytetrack("l", "mot17", "1XwfUuCBF4IgWBWK2H7oOhQgEj9Mrb3rz", (800, 1440)),
    "bytetrack_m_mot17": _bytetrack("m", "mot17", "11Zb0NN_Uu7JwUd9e6Nk8o2_EUfxWqsun", (800, 1440)),
    "bytetrack_s_mot17": _bytetrack("s", "mot17", "1uSmhXzyV1Zvb4TJJCzpsZOIcw7CCJLxj", (608, 1088)),
    "bytetrack_tiny_mot17": _bytetrack("tiny", "mot17", "1LFAl14sql2Q5Y9aNFsX_OqsnIzUD_1ju", (608, 1088)),
    "bytetrack_nano_mot17": _bytetrack("nano", "mot17", "1AoN2AxzVwOLM0gJ15bcwqZUpFjlDV1dX", (608, 1088)),
    "bytetrack_x_mot20": _bytetrack("x", "mot20", "1HX2_JpMOjOIj1Z9rJjoet9XNy_cCAs5U", (896, 1600)),
}

# Official ONNX exports (static batch 1, raw rows, decode_in_inference=False).
YOLOX_ONNX_WEIGHTS: dict[str, WeightSpec] = {
    f"yolox_{size}": WeightSpec(url=f"{_RELEASE}/yolox_{size}.onnx", meta={
        "model_size": size, "num_classes": 80, "input_size": list(MODEL_SIZES[size].input_size),
        "preprocess": "yolox", "nms_thresh": 0.45})
    for size in MODEL_SIZES
}


META_KEY = "kprtrack"
# The recipe entries a checkpoint's META_KEY may hold, and their types.
_META_TYPES = {"preprocess": str, "input_size": (list, tuple), "nms_thresh": (int, float),
               "num_classes": int, "person_class": int, "model_size": str, "trained_on": str}


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``model`` state dict, recipe meta) of a YOLOX checkpoint (or a bare state dict). The meta
    is the file's ``kprtrack`` entry (train-detector's checkpoints), {} for official files."""
    import torch

    checkpoint = torch_load(path)  # numpy scalars (e.g. best_ap) are allowed there
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("not a YOLOX checkpoint: expected a dict with a 'model' state dict "
                         "(or a state dict) of tensors", path)
    meta = checkpoint.get(META_KEY) if "model" in checkpoint else None
    return {k.removeprefix("module."): v for k, v in state.items()}, _checked_meta(meta, path)


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """The ``model`` state dict of a YOLOX checkpoint (or a bare state dict)."""
    return load_checkpoint(path)[0]


def _checked_meta(meta: Any, path: str | Path) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputError(f"the checkpoint's {META_KEY!r} entry is not a dict", path)
    for key, kind in _META_TYPES.items():
        if key in meta and meta[key] is not None and not isinstance(meta[key], kind):
            raise InputError(f"the checkpoint's {META_KEY}.{key} has type {type(meta[key]).__name__}", path)
    out = dict(meta)
    if out.get("input_size") is not None:
        out["input_size"] = [int(v) for v in out["input_size"]]
    return out


def save_yolox_checkpoint(path: str | Path, state_dict: Mapping[str, Any], meta: Mapping[str, Any],
                          training_state: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint in the official YOLOX layout, atomically: ``{"model": state_dict,
    "start_epoch": ..., "optimizer": ..., "kprtrack": meta, "training_state": training_state}``.

    ``start_epoch`` and ``optimizer`` (what upstream's ``tools/train.py --resume`` reads) are taken
    from ``training_state`` when it has them (``start_epoch``, else ``epoch`` read as the number of
    finished epochs); ``training_state`` itself is stored whole (the same objects, pickled once).
    """
    import torch

    from kprtrack.io import atomic_open

    path = Path(path)
    meta = _checked_meta(dict(meta), path)
    checkpoint: dict[str, Any] = {"model": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                                            for k, v in state_dict.items()}}
    training_state = dict(training_state or {})
    start_epoch = training_state.get("start_epoch", training_state.get("epoch"))
    if start_epoch is not None:
        checkpoint["start_epoch"] = int(start_epoch)
    if "optimizer" in training_state:
        checkpoint["optimizer"] = training_state["optimizer"]
    checkpoint[META_KEY] = meta
    checkpoint["training_state"] = training_state
    with atomic_open(path, "wb") as handle:
        torch.save(checkpoint, handle)
    return path


def describe_state_dict(state: Mapping[str, Any], path: str | Path) -> tuple[str, int]:
    """``(model_size, num_classes)`` read from the tensors' shapes."""
    try:
        base_channels = int(state["backbone.backbone.stem.conv.conv.weight"].shape[0])
        num_classes = int(state["head.cls_preds.0.weight"].shape[0])
    except KeyError as err:
        raise InputError(f"not a YOLOX checkpoint: missing key {err.args[0]}", path) from None
    depthwise = "backbone.backbone.dark2.0.dconv.conv.weight" in state
    depth = len({k.split(".")[5] for k in state if k.startswith("backbone.backbone.dark2.1.m.")})
    for name, size in MODEL_SIZES.items():
        if (size.base_channels, size.depthwise, size.base_depth) == (base_channels, depthwise, depth):
            return name, num_classes
    raise InputError(f"unknown YOLOX variant: stem width {base_channels}, depthwise {depthwise}, "
                     f"{depth} bottleneck(s) in dark2 (known sizes: {', '.join(MODEL_SIZES)})", path)
