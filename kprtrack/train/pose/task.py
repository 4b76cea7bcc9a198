"""``train-pose``: the :class:`~kprtrack.train.task.TrainTask` fine-tuning top-down HRNet on
PoseTrack keypoints (PoseTrack joint order), as mmpose 1.x's
``td-hm_hrnet-w32_8xb64-20e_posetrack18-256x192`` does.

Config keys read (defaults are that mmpose config's values):

- ``model.weights`` (``hrnet_w32_coco_256x192``, mmpose's ``load_from``): registry name, path, URL
  or null (random init); ``model.arch`` (null: from the checkpoint, else w32); ``model.layout``
  (null: what the checkpoint / registry says; coco or posetrack); ``model.download`` (true);
  ``model.strict`` (true: a checkpoint that does not fit the network is an error);
  ``model.head_init`` (``eyes``): a COCO start model's 15 joints shared with PoseTrack sit at the
  same output rows and are kept; its rows 1-2 (left/right eye) become head_bottom/head_top.
  ``eyes`` keeps them as they are (what mmpose's ``load_from`` does: same shapes, loaded
  unchanged), ``reset`` re-draws those two rows as mmpose initialises a new head (normal std
  0.001, bias 0). Ignored for a PoseTrack start model.
- ``data.root``, ``data.split`` (train), ``data.annotations_dir`` (posetrack_data),
  ``data.sequences`` (null = all), ``data.min_keypoints`` (1), ``data.input_size`` ([256, 192],
  height, width, multiples of 32), ``data.codec`` (msra | udp), ``data.sigma`` (2.0),
  ``data.padding`` (1.25).
- ``aug``: :class:`kprtrack.train.pose.augment.AugmentConfig`'s fields.
- ``eval``: read by :func:`kprtrack.train.pose.evaluate.evaluate_pose` only.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from kprtrack.errors import InputError
from kprtrack.pose.hrnet import normalise
from kprtrack.train.common import batch_rng, option
from kprtrack.train.pose.augment import AugmentConfig, augment
from kprtrack.train.pose.data import PoseItem, load_pose_items
from kprtrack.train.pose.loss import KeypointMSELoss
from kprtrack.train.pose.targets import CODECS, encode

log = logging.getLogger(__name__)

HEATMAP_STRIDE = 4  # HRNet's heatmaps are 1/4 of the input
NEW_JOINT_ROWS = (1, 2)  # PoseTrack head_bottom, head_top: COCO's left/right eye rows
_OPTION = re.compile(r"\bpose\.(arch|layout|strict|weights|download)\b")


@dataclass(frozen=True)
class TargetSettings:
    input_size: tuple[int, int]  # (h, w)
    codec: str = "msra"
    sigma: float = 2.0
    padding: float = 1.25

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // HEATMAP_STRIDE, self.input_size[1] // HEATMAP_STRIDE)


def target_settings(data) -> TargetSettings:
    size = tuple(int(v) for v in option(data, "input_size", (256, 192)))
    if len(size) != 2 or any(v < 32 or v % 32 for v in size):
        raise InputError(f"data.input_size must be [height, width], multiples of 32, got {list(size)}")
    codec = str(option(data, "codec", "msra")).lower()
    if codec not in CODECS:
        raise InputError(f"data.codec must be one of {sorted(CODECS)}, got {codec!r}")
    sigma = float(option(data, "sigma", 2.0))
    padding = float(option(data, "padding", 1.25))
    if sigma <= 0 or padding <= 0:
        raise InputError(f"data.sigma and data.padding must be > 0, got {sigma}, {padding}")
    return TargetSettings(size, codec, sigma, padding)


class PoseCollate:
    """Items -> {"images" [B,3,H,W], "heatmaps" [B,17,h,w], "target_weights" [B,17]}. Picklable;
    each batch's generator comes from ``seed`` and its items (:func:`kprtrack.train.common.batch_rng`)."""

    def __init__(self, settings: TargetSettings, aug: AugmentConfig, seed: int | None):
        self.settings, self.aug, self.seed = settings, aug, seed

    def batch_generator(self, items: list[PoseItem]) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return batch_rng(self.seed, (f"{it.sequence}\0{it.image_id}\0{it.track_id}\0{it.bbox.tolist()}"
                                     for it in items))

    def __call__(self, items: list[PoseItem]) -> dict:
        from kprtrack.data.posetrack import read_image

        s = self.settings
        rng = self.batch_generator(items)
        frames: dict[str, np.ndarray] = {}
        crops, heatmaps, weights = [], [], []
        for item in items:
            if item.image_path not in frames:
                frames[item.image_path] = np.ascontiguousarray(read_image(Path(item.image_path))[..., ::-1])
            sample = augment(frames[item.image_path], item.bbox, item.keypoints, s.input_size, self.aug,
                             rng, s.padding, udp=s.codec == "udp")
            maps, w = encode(s.codec, sample.keypoints, sample.visible, s.input_size, s.heatmap_size, s.sigma)
            crops.append(sample.image)
            heatmaps.append(maps)
            weights.append(w)
        return {"images": torch.from_numpy(normalise(np.stack(crops))),
                "heatmaps": torch.from_numpy(np.stack(heatmaps)),
                "target_weights": torch.from_numpy(np.stack(weights).astype(np.float32))}


class PoseTask:
    name = "train-pose"

    def __init__(self, cfg):
        self.cfg = cfg
        self.settings = target_settings(option(cfg, "data"))
        self.aug = AugmentConfig.from_cfg(option(cfg, "aug"))
        self.criterion = KeypointMSELoss(use_target_weight=True)
        self.arch: str | None = None
        self.start_layout: str | None = None
        self.eval_skipped = False  # no kit configured: said at the first evaluation, not every epoch

    # data ---------------------------------------------------------------------------------------
    def build_dataset(self) -> Sequence[Any]:
        data = option(self.cfg, "data")
        root = option(data, "root")
        if root is None:
            raise InputError("data.root is not set (the PoseTrack21 folder with images/ and posetrack_data/)")
        sequences = option(data, "sequences")
        items = load_pose_items(str(root), split=str(option(data, "split", "train")),
                                annotations_dir=str(option(data, "annotations_dir", "posetrack_data")),
                                sequences=[str(s) for s in sequences] if sequences else None,
                                min_keypoints=int(option(data, "min_keypoints", 1)))
        if not items:
            raise InputError("no annotated person with a box and a labelled keypoint in the training split",
                             Path(str(root)) / str(option(data, "annotations_dir", "posetrack_data")))
        return items

    def make_collate(self, dataset: Sequence[Any], seed: int, epoch: int) -> PoseCollate:
        return PoseCollate(self.settings, self.aug, seed)

    # model --------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """HRNet through :class:`kprtrack.pose.hrnet.HRNetPose` (the inference loader: registry,
        download, the three checkpoint formats, layout and arch checks), then set to train."""
        from kprtrack.pose.hrnet import HRNetPose

        m = option(self.cfg, "model")
        weights = option(m, "weights")
        arch = option(m, "arch")
        layout = option(m, "layout")
        head_init = str(option(m, "head_init", "eyes"))
        if head_init not in ("eyes", "reset"):
            raise InputError(f"model.head_init must be eyes or reset, got {head_init!r}")
        try:
            estimator = HRNetPose(weights=None if weights in (None, "", "null") else str(weights),
                                  arch=None if arch is None else str(arch), input_size=self.settings.input_size,
                                  layout=None if layout is None else str(layout), flip_test=False, device="cpu",
                                  strict=bool(option(m, "strict", True)), download=bool(option(m, "download", True)))
        except InputError as err:  # the inference loader names its keys pose.*; here they are model.*
            if type(err) is not InputError:
                raise
            raise InputError(_OPTION.sub(r"model.\1", str(err))) from None
        model = estimator.model
        self.arch = estimator.arch
        if estimator.weights_path is None:
            self.start_layout = None
            _init_head_rows(model.final_layer, range(model.final_layer.out_channels))
        else:
            self.start_layout = estimator.layout
            if estimator.layout == "coco" and head_init == "reset":
                _init_head_rows(model.final_layer, NEW_JOINT_ROWS)
        return model.train()

    def param_groups(self, model: nn.Module) -> list[dict]:
        """One group, no weight decay (mmpose's Adam, lr 5e-4 for a 512 batch)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0}]

    def loss(self, model: nn.Module, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        output = model(batch["images"])
        target = batch["heatmaps"]
        if output.shape != target.shape:
            raise InputError(f"the network outputs heatmaps {tuple(output.shape)} but the targets are "
                             f"{tuple(target.shape)} (data.input_size / stride {HEATMAP_STRIDE})")
        total = self.criterion(output, target, batch["target_weights"])
        return total, {"mse": total.detach()}

    # checkpoints and evaluation (kprtrack.train.pose.checkpoint / evaluate) ---------------------
    def save_checkpoint(self, path: Path, model: nn.Module, training_state: dict) -> None:
        from kprtrack.train.pose.checkpoint import save_pose_checkpoint

        model = model.module if hasattr(model, "module") else model
        arch = self.arch or getattr(model, "arch", None) or "w32"
        save_pose_checkpoint(path, model.state_dict(), arch, self.settings.input_size, self.settings.codec,
                             training_state)

    def read_checkpoint(self, path: Path) -> tuple[dict, dict]:
        from kprtrack.train.pose.checkpoint import read_pose_checkpoint

        return read_pose_checkpoint(path)

    def evaluate(self, checkpoint: Path, output_dir: Path) -> dict[str, float]:
        from kprtrack.train.pose.evaluate import _kit_missing, eval_settings, evaluate_pose

        if self.eval_skipped:
            return {}
        metrics = evaluate_pose(checkpoint, self.cfg, output_dir)  # prints the reason when it skips
        self.eval_skipped = not metrics and _kit_missing(eval_settings(self.cfg)) is not None
        return metrics


def _init_head_rows(layer: nn.Conv2d, rows) -> None:
    """mmpose's HeatmapHead init for the given output rows: weights ~ N(0, 0.001), bias 0."""
    rows = list(rows)
    with torch.no_grad():
        layer.weight[rows] = torch.randn_like(layer.weight[rows]) * 0.001
        if layer.bias is not None:
            layer.bias[rows] = 0.0
