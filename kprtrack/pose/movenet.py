"""``pose=movenet``: Google MoveNet SinglePose (TFLite) run top-down on each box.

A light CPU backend, and the real-weights check of the shared crop/warp/back-projection path.
MoveNet takes a square uint8 RGB image (192x192 Lightning, 256x256 Thunder) and returns
[1, 1, 17, 3] = (y, x, score) normalised to the input, COCO-17 order. Runtime: ``ai-edge-litert``.
"""
from __future__ import annotations

import numpy as np

from kprtrack.errors import InputError, MissingModelError
from kprtrack.pose.topdown import TopDownEstimator
from kprtrack.weights import WeightSpec, resolve_weights

_TFHUB = "https://tfhub.dev/google/lite-model/movenet/singlepose"
# tfhub.dev redirects to Kaggle Models; no checksum is published.
MOVENET_WEIGHTS: dict[str, WeightSpec] = {
    "movenet_lightning_int8": WeightSpec(f"{_TFHUB}/lightning/tflite/int8/4?lite-format=tflite",
                                         filename="movenet_singlepose_lightning_int8.tflite"),
    "movenet_thunder_int8": WeightSpec(f"{_TFHUB}/thunder/tflite/int8/4?lite-format=tflite",
                                       filename="movenet_singlepose_thunder_int8.tflite"),
}


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingModelError("pose=movenet needs the LiteRT runtime: pip install ai-edge-litert "
                                "(or kprtrack[movenet])") from None
    return Interpreter


class MoveNetPose(TopDownEstimator):
    """MoveNet SinglePose on every detection box. ``padding`` enlarges the box like HRNet's."""

    layout = "coco"

    def __init__(self, weights: str = "movenet_lightning_int8", padding: float = 1.25,
                 num_threads: int = 2, download: bool = True):
        interpreter_class = _interpreter_class()
        path = resolve_weights(weights, MOVENET_WEIGHTS, download=download)
        self.weights_path = path  # the stage cache keys on its checksum
        try:
            self.interpreter = interpreter_class(model_path=str(path), num_threads=int(num_threads))
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise InputError(f"not a usable TFLite model: {str(err).splitlines()[0]}", path) from None
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        shape = tuple(int(v) for v in inp["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or tuple(out["shape"][-2:]) != (17, 3):
            raise InputError(f"not a MoveNet SinglePose model (input {shape}, output "
                             f"{tuple(out['shape'])})", path)
        self.input_size = (shape[1], shape[2])
        self._input_index, self._input_dtype = inp["index"], inp["dtype"]
        self._output_index = out["index"]
        self.padding = float(padding)

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        # The TFLite graph has a fixed batch of 1, so crops run one after the other.
        out = np.zeros((len(crops), 17, 3), dtype=np.float64)
        size = np.array(self.input_size[::-1], dtype=np.float64)  # (w, h)
        for i, crop in enumerate(crops):
            self.interpreter.set_tensor(self._input_index, crop[None].astype(self._input_dtype))
            self.interpreter.invoke()
            yxs = self.interpreter.get_tensor(self._output_index).reshape(17, 3)
            # normalised continuous coordinates -> pixel-index coordinates (centre of pixel 0 = 0)
            out[i, :, 0] = yxs[:, 1] * size[0] - 0.5
            out[i, :, 1] = yxs[:, 0] * size[1] - 0.5
            out[i, :, 2] = yxs[:, 2]
        return out
