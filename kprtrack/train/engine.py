"""The training loop of ``train-detector`` and ``train-pose``: one :class:`~kprtrack.train.task.TrainTask`
driven through epochs, in one process or one per GPU/CPU slot under ``torchrun`` (DDP; gloo on CPU,
nccl on CUDA).

Batches: each epoch draws one permutation of the training items (the same on every rank, seeded
from (seed, epoch)) cut into global batches of ``batch_size``; rank r takes the r-th contiguous
slice of each, and ``sub_batches=S`` cuts that slice again into S sub-batches whose gradients are
accumulated before one optimiser step (BatchNorm running statistics are those of sub-batch 0, as DDP
keeps rank 0's buffers). Sub-batch s of rank r is collated (augmented) with the
generator of slot ``r * S + s``, seeded from (seed, epoch, slot): one process with S sub-batches
computes the same update as S processes (BatchNorm statistics and loss normalisation per slice,
as per rank), and a resumed run draws the same batches as an uninterrupted one.

Per epoch (rank 0): ``<output_dir>/metrics.csv`` (epoch, iterations, lr, loss terms, time),
TensorBoard scalars when installed, ``checkpoints/last.pth`` (the task's inference format, EMA
weights when EMA is on, plus the training state), validation metrics every ``eval_every`` epochs
through the task's evaluation, which loads that file with the inference stage. At the end:
``checkpoints/model.pth``. ``resume=true`` continues from ``last.pth``.

``freeze_bn_stats=true`` keeps every BatchNorm in inference mode (the start weights' running
statistics, affine parameters still trained), for small-batch fine-tunes.
"""
from __future__ import annotations

import copy
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kprtrack.errors import InputError
from kprtrack.io import atomic_open
from kprtrack.train.common import (Dist, SliceCollate, TensorBoard, accumulated_step, ddp, epoch_seed,
                                   read_metrics_csv, seed_all, setup_distributed, write_metrics_csv)
from kprtrack.train.schedules import schedule_from
from kprtrack.train.task import TrainTask


class GlobalBatches(torch.utils.data.Sampler):
    """Per epoch: a seeded permutation of the items (repeated when there are fewer items than one
    batch) cut into global batches; this rank yields its contiguous slice of each."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if num_items <= 0:
            raise InputError("no training items")
        self.num_items, self.batch_size = int(num_items), int(batch_size)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return max(1, self.num_items // self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng(epoch_seed(self.seed, self.epoch, 0))
        need = len(self) * self.batch_size
        order = np.concatenate([rng.permutation(self.num_items) for _ in range(-(-need // self.num_items))])
        share = self.batch_size // self.world_size
        for b in range(len(self)):
            start = b * self.batch_size + self.rank * share
            yield order[start:start + share].tolist()


class ModelEMA:
    """YOLOX's exponential moving average of the weights: decay ``d * (1 - exp(-updates / 2000))``
    (small at first, so early weights are not kept for long); buffers of integer type are copied."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, updates: int = 0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = float(decay), int(updates)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / 2000.0))
        source = model.state_dict()
        for key, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[key].detach(), alpha=1.0 - d)
            else:
                value.copy_(source[key])


class TaskForward(nn.Module):
    """DDP synchronises through ``forward``: this runs the task's loss on the model, so gradient
    all-reduce covers exactly what the loss used."""

    def __init__(self, model: nn.Module, task: TrainTask):
        super().__init__()
        self.model = model
        self.__dict__["task"] = task  # not a submodule
        self.epoch = 0

    def forward(self, batch: dict):
        total, terms = self.task.loss(self.model, batch, self.epoch)
        return total, {k: torch.as_tensor(v).detach() for k, v in terms.items()}


def build_optimizer(groups: list[dict], optim) -> torch.optim.Optimizer:
    name, lr = str(optim.name), float(optim.lr)
    decay = float(optim.get("weight_decay") or 0.0)
    groups = [{"weight_decay": decay, **g} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(optim.get("momentum", 0.9)),
                               nesterov=bool(optim.get("nesterov", False)))
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise InputError(f"optim.name={name!r} unknown (known: sgd, adam, adamw)")


def _forward(wrapped: nn.Module, batch: dict):
    return wrapped(batch)


def _inner(wrapped: nn.Module) -> TaskForward:
    return wrapped.module if hasattr(wrapped, "module") else wrapped


def train(cfg, task: TrainTask) -> dict:
    """Train ``task`` as ``cfg`` says; returns {"history" (metrics rows), "checkpoint", "output_dir", ...}."""
    dist = setup_distributed(str(cfg.device))
    try:
        return _train(cfg, task, dist)
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _check_batch(cfg, dist: Dist) -> tuple[int, int]:
    batch, subs = int(cfg.batch_size), int(cfg.get("sub_batches") or 1)
    if batch < 1 or subs < 1 or batch % (dist.world_size * subs):
        raise InputError(f"batch_size={batch}, sub_batches={subs}: the global batch must split evenly into "
                         f"world_size ({dist.world_size}) x sub_batches ({subs}) slices")
    return batch, subs


def _training_state(cfg, epoch: int, optimizer, scaler, model: nn.Module, ema: ModelEMA | None) -> dict:
    from omegaconf import OmegaConf

    return {"epoch": int(epoch), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "raw_model": model.state_dict() if ema is not None else None,
            "ema_updates": ema.updates if ema is not None else None,
            "train_config": OmegaConf.to_container(cfg, resolve=True)}


def _resume(task: TrainTask, last: Path, model: nn.Module, ema: ModelEMA | None, optimizer, scaler) -> int:
    weights, state = task.read_checkpoint(last)
    if not isinstance(state, dict) or "epoch" not in state or "optimizer" not in state:
        raise InputError("cannot resume: the checkpoint holds no training state (epoch, optimizer)", last)
    model.load_state_dict(state.get("raw_model") or weights)
    if ema is not None:
        ema.module.load_state_dict(weights)
        ema.updates = int(state.get("ema_updates") or 0)
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return int(state["epoch"])


def _train(cfg, task: TrainTask, dist: Dist) -> dict:
    from tqdm import tqdm

    out = Path(str(cfg.output_dir)).expanduser()
    last, final = out / "checkpoints" / "last.pth", out / "checkpoints" / "model.pth"
    seed = int(cfg.seed)
    batch, subs = _check_batch(cfg, dist)
    seed_all(seed)
    dataset = task.build_dataset()
    sampler = GlobalBatches(len(dataset), batch, seed, dist.rank, dist.world_size)
    cap = cfg.get("max_iters_per_epoch")
    iters = len(sampler) if cap in (None, 0) else min(len(sampler), int(cap))
    seed_all(seed)  # the same initial weights on every rank and in every run
    model = task.build_model().to(dist.device)
    if dist.enabled and dist.device.type == "cuda" and bool(cfg.get("sync_bn", False)):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(task.param_groups(model), cfg.optim)
    schedule = schedule_from(cfg.optim, iters)
    ema = ModelEMA(model, float(cfg.ema.decay)) if cfg.get("ema") and bool(cfg.ema.enabled) else None
    use_amp = bool(cfg.amp) and dist.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    epochs = int(cfg.optim.epochs)

    start_epoch, history = 0, []
    if bool(cfg.resume) and last.is_file():
        start_epoch = _resume(task, last, model, ema, optimizer, scaler)
        history = [r for r in read_metrics_csv(out / "metrics.csv") if int(r["epoch"]) <= start_epoch]
        if dist.main:
            print(f"{task.name}: resuming {last} after epoch {start_epoch}")
    wrapped = ddp(TaskForward(model, task), dist, bool(cfg.get("find_unused_parameters", False)))
    board = TensorBoard(out / "tensorboard", dist.main and bool(cfg.get("tensorboard", True)))
    every = int(cfg.get("eval_every") or 0)
    freeze_bn = bool(cfg.get("freeze_bn_stats", False))
    it_per_s = float("nan")
    for epoch in range(start_epoch, epochs):
        _inner(wrapped).epoch = epoch
        seed_all(epoch_seed(seed, epoch, dist.rank))
        sampler.set_epoch(epoch)
        makers = [task.make_collate(dataset, epoch_seed(seed, epoch, dist.rank * subs + s), epoch)
                  for s in range(subs)]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=SliceCollate(makers),
                                             num_workers=int(cfg.num_workers),
                                             pin_memory=dist.device.type == "cuda")
        model.train()
        if freeze_bn:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        sums: dict[str, float] = {}
        done, started, lr = 0, time.perf_counter(), schedule.at(epoch, 0)
        bar = tqdm(total=iters, desc=f"{task.name} epoch {epoch + 1}/{epochs}", unit="it",
                   disable=None if dist.main else True, leave=False)
        for i, slices in enumerate(loader):
            if i >= iters:
                break
            lr = schedule.at(epoch, i)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss, terms = accumulated_step(wrapped, model, slices, _forward, optimizer, scaler, dist, use_amp,
                                                f"{task.name} epoch {epoch + 1}, iteration {i + 1}")
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            if ema is not None:
                ema.update(model)
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}")
        bar.close()
        elapsed = time.perf_counter() - started
        it_per_s = done / elapsed if elapsed > 0 else float("nan")
        means = dist.mean({k: v / max(1, done) for k, v in sums.items()})
        row = {"epoch": epoch + 1, "iterations": done, "lr": lr,
               **{k: means[k] for k in ["loss", *sorted(k for k in means if k != "loss")]},
               "time_s": round(elapsed, 3), "it_per_s": round(it_per_s, 3)}
        if dist.main:
            shipped = ema.module if ema is not None else model
            task.save_checkpoint(last, shipped, _training_state(cfg, epoch + 1, optimizer, scaler, model, ema))
            if every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
                row.update(task.evaluate(last, out / "eval" / f"epoch_{epoch + 1:03d}"))
            history.append(row)
            write_metrics_csv(out / "metrics.csv", history)
            board.log(row)
            text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in row.items() if k not in ("epoch", "iterations"))
            print(f"{task.name} epoch {epoch + 1}/{epochs}: {text}")
        dist.barrier()
        if cfg.get("stop_after_epoch") is not None and epoch + 1 >= int(cfg.stop_after_epoch):
            break
    board.close()
    finished = (history and int(history[-1]["epoch"]) >= epochs) or start_epoch >= epochs
    if dist.main and finished and last.is_file():  # last.pth is the final epoch's: copied, not pickled again
        with last.open("rb") as source, atomic_open(final, "wb") as target:
            shutil.copyfileobj(source, target)
    dist.barrier()
    return {"epochs": epochs, "history": history, "checkpoint": str(final) if finished else str(last),
            "finished": bool(finished), "output_dir": str(out), "iterations_per_epoch": iters,
            "it_per_s": it_per_s, "world_size": dist.world_size, "model": model,
            "ema": ema.module if ema is not None else None}


def run_command(config_name: str, task_factory, argv: list[str]) -> int:
    """``python -m kprtrack <train command> [overrides]``: compose, build the task, train, say where."""
    from kprtrack.config import compose_command

    cfg = compose_command(config_name, argv)
    if cfg is None:
        return 0
    result = train(cfg, task_factory(cfg))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {result['checkpoint']}")
        print(f"metrics: {Path(result['output_dir']) / 'metrics.csv'}")
    return 0


def main_detector(argv: list[str]) -> int:
    from kprtrack.train.detector.task import DetectorTask

    return run_command("train_detector", DetectorTask, argv)


def main_pose(argv: list[str]) -> int:
    from kprtrack.train.pose.task import PoseTask

    return run_command("train_pose", PoseTask, argv)


__all__ = ["train", "GlobalBatches", "ModelEMA", "main_detector", "main_pose"]
