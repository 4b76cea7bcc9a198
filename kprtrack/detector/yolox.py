"""``detector=yolox``: YOLOX person detector in eager PyTorch (our own module, official weights)."""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from kprtrack.detector.yolox_arch import MODEL_SIZES, YOLOX
from kprtrack.detector.yolox_common import YoloxBackendBase, recipe_settings, spec_meta
from kprtrack.detector.yolox_weights import YOLOX_WEIGHTS, describe_state_dict, load_checkpoint
from kprtrack.errors import InputError
from kprtrack.weights import resolve_weights


def _torch_device(device: str):
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={device} requested but this torch build sees no CUDA device")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise InputError(f"bad device {device!r}: {err}") from None


def build_model(weights: str | os.PathLike | None, model_size: str | None, num_classes: int | None,
                download: bool = True):
    """A YOLOX module (eval mode) and where its weights came from.

    Size and class count come from the checkpoint; when also given, they must agree with it.
    ``weights=None`` gives random initial weights (tests, benchmarks, export smoke tests).
    """
    model, source, _ = build_model_with_meta(weights, model_size, num_classes, download)
    return model, source


def build_model_with_meta(weights: str | os.PathLike | None, model_size: str | None,
                          num_classes: int | None, download: bool = True):
    """:func:`build_model` plus the recipe meta the checkpoint file carries (train-detector's
    ``kprtrack`` entry; {} for official files and random init)."""
    if model_size is not None and model_size not in MODEL_SIZES:
        raise InputError(f"unknown model_size {model_size!r}; known: {', '.join(MODEL_SIZES)}")
    if weights is None:
        model = YOLOX(model_size or "s", 80 if num_classes is None else int(num_classes))
        return model.eval(), "random-init", {}
    meta = spec_meta(weights, YOLOX_WEIGHTS)
    path = resolve_weights(weights, YOLOX_WEIGHTS, download=download and not meta.get("manual_download"))
    state, file_meta = load_checkpoint(path)
    found_size, found_classes = describe_state_dict(state, path)
    if file_meta.get("num_classes") not in (None, found_classes):
        raise InputError(f"the checkpoint's recipe says {file_meta['num_classes']} classes but its "
                         f"head has {found_classes}", path)
    if model_size is not None and model_size != found_size:
        raise InputError(f"checkpoint is YOLOX-{found_size} but model_size={model_size} was asked "
                         f"for (leave model_size unset to take it from the checkpoint)", path)
    if num_classes is not None and int(num_classes) != found_classes:
        raise InputError(f"checkpoint has {found_classes} classes but num_classes={num_classes} "
                         f"was asked for", path)
    model = YOLOX(found_size, found_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise InputError(f"checkpoint does not fit YOLOX-{found_size}: {' '.join(first[:3])[:400]}",
                         path) from None
    return model.eval(), path, file_meta


class YOLOXDetector(YoloxBackendBase):
    """Person boxes from YOLOX (PyTorch). Keeps boxes down to ``score_thresh`` (default 0.1). The
    default weights are configs/detector/yolox.yaml's: YOLOX-x (COCO), the paper's detector.
    A checkpoint written by train-detector brings its recipe (preprocess, input size, NMS) along;
    explicit arguments still win."""

    def __init__(self, weights: str | None = "yolox_x", model_size: str | None = None,
                 num_classes: int | None = None, input_size: Sequence[int] | int | None = None,
                 preprocess: str | None = None, person_class: int = 0, score_thresh: float = 0.1,
                 nms_thresh: float | None = None, max_detections: int = 300, device: str = "cpu",
                 half: bool = False, batch_size: int = 4, download: bool = True):
        import torch

        if weights is None:
            warnings.warn("detector.weights is null: YOLOX runs with random weights", stacklevel=2)
        self.model, self.source, file_meta = build_model_with_meta(weights, model_size, num_classes, download)
        meta = {**spec_meta(weights, YOLOX_WEIGHTS), **file_meta}
        self.weights_path = self.source  # the stage cache keys on its checksum
        size = MODEL_SIZES[self.model.size_name]
        if not 0 <= int(person_class) < self.model.head.num_classes:
            raise InputError(f"person_class={person_class} but the model has "
                             f"{self.model.head.num_classes} classes", self.source)
        trained_classes = None if weights is None else self.model.head.num_classes  # random init: no recipe
        preprocess, input_size, nms_thresh = recipe_settings(
            meta, self.source, trained_classes, self.model.size_name, preprocess, input_size, nms_thresh)
        super().__init__(input_size or size.input_size, preprocess, person_class, score_thresh,
                         nms_thresh, max_detections, batch_size)
        self.device = _torch_device(device)
        self.half = bool(half) and self.device.type == "cuda"
        if half and not self.half:
            warnings.warn("half=true only applies on CUDA; running float32", stacklevel=2)
        self.model.to(self.device)
        if self.half:
            self.model.half()
        self._torch = torch

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device)
            out = self.model(tensor.half() if self.half else tensor)
            return out.float().cpu().numpy()
