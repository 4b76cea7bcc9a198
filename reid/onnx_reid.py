"""``reid=onnx``: any ONNX person-ReID model with one global embedding (OSNet exports, OpenVINO).

K = 0 parts: embeddings [N, 1, D], visibility [N, 1] = 1. Input layout (NCHW/NHWC) and size are
read from the model where it declares them; colour order and normalisation come from the config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.errors import InputError, MissingModelError
from kprtrack.record import Detections, Frame
from kprtrack.reid.crops import crop_boxes, normalise, resize_images


class OnnxReID:
    """Constructor keywords are the ``reid`` config keys (see configs/reid/onnx.yaml)."""

    def __init__(self, model: str, layout: str = "auto", color: str = "bgr", height: int | None = None,
                 width: int | None = None, scale: float = 1.0, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0), batch_size: int = 32, providers: Sequence[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingModelError("reid=onnx needs onnxruntime (pip install onnxruntime)") from None
        path = Path(str(model)).expanduser()
        if not path.is_file():
            raise InputError("ONNX ReID model not found (set reid.model=<path to .onnx>)", path)
        try:
            self.session = ort.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot load ONNX model: {first}", path) from None
        if color not in ("bgr", "rgb"):
            raise InputError(f"reid.color must be 'bgr' or 'rgb', got {color!r}")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise InputError(f"expected a 4-D image input, the model's input {inp.name!r} has shape {shape}", path)
        self.layout = _layout(layout, shape, path)
        h_dim, w_dim = (shape[1], shape[2]) if self.layout == "NHWC" else (shape[2], shape[3])
        self.height = _size("height", height, h_dim, path)
        self.width = _size("width", width, w_dim, path)
        # A model exported with a fixed batch of 1 is run one crop at a time.
        self.batch_size = max(1, int(batch_size)) if not isinstance(shape[0], int) or shape[0] < 1 else shape[0]
        self.fixed_batch = isinstance(shape[0], int) and shape[0] >= 1
        self.to_rgb = color == "rgb"
        self.scale, self.mean, self.std = float(scale), [float(v) for v in mean], [float(v) for v in std]
        self.path = path
        self.weights_path = path  # the stage cache keys on its checksum

    def embed(self, frame: Frame, detections: Detections) -> Detections:
        crops, valid, _ = crop_boxes(frame.image, detections.boxes, (self.height, self.width))
        emb, vis = self._run(crops)
        emb[~valid] = 0.0
        vis[~valid] = 0.0  # box entirely outside the frame: nothing to compare
        return detections.with_(embeddings=emb, visibility=vis)

    def embed_crops(self, images: list[np.ndarray], keypoints_pos=None, keypoints_neg=None) -> tuple[np.ndarray, np.ndarray]:
        """Same signature as KPR's; keypoints are ignored (a global model takes no prompt)."""
        return self._run(resize_images(images, (self.height, self.width)))

    def _run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = normalise(crops, self.mean, self.std, to_rgb=self.to_rgb, scale=self.scale, layout=self.layout)
        outs = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start:start + self.batch_size]
            pad = self.batch_size - len(batch) if self.fixed_batch else 0
            if pad:
                batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), np.float32)])
            out = self.session.run(None, {self.input_name: batch})[0]
            outs.append(np.asarray(out, np.float32).reshape(len(batch), -1)[:len(batch) - pad])
        d = outs[0].shape[1] if outs else 0
        emb = np.concatenate(outs).reshape(len(crops), 1, d) if outs else np.zeros((0, 1, d), np.float32)
        return emb.astype(np.float32), np.ones((len(crops), 1), np.float32)


def _layout(layout: str, shape: list, path: Path) -> str:
    if layout in ("NCHW", "NHWC"):
        return layout
    if layout != "auto":
        raise InputError(f"reid.layout must be auto, NCHW or NHWC, got {layout!r}")
    if shape[3] == 3 and shape[1] != 3:
        return "NHWC"
    if shape[1] == 3:
        return "NCHW"
    raise InputError(f"cannot tell NCHW from NHWC for input shape {shape}; set reid.layout", path)


def _size(name: str, configured, declared, path: Path) -> int:
    if isinstance(declared, int) and declared > 0:
        if configured is not None and int(configured) != declared:
            raise InputError(f"reid.{name}={configured} but the model's input is fixed at {declared}", path)
        return declared
    if configured is None:
        raise InputError(f"the model's input {name} is dynamic; set reid.{name}", path)
    return int(configured)
