"""``pose=mmpose``: any mmpose 1.x top-down model (config + checkpoint) through mmpose's own API.

Optional extra ``kprtrack[mmpose]``. Notes measured on Python 3.11: mmpose 1.3.2 installs with
mmcv-lite 2.1.0, mmengine 0.10.7, mmdet 3.3.0 (setuptools < 81, chumpy with
--no-build-isolation, xtcocotools from source). With torch >= 2.6, mmengine's ``load_checkpoint``
(``torch.load`` defaulting to weights_only) refuses OpenMMLab checkpoints whose meta holds numpy
arrays, so the checkpoint is read here with the numpy types allowed explicitly and handed to the
model's ``load_state_dict`` (whose pre-hooks still rename mmpose 0.x keys).
"""
from __future__ import annotations

import logging

import numpy as np

from kprtrack.errors import InputError, MissingModelError
from kprtrack.pose.hrnet_checkpoint import HRNET_WEIGHTS, read_checkpoint
from kprtrack.pose.layouts import LAYOUTS, check_layout, to_posetrack, warn_approximate_head
from kprtrack.pose.topdown import MIN_BOX_SIZE, TopDownEstimator, usable_boxes
from kprtrack.record import NUM_KEYPOINTS, Detections, Frame

log = logging.getLogger(__name__)

INSTALL_HINT = ("pose=mmpose needs mmpose 1.x: pip install 'kprtrack[mmpose]' (mmpose 1.3.2, "
                "mmcv-lite 2.1.0, mmengine 0.10.7, mmdet 3.3.0), or use pose=hrnet which loads "
                "mmpose HRNet checkpoints without mmpose")


def _mmpose_apis():
    try:
        from mmpose.apis import inference_topdown, init_model
    except ImportError as err:
        raise MissingModelError(f"{INSTALL_HINT} (import failed: {err})") from None
    return init_model, inference_topdown


def layout_of(dataset_meta: dict) -> str:
    """coco / posetrack from mmpose's dataset meta; other skeletons cannot feed PoseTrack output."""
    names = dataset_meta.get("keypoint_id2name") or {}
    ordered = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else ()
    for layout, expected in LAYOUTS.items():
        if ordered == expected:
            return layout
    raise InputError(f"mmpose model predicts {len(ordered)} keypoints "
                     f"({', '.join(ordered[:4])}...); kprtrack needs COCO-17 or PoseTrack-17")


class MMPoseTopDown:
    """mmpose top-down model on every usable box of a frame (mmpose batches the boxes itself)."""

    requires = TopDownEstimator.requires
    provides = TopDownEstimator.provides

    def __init__(self, config: str, checkpoint: str, device: str = "cpu", layout: str | None = None,
                 min_box_size: float = MIN_BOX_SIZE, download: bool = True):
        from kprtrack.weights import resolve_weights

        init_model, self._inference_topdown = _mmpose_apis()
        path = resolve_weights(checkpoint, HRNET_WEIGHTS, download=download)
        self.weights_path = path  # the stage cache keys on its checksum
        state, meta = read_checkpoint(path)
        try:
            self.model = init_model(str(config), None, device=device)
        except (FileNotFoundError, OSError) as err:
            raise InputError(f"cannot read mmpose config: {err}", config) from None
        result = self.model.load_state_dict(state, strict=False)
        self.missing, self.unexpected = list(result.missing_keys), list(result.unexpected_keys)
        if self.missing:
            raise InputError(f"checkpoint does not fit the config: {len(self.missing)} missing keys "
                             f"({', '.join(self.missing[:5])})", path)
        if self.unexpected:
            log.warning("mmpose checkpoint %s: %d unexpected keys ignored", path, len(self.unexpected))
        if isinstance(meta.get("dataset_meta"), dict):
            self.model.dataset_meta = meta["dataset_meta"]
        found = layout_of(self.model.dataset_meta or {})
        if layout is not None and check_layout(layout) != found:
            log.warning("pose.layout=%s overrides the model's %s layout", layout, found)
        self.layout = layout or found
        self.min_box_size = float(min_box_size)

    def estimate(self, frame: Frame, detections: Detections) -> Detections:
        image = TopDownEstimator._frame_image(frame)
        boxes = detections.boxes
        native = np.zeros((len(boxes), NUM_KEYPOINTS, 3), dtype=np.float32)
        keep = np.flatnonzero(usable_boxes(boxes, image.shape[1], image.shape[0], self.min_box_size))
        # mmpose treats "no boxes" as "the whole image is one person": never call it without boxes.
        if len(keep):
            samples = self._inference_topdown(self.model, image, boxes[keep], bbox_format="xyxy")
            for row, sample in zip(keep, samples):
                pred = sample.pred_instances
                native[row, :, :2] = np.asarray(pred.keypoints, dtype=np.float32).reshape(-1, 2)[:NUM_KEYPOINTS]
                native[row, :, 2] = np.asarray(pred.keypoint_scores, dtype=np.float32).reshape(-1)[:NUM_KEYPOINTS]
        if self.layout == "coco":
            warn_approximate_head(type(self).__name__)
        return detections.with_(keypoints=to_posetrack(native, self.layout).astype(np.float32))
