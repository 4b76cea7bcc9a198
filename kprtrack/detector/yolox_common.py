"""The batched detect loop shared by the YOLOX backends; a backend only runs the network."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.detector.yolox_processing import (
    PREPROCESS_MODES, PostprocessConfig, check_input_size, decode, frame_image, num_anchors,
    postprocess, preprocess)
from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from kprtrack.stages import IMAGE
from kprtrack.weights import WeightSpec


def spec_meta(weights: str | os.PathLike | None, registry: dict[str, WeightSpec]) -> dict:
    spec = registry.get(os.fspath(weights)) if weights is not None else None
    return dict(spec.meta) if spec else {}


# Test-time settings of the two training recipes. YOLOX (tools/demo.py): BGR 0-255, NMS 0.45, the
# size's own input. ByteTrack (exps/example/mot/*.py, yolox/data/data_augment.py preproc): RGB/255
# with ImageNet mean/std, nmsthre 0.7, test_size 800x1440 (m/l/x), 608x1088 (nano/tiny/s) and
# 896x1600 for the MOT20 model.
RECIPE_NMS = {"yolox": 0.45, "bytetrack": 0.7}
BYTETRACK_INPUT = {"nano": (608, 1088), "tiny": (608, 1088), "s": (608, 1088),
                   "m": (800, 1440), "l": (800, 1440), "x": (800, 1440)}
BYTETRACK_MOT20_INPUT = (896, 1600)


def recipe_settings(meta: dict, source, num_classes: int | None, model_size: str | None,
                    preprocess: str | None, input_size, nms_thresh: float | None) -> tuple[str, object, float]:
    """(preprocess, input_size or None, nms_thresh): what the user set, else ``meta`` (the
    registry entry, and the recipe a train-detector checkpoint records under its ``kprtrack``
    key), else what the weights tell.

    Official YOLOX checkpoints are 80-class COCO models; every other published person-only
    (1-class) YOLOX is ByteTrack's or trained with its pipeline (BoT-SORT, OC-SORT...), so a
    1-class file without a recorded recipe gets ByteTrack's, said in a warning. Any other class
    count without a recorded recipe is refused.
    """
    if preprocess is None:
        preprocess = meta.get("preprocess")
    if preprocess is None:
        if num_classes == 1:
            preprocess = "bytetrack"
            warnings.warn(f"{source}: a person-only YOLOX, read as a ByteTrack detector (RGB, ImageNet "
                          f"mean/std, NMS 0.7, ByteTrack's input size); set detector.preprocess=yolox if it "
                          f"was trained with YOLOX's own pipeline", stacklevel=3)
        elif num_classes in (None, 80):
            preprocess = "yolox"
        else:
            raise InputError(f"a {num_classes}-class YOLOX: cannot tell how it was trained; set "
                             f"detector.preprocess=yolox (YOLOX's BGR 0-255) or detector.preprocess=bytetrack "
                             f"(RGB, ImageNet mean/std)", source)
    if input_size is None:
        input_size = meta.get("input_size")
    if input_size is None and preprocess == "bytetrack" and model_size in BYTETRACK_INPUT:
        input_size = (BYTETRACK_MOT20_INPUT if "mot20" in os.fspath(source).lower()
                      else BYTETRACK_INPUT[model_size])
    if nms_thresh is None:
        nms_thresh = meta.get("nms_thresh", RECIPE_NMS.get(preprocess, RECIPE_NMS["yolox"]))
    return preprocess, input_size, float(nms_thresh)


class YoloxBackendBase:
    """Letterbox -> network (``_infer``) -> decode -> person boxes, in batches of frames."""

    source: Path | str  # what the network came from, for error messages
    weights_path: Path | str  # the same file, whose checksum keys the stage cache
    requires = frozenset({IMAGE})
    provides = frozenset({"boxes", "scores"})

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
