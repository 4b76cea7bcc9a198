"""Learning-rate schedules of the detector and pose trainers, as functions of (epoch, iteration).

* ``warmcos`` — YOLOX's ``yoloxwarmcos``: quadratic warm-up over ``warmup_epochs`` from
  ``warmup_start * lr``, cosine down to ``min_lr_ratio * lr``, then constant ``min_lr_ratio * lr``
  over the last ``no_aug_epochs`` (YOLOX evaluates it at iteration ``t + 1``, t counted from 0).
* ``steps`` — mmpose's top-down recipe: linear warm-up over ``warmup_iters`` iterations from
  ``warmup_start * lr`` (mmengine LinearLR, by iteration), times ``gamma`` at each milestone epoch
  (MultiStepLR, by epoch).
* ``constant``.

Stateless: a resumed run recomputes the same values from its position, nothing to save.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from kprtrack.errors import InputError

KINDS = ("warmcos", "steps", "constant")


@dataclass(frozen=True)
class Schedule:
    kind: str
    lr: float
    epochs: int
    iters_per_epoch: int
    warmup_epochs: float = 0.0
    warmup_iters: int = 0
    warmup_start: float = 0.0
    min_lr_ratio: float = 0.05
    no_aug_epochs: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"optim.schedule={self.kind!r} unknown (known: {', '.join(KINDS)})")

    def at(self, epoch: int, iteration: int) -> float:
        if self.kind == "warmcos":
            return self._warmcos(epoch * self.iters_per_epoch + iteration + 1)
        if self.kind == "steps":
            return self._steps(epoch, epoch * self.iters_per_epoch + iteration)
        return self.lr

    def _warmcos(self, t: int) -> float:
        total = self.epochs * self.iters_per_epoch
        warmup = self.warmup_epochs * self.iters_per_epoch
        no_aug = self.no_aug_epochs * self.iters_per_epoch
        low, start = self.lr * self.min_lr_ratio, self.lr * self.warmup_start
        if warmup > 0 and t <= warmup:
            return (self.lr - start) * (t / warmup) ** 2 + start
        if t >= total - no_aug:
            return low
        span = max(1.0, total - warmup - no_aug)
        return low + 0.5 * (self.lr - low) * (1.0 + math.cos(math.pi * (t - warmup) / span))

    def _steps(self, epoch: int, t: int) -> float:
        lr = self.lr * self.gamma ** sum(1 for m in self.milestones if epoch >= m)
        if self.warmup_iters > 0 and t < self.warmup_iters:
            lr *= self.warmup_start + (1.0 - self.warmup_start) * t / self.warmup_iters
        return lr


def schedule_from(optim, iters_per_epoch: int) -> Schedule:
    """The schedule an ``optim`` config section asks for."""
    return Schedule(kind=str(optim.schedule), lr=float(optim.lr), epochs=int(optim.epochs),
                    iters_per_epoch=max(1, int(iters_per_epoch)),
                    warmup_epochs=float(optim.get("warmup_epochs") or 0),
                    warmup_iters=int(optim.get("warmup_iters") or 0),
                    warmup_start=float(optim.get("warmup_start") or 0.0),
                    min_lr_ratio=float(optim.get("min_lr_ratio", 0.05)),
                    no_aug_epochs=int(optim.get("no_aug_epochs") or 0),
                    milestones=tuple(int(m) for m in (optim.get("milestones") or ())),
                    gamma=float(optim.get("gamma", 0.1)))
