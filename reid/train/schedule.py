"""Optimiser and learning-rate schedule of KPR training (upstream torchreid's recipe).

* SGD as torchreid's ``build_optimizer(optim='sgd')``: momentum 0.9, dampening 0, weight decay
  5e-4, no Nesterov.
* Cosine annealing after a linear warm-up. Upstream torchreid steps its scheduler once per
  **epoch**; so does this one by default (``per_iteration=False``): the lr is constant within an
  epoch. ``per_iteration=True`` evaluates the same curve at fractional epochs (smoother; an option).
  Warm-up: epoch e < warmup_epochs has lr = base * (f + (1 - f) * e / warmup_epochs), f =
  ``warmup_factor``; then lr = base * 0.5 * (1 + cos(pi * (e - W) / (E - W))) (E = epochs).
* The keypoint tokenizer is frozen for the first ``freeze_tokenizer_epochs`` (SOLIDER recipe):
  :func:`tokenizer_frozen`.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


def build_sgd(params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.9,
              weight_decay: float = 5e-4, nesterov: bool = False) -> torch.optim.SGD:
    return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay,
                           dampening=0.0, nesterov=nesterov)


def warmup_cosine(epoch: float, base_lr: float, epochs: int, warmup_epochs: float = 0,
                  warmup_factor: float = 0.01, min_lr: float = 0.0) -> float:
    """The learning rate at (possibly fractional) ``epoch`` (0-based)."""
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * (warmup_factor + (1.0 - warmup_factor) * epoch / warmup_epochs)
    span = max(1e-12, epochs - warmup_epochs)
    progress = min(1.0, max(0.0, (epoch - warmup_epochs) / span))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets every parameter group's lr from :func:`warmup_cosine`; ``step(epoch, iteration)``
    before each optimiser step. Its state (the last position) is saved with the checkpoint so a
    resumed run continues the same schedule."""

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: float = 0,
                 warmup_factor: float = 0.01, min_lr: float = 0.0, iters_per_epoch: int = 1,
                 per_iteration: bool = False):
        self.optimizer = optimizer
        self.base_lrs = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, self.base_lrs):
            group["initial_lr"] = lr
        self.epochs, self.warmup_epochs = int(epochs), float(warmup_epochs)
        self.warmup_factor, self.min_lr = float(warmup_factor), float(min_lr)
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.per_iteration = bool(per_iteration)
        self.position = (0, 0)

    def lr_at(self, epoch: int, iteration: int = 0) -> list[float]:
        t = epoch + (iteration / self.iters_per_epoch if self.per_iteration else 0.0)
        return [warmup_cosine(t, base, self.epochs, self.warmup_epochs, self.warmup_factor, self.min_lr)
                for base in self.base_lrs]

    def step(self, epoch: int, iteration: int = 0) -> None:
        self.position = (int(epoch), int(iteration))
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(epoch, iteration)):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), "epochs": self.epochs, "warmup_epochs": self.warmup_epochs,
                "warmup_factor": self.warmup_factor, "min_lr": self.min_lr,
                "iters_per_epoch": self.iters_per_epoch, "per_iteration": self.per_iteration,
                "position": list(self.position)}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.epochs, self.warmup_epochs = int(state["epochs"]), float(state["warmup_epochs"])
        self.warmup_factor, self.min_lr = float(state["warmup_factor"]), float(state["min_lr"])
        self.iters_per_epoch, self.per_iteration = int(state["iters_per_epoch"]), bool(state["per_iteration"])
        self.step(*state["position"])


def tokenizer_frozen(epoch: int, freeze_tokenizer_epochs: int) -> bool:
    """SOLIDER recipe: the keypoint tokenizer stays frozen during the first N epochs (0-based epoch < N)."""
    return int(epoch) < int(freeze_tokenizer_epochs)
