"""``detector=yolox_onnx``: YOLOX through ONNX Runtime (official exports and ``kprtrack export``).

Same letterbox, decode and NMS as ``detector=yolox``; only the network call differs. The model
must output raw rows ``[B, A, 5 + C]`` (YOLOX's ``decode_in_inference=False``, the default of
the official exports). A model with a fixed batch of 1 (the official files) is fed frame by frame.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from kprtrack.detector.yolox_common import YoloxBackendBase, recipe_settings, spec_meta
from kprtrack.detector.yolox_processing import check_input_size, num_anchors
from kprtrack.detector.yolox_weights import YOLOX_ONNX_WEIGHTS
from kprtrack.errors import InputError, MissingModelError
from kprtrack.weights import resolve_weights


def _providers(device: str, available: list[str]) -> list[str]:
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise InputError(f"device={device} requested but onnxruntime has no CUDAExecutionProvider "
                             f"(available: {', '.join(available)}); install onnxruntime-gpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class YOLOXOnnxDetector(YoloxBackendBase):
    def __init__(self, weights: str | os.PathLike = "yolox_s", input_size: Sequence[int] | int | None = None,
                 preprocess: str | None = None, person_class: int = 0, score_thresh: float = 0.1,
                 nms_thresh: float | None = None, max_detections: int = 300, device: str = "cpu",
                 batch_size: int = 4, num_threads: int | None = None, download: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingModelError("detector=yolox_onnx needs onnxruntime: pip install onnxruntime") from None
        if weights is None:
            raise InputError("detector=yolox_onnx needs detector.weights (a name, .onnx path or URL); "
                             f"known names: {', '.join(YOLOX_ONNX_WEIGHTS)}")
        meta = spec_meta(weights, YOLOX_ONNX_WEIGHTS)
        self.source = resolve_weights(weights, YOLOX_ONNX_WEIGHTS, download=download)
        self.weights_path = self.source  # the stage cache keys on its checksum
        options = ort.SessionOptions()
        # Idle ONNX Runtime threads spin for the next call, stealing the cores the pose and ReID
        # stages run on next (2-core CPU, preset=fast: detector 61 -> 21 ms a frame without it).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(
                str(self.source), options, providers=_providers(device, ort.get_available_providers()))
        except InputError:
            raise
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot load ONNX model: {first[:300]}", self.source) from None
        model_hw = self._check_signature()
        if input_size is not None and model_hw is not None and check_input_size(input_size) != model_hw:
            raise InputError(f"input_size={list(input_size)} but the model's input is fixed at "
                             f"{list(model_hw)}", self.source)
        channels = _static(self.session.get_outputs()[0].shape[2])
        # The class count shows in the output rows; the model size does not (ByteTrack's size-based
        # input then needs a fixed-size export or detector.input_size).
        preprocess, recipe_size, nms_thresh = recipe_settings(
            meta, self.source, None if channels is None else channels - 5, None, preprocess, input_size, nms_thresh)
        size = model_hw or recipe_size
        if size is None:
            raise InputError("the model's input size is dynamic: set detector.input_size=[H,W]", self.source)
        fixed_batch = _static(self.session.get_inputs()[0].shape[0])
        super().__init__(size, preprocess, person_class, score_thresh,
                         nms_thresh, max_detections, fixed_batch or batch_size)
        self._fixed_batch = fixed_batch
        self._check_output_shape()

    def _check_signature(self) -> tuple[int, int] | None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or _static(inputs[0].shape[1]) not in (3, None):
            shapes = [list(i.shape) for i in inputs]
            raise InputError(f"expected one image input [B, 3, H, W], got {shapes}", self.source)
        if len(outputs) != 1 or len(outputs[0].shape) != 3:
            raise InputError(f"expected one output [B, anchors, 5 + classes], got "
                             f"{[list(o.shape) for o in outputs]}", self.source)
        height, width = (_static(d) for d in inputs[0].shape[2:])
        return (height, width) if height and width else None

    def _check_output_shape(self) -> None:
        """Fail at construction, not mid-video, when the declared output cannot be YOLOX's."""
        anchors, channels = (_static(d) for d in self.session.get_outputs()[0].shape[1:])
        expected = num_anchors(self.input_hw)
        if (anchors is not None and anchors != expected) or (
                channels is not None and channels < 6 + self.post.person_class):
            raise InputError(
                f"unexpected output shape {list(self.session.get_outputs()[0].shape)}: expected "
                f"[B, {expected}, 5 + classes] (raw rows) for input {list(self.input_hw)}", self.source)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: batch})[0]
