"""The batched detect loop shared by the YOLOX backends; a backend only runs the network."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.detector.yolox_processing import (
    PREPROCESS_MODES, PostprocessConfig, check_input_size, decode, frame_image, num_anchors,
    postprocess, preprocess)
from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from kprtrack.weights import WeightSpec


def spec_meta(weights: str | os.PathLike | None, registry: dict[str, WeightSpec]) -> dict:
    spec = registry.get(os.fspath(weights)) if weights is not None else None
    return dict(spec.meta) if spec else {}


class YoloxBackendBase:
    """Letterbox -> network (``_infer``) -> decode -> person boxes, in batches of frames."""

    source: Path | str  # what the network came from, for error messages

    def __init__(self, input_size, preprocess: str, person_class: int, score_thresh: float,
                 nms_thresh: float, max_detections: int, batch_size: int):
        self.input_hw = check_input_size(input_size)
        if preprocess not in PREPROCESS_MODES:
            raise InputError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        if not 0.0 <= float(score_thresh) <= 1.0 or not 0.0 < float(nms_thresh) <= 1.0:
            raise InputError(f"score_thresh must be in [0, 1] and nms_thresh in (0, 1]; "
                             f"got {score_thresh}, {nms_thresh}")
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.preprocess = preprocess
        self.batch_size = int(batch_size)
        self.post = PostprocessConfig(person_class=int(person_class), score_thresh=float(score_thresh),
                                      nms_thresh=float(nms_thresh), max_detections=int(max_detections))

    def _infer(self, batch: np.ndarray) -> np.ndarray:  # [B, 3, H, W] -> [B, A, 5 + C]
        raise NotImplementedError

    def raw_outputs(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw rows for a preprocessed batch, shape-checked."""
        raw = np.asarray(self._infer(batch))
        expected = (len(batch), num_anchors(self.input_hw))
        if raw.ndim != 3 or raw.shape[:2] != expected or raw.shape[2] < 6 + self.post.person_class:
            raise InputError(
                f"unexpected YOLOX output shape {list(raw.shape)}; expected [{expected[0]}, {expected[1]}, "
                f"5 + classes] (raw rows, decode_in_inference=False) for input {list(self.input_hw)}"
                f" with person class {self.post.person_class}", self.source)
        return raw

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        results: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start:start + self.batch_size]
            images = [frame_image(frame) for frame in chunk]
            batch, ratios = preprocess(images, self.input_hw, self.preprocess)
            decoded = decode(self.raw_outputs(batch), self.input_hw)
            for rows, ratio, image in zip(decoded, ratios, images):
                results.append(postprocess(rows, float(ratio), image.shape[:2], self.post))
        return results
