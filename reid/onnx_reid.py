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
from kprtrack.stages import IMAGE
from kprtrack.reid.crops import crop_boxes, normalise, resize_images
from kprtrack.reid.onnx_weights import ONNX_REID_WEIGHTS
from kprtrack.weights import resolve_weights


class OnnxReID:
    """Constructor keywords are the ``reid`` config keys (see configs/reid/onnx.yaml)."""

    requires = frozenset({IMAGE, "boxes"})  # a global model: no keypoint prompt
    provides = frozenset({"embeddings", "visibility"})
    supports_prompts = False

    def __init__(self, model: str, layout: str = "auto", color: str = "bgr", height: int | None = None,
                 width: int | None = None, scale: float = 1.0, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0), batch_size: int = 32, providers: Sequence[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingModelError("reid=onnx needs onnxruntime (pip install onnxruntime)") from None
        if str(model) in ONNX_REID_WEIGHTS or "://" in str(model):  # a registry name or URL: downloaded once
            path = resolve_weights(str(model), ONNX_REID_WEIGHTS)
        else:
            path = Path(str(model)).expanduser()
        if not path.is_file():
            raise InputError("ONNX ReID model not found (set reid.model=<path to .onnx>)", path)
        try:
            options = ort.SessionOptions()  # no spinning between calls: the other stages need the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
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
        _check_crop_size(self.height, self.width, path)
        # A model exported with a fixed batch of 1 is run one crop at a time.
        self.batch_size = max(1, int(batch_size)) if not isinstance(shape[0], int) or shape[0] < 1 else shape[0]
        self.fixed_batch = isinstance(shape[0], int) and shape[0] >= 1
        self.to_rgb = color == "rgb"
        self.scale, self.mean, self.std = float(scale), [float(v) for v in mean], [float(v) for v in std]
        self.path = path
        self.weights_path = path  # the stage cache keys on its checksum
        # The embedding size, also for frames without people: from the declared output shape, then
        # checked on one blank crop (an output that is not [N, D] / [N, D, 1, 1] is no ReID model).
        self.dim = _embedding_dim(self.session.get_outputs()[0].shape, path)
        try:
            probe = self._infer(np.zeros((1, self.height, self.width, 3), np.uint8))
        except Exception as err:  # onnxruntime's own exception types: wrong input type, rank, ...
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot run the model on a {self.height}x{self.width} crop: {first}", path) from None
        self.dim = _embedding_dim(list(probe.shape), path, declared=self.dim)

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
        """Embeddings [N, 1, D] (D the model's, also for N = 0) and visibility [N, 1] = 1."""
        if len(crops) == 0:
            return np.zeros((0, 1, self.dim), np.float32), np.zeros((0, 1), np.float32)
        out = self._infer(crops)
        return out.reshape(len(crops), 1, -1).astype(np.float32, copy=False), np.ones((len(crops), 1), np.float32)

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        """The model's raw first output for N >= 1 crops, batched (fixed-batch models padded)."""
        x = normalise(crops, self.mean, self.std, to_rgb=self.to_rgb, scale=self.scale, layout=self.layout)
        outs = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start:start + self.batch_size]
            pad = self.batch_size - len(batch) if self.fixed_batch else 0
            if pad:
                batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), np.float32)])
            out = np.asarray(self.session.run(None, {self.input_name: batch})[0], np.float32)
            outs.append(out[:len(batch) - pad])
        return np.concatenate(outs)


MIN_DIM, MAX_DIM = 16, 8192  # person-ReID embeddings: 64 (tiny) to 2048 (ResNet-50) in practice
MAX_SIDE = 1024  # a crop side larger than this is a detector's or a classifier's input, not a ReID crop


def _embedding_dim(shape: list, path: Path, declared: int | None = None) -> int | None:
    """D of a [N, D] or [N, D, 1, 1] output shape; InputError naming the file for anything else.
    A symbolic D is None (then the probe run gives it); ``declared`` must match the probe's."""
    dims = list(shape)
    ok = len(dims) == 2 or (len(dims) == 4 and dims[2:] == [1, 1])
    dim = dims[1] if ok else None
    if ok and isinstance(dim, int) and not MIN_DIM <= dim <= MAX_DIM:
        ok = False
    if ok and declared is not None and isinstance(dim, int) and dim != declared:
        ok = False
    if not ok:
        raise InputError(f"not a person-ReID model: its output has shape {dims}, expected one embedding per crop, "
                         f"[N, D] or [N, D, 1, 1] with {MIN_DIM} <= D <= {MAX_DIM} (reid=onnx takes a ReID model "
                         f"such as OSNet or person-reidentification-retail-0287)", path)
    return dim if isinstance(dim, int) else declared


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


def _check_crop_size(height: int, width: int, path: Path) -> None:
    if not (8 <= height <= MAX_SIDE and 8 <= width <= MAX_SIDE):
        raise InputError(f"not a person-ReID model: its input is {height}x{width} pixels, expected a person "
                         f"crop (sides 8 to {MAX_SIDE}, e.g. 256x128)", path)
