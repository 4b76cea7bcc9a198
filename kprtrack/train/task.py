"""What the training engine (:mod:`kprtrack.train.engine`) asks of one network's training.

The engine owns everything generic: torchrun/DDP, the global batch split over ranks and
sub-batches, per-(epoch, slot) seeding, AMP, EMA, the learning-rate schedule, resume, progress
bars, ``metrics.csv``. A task owns the data, the network, its loss, its checkpoint format and its
evaluation. Tasks are built from the command's Hydra config (``cfg``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn


class TrainTask(Protocol):
    name: str  # the command, e.g. "train-detector" (progress bars, messages)

    def build_dataset(self) -> Sequence[Any]:
        """The training items (indexable, picklable: DataLoader workers get a copy). Each item is
        whatever the collate function needs (e.g. an image path and its annotations)."""

    def make_collate(self, dataset: Sequence[Any], seed: int, epoch: int) -> Callable[[list[Any]], dict]:
        """A picklable function turning a list of items into one batch dict of tensors, drawing
        its augmentation from its own generator seeded with ``seed`` (the engine derives the seed
        from (run seed, epoch, rank-slot), so a resumed or distributed run sees the same batches).
        ``dataset`` is there for augmentations that mix in other items (mosaic, mixup)."""

    def build_model(self) -> nn.Module:
        """The network with its starting weights loaded (e.g. the official COCO checkpoint)."""

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimiser parameter groups, e.g. ``[{"params": [...]}, {"params": [...], "weight_decay": 0}]``."""

    def loss(self, model: nn.Module, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, named detached terms) of one (sub-)batch; runs inside DDP's forward."""

    def save_checkpoint(self, path: Path, model: nn.Module, training_state: dict) -> None:
        """Write ``model``'s weights at ``path`` in the format the inference stage loads, plus
        ``training_state`` (optimiser, schedule, epoch, EMA...) under its own key, atomically."""

    def read_checkpoint(self, path: Path) -> tuple[dict, dict]:
        """-> (model state dict, training_state) of a file written by :meth:`save_checkpoint`."""

    def evaluate(self, checkpoint: Path, output_dir: Path) -> dict[str, float]:
        """Validation metrics of a saved checkpoint, loaded by the inference stage itself (so each
        evaluation also proves the checkpoint loads). {} when there is nothing to evaluate on."""
