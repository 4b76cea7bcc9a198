"""``train-detector``'s :class:`~kprtrack.train.task.TrainTask`: YOLOX fine-tuned on PoseTrack person boxes.

Recipe as upstream YOLOX (exps/default + yolox/exp/yolox_base.py): SimOTA loss
(:mod:`kprtrack.train.detector.loss`), mosaic/mixup switched off and the L1 term switched on for the
last ``optim.no_aug_epochs`` epochs, three parameter groups (BatchNorm weights and biases without
weight decay), BatchNorm momentum 0.03. A 1-class model starts from the COCO checkpoint with its
class head cut down to the person row, so before any step it scores people exactly as the COCO
model does. Checkpoints keep the official layout plus the recipe ``detector=yolox`` reads back.

Config sections (``cfg``):

- ``model``: ``weights`` (registry name such as ``yolox_s``, a .pth path or URL; null = random
  init), ``model_size`` (nano..x; needed with weights null, else checked against the file),
  ``num_classes`` (1 = person-only head; 80 = keep the COCO head), ``person_class`` (the person
  row of the starting checkpoint, COCO 0), ``download``;
- ``data``: ``root``, ``split``, ``annotations_dir``, ``sequences``, ``input_size`` ([h, w],
  multiples of 32; null = the model size's native square);
- ``aug``: :class:`kprtrack.train.detector.augment.AugmentConfig` fields;
- ``loss``: ``use_l1`` (null = upstream: on in the no-aug epochs only), ``reg_weight``,
  ``iou_type``, ``center_radius``, ``in_box_candidates``;
- ``eval``: ``split`` (null = no evaluation), ``root``/``annotations_dir`` (null = ``data``'s),
  ``sequences`` (null = all of the split), ``input_size`` (null = the training size the
  checkpoint records), ``score_thresh``, ``recall_thresholds``, ``recall_iou``, ``batch_size``, ``device``;
- ``optim.epochs``, ``optim.no_aug_epochs``; ``device`` (top level, for evaluation when
  ``eval.device`` is null).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from kprtrack.detector.yolox_arch import MODEL_SIZES, YOLOX
from kprtrack.detector.yolox_processing import check_input_size
from kprtrack.detector.yolox_weights import (
    YOLOX_WEIGHTS, describe_state_dict, load_state_dict, save_yolox_checkpoint)
from kprtrack.errors import InputError
from kprtrack.train.common import option
from kprtrack.train.detector.loss import YoloxLoss

BN_MOMENTUM = 0.03  # upstream init_yolo (PyTorch's convention: weight of the new batch)
PRIOR_PROB = 0.01  # upstream initialize_biases, for heads trained from scratch
NMS_THRESH = 0.45  # YOLOX's demo/test recipe, recorded in the checkpoint for inference


def person_head_state(state: dict[str, torch.Tensor], person_class: int) -> dict[str, torch.Tensor]:
    """A copy of a YOLOX state dict whose class head keeps only row ``person_class`` (weight and
    bias of every ``head.cls_preds.k``): the 1-class model's person logit equals the source's."""
    out = dict(state)
    for key, value in state.items():
        if key.startswith("head.cls_preds.") and key.endswith((".weight", ".bias")):
            if not 0 <= person_class < value.shape[0]:
                raise InputError(f"model.person_class={person_class} but the checkpoint's class head has "
                                 f"{value.shape[0]} rows")
            out[key] = value[person_class:person_class + 1].clone()
    return out


def initialize_biases(model: YOLOX, prior_prob: float = PRIOR_PROB) -> None:
    """Objectness and class biases at -log((1 - p) / p), as upstream for a new head."""
    value = -math.log((1 - prior_prob) / prior_prob)
    with torch.no_grad():
        for conv in list(model.head.cls_preds) + list(model.head.obj_preds):
            conv.bias.fill_(value)


class DetectorTask:
    name = "train-detector"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.weights = option(cfg, "model.weights")
        self.model_size = option(cfg, "model.model_size")
        if self.model_size is not None and self.model_size not in MODEL_SIZES:
            raise InputError(f"model.model_size={self.model_size!r}; known: {', '.join(MODEL_SIZES)}")
        self.num_classes = int(option(cfg, "model.num_classes", 1))
        if self.num_classes < 1:
            raise InputError(f"model.num_classes must be >= 1, got {self.num_classes}")
        self.person_class = int(option(cfg, "model.person_class", 0))
        self.download = bool(option(cfg, "model.download", True))
        self.root = option(cfg, "data.root")
        if self.root is None:
            raise InputError("data.root is not set (the PoseTrack21 folder)")
        self.split = option(cfg, "data.split", "train")
        self.annotations_dir = option(cfg, "data.annotations_dir", "posetrack_data")
        self.sequences = option(cfg, "data.sequences")
        size = option(cfg, "data.input_size")
        self.input_size = check_input_size(size, "data.input_size") if size is not None else None
        self.epochs = int(option(cfg, "optim.epochs", 1))
        self.no_aug_epochs = int(option(cfg, "optim.no_aug_epochs", 0))
        loss = dict(reg_weight=float(option(cfg, "loss.reg_weight", 5.0)),
                    iou_type=str(option(cfg, "loss.iou_type", "iou")),
                    center_radius=float(option(cfg, "loss.center_radius", 2.5)),
                    in_box_candidates=bool(option(cfg, "loss.in_box_candidates", True)))
        use_l1 = option(cfg, "loss.use_l1")
        self.use_l1 = None if use_l1 is None else bool(use_l1)
        self.losses = {flag: YoloxLoss(self.num_classes, use_l1=flag, **loss) for flag in (False, True)}
        self._found_size: str | None = None

    # -- helpers --------------------------------------------------------------------------------
    def _size_name(self) -> str:
        """The model size, without building the model when the config or registry tells it."""
        if self.model_size is not None:
            return self.model_size
        if self.weights is None:
            return "s"
        spec = YOLOX_WEIGHTS.get(os.fspath(self.weights))
        if spec is not None and spec.meta.get("model_size"):
            return spec.meta["model_size"]
        if self._found_size is None:
            from kprtrack.weights import resolve_weights

            path = resolve_weights(self.weights, YOLOX_WEIGHTS, download=self.download)
            self._found_size = describe_state_dict(load_state_dict(path), path)[0]
        return self._found_size

    @property
    def train_size(self) -> tuple[int, int]:
        """(height, width) the network is trained (and then run) at."""
        return self.input_size or MODEL_SIZES[self._size_name()].input_size

    def in_no_aug_epochs(self, epoch: int) -> bool:
        return epoch >= self.epochs - self.no_aug_epochs

    # -- TrainTask --------------------------------------------------------------------------------
    def build_dataset(self) -> Sequence[Any]:
        from kprtrack.train.detector.data import load_detection_items

        return load_detection_items(self.root, self.split, self.annotations_dir,
                                    sequences=self.sequences, labeled_only=True)

    def augment_config(self):
        from kprtrack.train.detector.augment import AugmentConfig

        return AugmentConfig(**(option(self.cfg, "aug") or {}))

    def make_collate(self, dataset: Sequence[Any], seed: int, epoch: int) -> Callable[[list[Any]], dict]:
        from kprtrack.train.detector.augment import DetectionCollate

        return DetectionCollate(dataset, self.train_size, seed, mosaic=not self.in_no_aug_epochs(epoch),
                                config=self.augment_config())

    def build_model(self) -> nn.Module:
        if self.weights is None:
            model = YOLOX(self.model_size or "s", self.num_classes)
            initialize_biases(model)
        else:
            from kprtrack.detector.yolox import build_model

            source, _ = build_model(self.weights, self.model_size, None, self.download)
            self._found_size = source.size_name
            found = source.head.num_classes
            if found == self.num_classes:
                model = source
            elif self.num_classes == 1:
                model = YOLOX(source.size_name, 1)
                model.load_state_dict(person_head_state(source.state_dict(), self.person_class), strict=True)
            else:
                raise InputError(f"model.num_classes={self.num_classes} but {self.weights} has {found} classes "
                                 f"(use {found}, or 1 for a person-only head cut from it)")
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = BN_MOMENTUM
        return model.train()

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Upstream's three groups: BatchNorm weights (no decay), conv/linear weights (the
        optimiser's weight decay), biases (no decay)."""
        norm_weights, weights, biases = [], [], []
        for name, module in model.named_modules():
            bias = getattr(module, "bias", None)
            if isinstance(bias, nn.Parameter) and bias.requires_grad:
                biases.append(bias)
            weight = getattr(module, "weight", None)
            if not isinstance(weight, nn.Parameter) or not weight.requires_grad:
                continue
            if isinstance(module, nn.modules.batchnorm._BatchNorm) or "bn" in name.split(".")[-1:]:
                norm_weights.append(weight)
            else:
                weights.append(weight)
        return [{"params": norm_weights, "weight_decay": 0.0}, {"params": weights},
                {"params": biases, "weight_decay": 0.0}]

    def loss(self, model: nn.Module, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        device = next(model.parameters()).device
        images = batch["images"].to(device, non_blocking=True)
        targets = batch["targets"].to(device, non_blocking=True)
        use_l1 = self.in_no_aug_epochs(epoch) if self.use_l1 is None else self.use_l1
        return self.losses[use_l1](model(images, train_outputs=True), targets)

    def checkpoint_meta(self, model: nn.Module) -> dict:
        net = getattr(model, "module", model)
        return {"preprocess": "yolox", "input_size": list(self.train_size), "nms_thresh": NMS_THRESH,
                "num_classes": int(net.head.num_classes), "person_class": 0 if self.num_classes == 1
                else self.person_class, "model_size": net.size_name,
                "trained_on": f"{Path(str(self.root)).name}/{self.annotations_dir}/{self.split}"
                              + (f" ({len(self.sequences)} sequences)" if self.sequences else ""),
                "init": "random" if self.weights is None else os.fspath(self.weights)}

    def save_checkpoint(self, path: Path, model: nn.Module, training_state: dict) -> None:
        net = getattr(model, "module", model)  # DDP
        save_yolox_checkpoint(path, net.state_dict(), self.checkpoint_meta(net), training_state)

    def read_checkpoint(self, path: Path) -> tuple[dict, dict]:
        from kprtrack.weights import torch_load

        checkpoint = torch_load(path)
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:
            raise InputError("not a train-detector checkpoint (no 'model' entry)", path)
        return dict(checkpoint["model"]), dict(checkpoint.get("training_state") or {})

    def evaluate(self, checkpoint: Path, output_dir: Path) -> dict[str, float]:
        split = option(self.cfg, "eval.split")
        if not split:
            return {}
        from kprtrack.train.detector.evaluate import TRACKER_THRESHOLDS, evaluate_detector

        device = option(self.cfg, "eval.device") or option(self.cfg, "device", "cpu")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return evaluate_detector(
            checkpoint, option(self.cfg, "eval.root", self.root), split,
            option(self.cfg, "eval.annotations_dir", self.annotations_dir), input_size=option(self.cfg, "eval.input_size"),
            device=device,
            score_thresh=float(option(self.cfg, "eval.score_thresh", 0.01)),
            recall_thresholds=tuple(option(self.cfg, "eval.recall_thresholds", TRACKER_THRESHOLDS)),
            recall_iou=float(option(self.cfg, "eval.recall_iou", 0.5)),
            batch_size=int(option(self.cfg, "eval.batch_size", 8)),
            sequences=option(self.cfg, "eval.sequences"), output_dir=output_dir)
