"""``python -m kprtrack train-reid``: the KPR training engine (configs/train_reid.yaml).

One process, or one process per GPU/CPU slot launched by ``torchrun`` (torch DDP; backend gloo on
CPU, nccl on CUDA). The sampler draws one global batch of P identities x K images per iteration
and every rank takes its contiguous slice of it, so N processes see the same global batch as one.
Loss terms are averaged over ranks before logging.

Gradient accumulation: ``optim.sub_batches=S`` splits every rank's slice into S contiguous
sub-batches, each collated by the batch maker that rank ``rank * S + s`` of a W*S-process run would
use, forwarded and backpropagated with its loss scaled 1/S, then one optimiser step. So one process
with S sub-batches computes exactly the per-step update of S processes under torchrun (BatchNorm
statistics and triplet mining per sub-batch, as per rank), and a large global batch fits a small GPU.

Per epoch (rank 0): ``<output_dir>/metrics.csv`` (rewritten atomically: epoch, iterations, lr,
every loss term, time), TensorBoard scalars if ``tensorboard`` is installed, ``checkpoints/last.pth.tar``
(model, optimiser, schedule, epoch; torchreid layout, loads in ``reid=kpr``), rank-1/mAP on the
query/gallery splits every ``eval_every`` epochs through reid-eval's code
(:mod:`kprtrack.reid.evaluate`, with a ``KPRReID`` built from that checkpoint, so every evaluation
also proves the checkpoint loads strictly). At the end: ``checkpoints/model.pth.tar``.

Resume (``resume=true``, the default): a run finding ``checkpoints/last.pth.tar`` continues after
its epoch with the same schedule. Every epoch reseeds torch/numpy/random from (seed, epoch, rank),
so a resumed run draws the same batches and augmentations as an uninterrupted one.

``model.name=toy`` with ``data.layout=synthetic`` is a seconds-fast stand-in (no BatchNorm, one
cross-entropy term) that exercises the engine itself: schedule, resume, CSV, DDP equality.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kprtrack.errors import InputError
from kprtrack.io import atomic_open
from kprtrack.reid.train.schedule import WarmupCosine, build_sgd, tokenizer_frozen
from kprtrack.train.common import (Dist, SliceCollate, TensorBoard, accumulated_step, ddp, epoch_seed,
                                   read_metrics_csv, seed_all, setup_distributed, write_metrics_csv)
from kprtrack.weights import torch_load


# ---------------------------------------------------------------- data

class SyntheticSet(torch.utils.data.Dataset):
    """Engine tests only: identity-coloured noise images."""

    def __init__(self, num_ids: int = 8, per_id: int = 8, height: int = 32, width: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        colours = torch.rand(num_ids, 3, 1, 1, generator=g)
        self.labels = [i for i in range(num_ids) for _ in range(per_id)]
        self.images = torch.stack([colours[i] + 0.5 * torch.randn(3, height, width, generator=g)
                                   for i in self.labels])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"images": self.images[i], "pids": torch.tensor(self.labels[i])}


def collate_dicts(items: list[dict]) -> dict:
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if values[0] is None:
            out[key] = None
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        elif isinstance(values[0], (int, float, np.integer, np.floating)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


def build_train_data(cfg):
    """-> (dataset, labels, num_classes)."""
    data = cfg.data
    if str(data.layout) == "synthetic":
        ds = SyntheticSet(int(data.synthetic.num_ids), int(data.synthetic.per_id), int(data.height),
                          int(data.width), int(cfg.seed))
        return ds, ds.labels, int(data.synthetic.num_ids)
    from kprtrack.reid.train.data import ReidTrainSet

    folder = Path(str(data.dataset_dir)).expanduser()
    if not folder.is_dir():
        raise InputError("training data folder not found (reid-dataset output or a Market-style folder)", folder)
    ds = ReidTrainSet(folder, split=str(data.split), scheme=str(data.parts),
                      keypoint_labels=bool(data.keypoint_labels),
                      labels_dir=str(data.labels_dir) if data.get("labels_dir") else None)
    return ds, ds.labels, ds.num_classes


def build_collate(cfg, seed: int):
    """The batch maker for one epoch (its own generator, seeded from (seed, epoch, rank))."""
    if str(cfg.data.layout) == "synthetic":
        return collate_dicts
    from kprtrack.reid.train.data import BatchConfig, Collate

    data, aug = cfg.data, cfg.aug
    return Collate(BatchConfig(height=int(data.height), width=int(data.width), train=True,
                               prompts=bool(data.prompts), prompt_parts=str(data.prompt_parts),
                               use_negative=bool(data.use_negative_keypoints), vis_thresh=float(data.vis_thresh),
                               scheme=str(data.parts), padding=int(aug.crop_pad), erasing_p=float(aug.erasing),
                               bipo_p=float(aug.bipo), flip_p=float(aug.flip)), seed=seed)


# ---------------------------------------------------------------- model and loss

class ToyModel(nn.Module):
    """Engine tests only: pooled pixels -> MLP -> identity logits (no BatchNorm)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 2))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward_train(self, images, prompt=None):
        return self.body(self.pool(images))


class ToyLoss(nn.Module):
    def __init__(self, label_smoothing: float = 0.1):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits, pids, part_labels=None):
        ce = nn.functional.cross_entropy(logits.float(), pids, label_smoothing=self.label_smoothing)
        return ce, {"id": ce}


class TrainForward(nn.Module):
    """DDP only synchronises through ``forward``: this runs the model's ``forward_train`` and the loss,
    returning (total, detached terms), so DDP's unused-parameter search starts from the loss itself
    (KPR's training outputs include embeddings no loss term reads: the background branch...)."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module):
        super().__init__()
        self.model = model
        self.__dict__["loss_fn"] = loss_fn  # not a submodule: DDP syncs the model only

    def forward(self, images, prompt, pids, part_labels):
        total, terms = self.loss_fn(self.model.forward_train(images, prompt), pids, part_labels)
        return total, {k: torch.as_tensor(v).detach() for k, v in terms.items()}


def build_arch(cfg, num_classes: int):
    from kprtrack.reid.kpr.model import KPRArch
    from kprtrack.reid.kpr.stage import PART_SCHEMES
    from kprtrack.reid.prompts import PROMPT_GROUPS

    m, data = cfg.model, cfg.data
    if str(data.parts) not in PART_SCHEMES:
        raise InputError(f"data.parts={data.parts!r} unknown (known: {', '.join(PART_SCHEMES)})")
    if str(data.prompt_parts) not in PROMPT_GROUPS:
        raise InputError(f"data.prompt_parts={data.prompt_parts!r} unknown (known: {', '.join(PROMPT_GROUPS)})")
    return KPRArch(backbone=str(m.backbone), height=int(data.height), width=int(data.width),
                   parts_num=len(PART_SCHEMES[str(data.parts)]),
                   prompt_parts_num=len(PROMPT_GROUPS[str(data.prompt_parts)]),
                   use_negative_keypoints=bool(data.use_negative_keypoints), masks_prompting=bool(data.prompts),
                   dim_reduce_output=int(m.dim), num_classes=int(num_classes),
                   semantic_weight=float(m.semantic_weight))


def build_model(cfg, num_classes: int):
    """-> (model, arch or None)."""
    if str(cfg.model.name) == "toy":
        return ToyModel(num_classes), None
    if str(cfg.model.name) != "kpr":
        raise InputError(f"model.name must be kpr or toy, got {cfg.model.name!r}")
    from kprtrack.reid.kpr.model import KPR

    arch = build_arch(cfg, num_classes)
    model = KPR(arch)
    weights = cfg.model.get("backbone_weights")
    if weights == "auto":  # the registry entry named after the backbone; none (test-size variants): random init
        from kprtrack.reid.train.backbones import BACKBONE_WEIGHTS

        weights = str(cfg.model.backbone) if str(cfg.model.backbone) in BACKBONE_WEIGHTS else None
        if weights is None:
            print(f"train-reid: no registry backbone weights for {cfg.model.backbone}: random init")
    if weights:
        from kprtrack.reid.train.backbones import load_backbone_weights

        load_backbone_weights(model, str(weights), download=bool(cfg.model.get("backbone_weights_download", True)))
    return model, arch


def build_loss(cfg, num_classes: int):
    if str(cfg.model.name) == "toy":
        return ToyLoss(float(cfg.loss.label_smoothing))
    from omegaconf import OmegaConf

    from kprtrack.reid.train.losses import KPRLoss

    weights = OmegaConf.to_container(cfg.loss.weights, resolve=True) if cfg.loss.get("weights") else None
    return KPRLoss(num_classes, label_smoothing=float(cfg.loss.label_smoothing),
                   triplet_margin=float(cfg.loss.triplet_margin), weights=weights,
                   triplet_distance=str(cfg.loss.get("triplet_distance", "euclidean")))


def set_tokenizer_frozen(model: nn.Module, frozen: bool) -> None:
    if not hasattr(model, "backbone_appearance_feature_extractor"):
        return
    from kprtrack.reid.train.checkpoint import freeze_tokenizer

    freeze_tokenizer(model, frozen)


# ---------------------------------------------------------------- checkpoints and metrics

def _engine_state(optimizer, scheduler, scaler, epoch: int, iteration: int, cfg) -> dict:
    from omegaconf import OmegaConf

    return {"engine": {"epoch": int(epoch), "iteration": int(iteration),
                       "scaler": scaler.state_dict() if scaler is not None else None,
                       "train_config": OmegaConf.to_container(cfg, resolve=True)}}


def save_checkpoint(path: Path, model: nn.Module, arch, epoch: int, optimizer, scheduler, scaler, iteration: int,
                    cfg) -> None:
    extra = _engine_state(optimizer, scheduler, scaler, epoch, iteration, cfg)
    if arch is not None:
        from kprtrack.reid.train.checkpoint import save_torchreid_checkpoint

        data = cfg.data
        save_torchreid_checkpoint(path, model, arch, epoch, optimizer.state_dict(), scheduler.state_dict(), extra,
                                  parts=str(data.parts), prompt_parts=str(data.prompt_parts),
                                  mean=[float(v) for v in data.mean], std=[float(v) for v in data.std],
                                  vis_thresh=float(data.vis_thresh))
        return
    with atomic_open(path, "wb") as handle:
        torch.save({"state_dict": model.state_dict(), "epoch": int(epoch), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), **extra}, handle)


def load_resume(path: Path, arch) -> dict:
    if arch is not None:
        from kprtrack.reid.train.checkpoint import load_training_checkpoint

        payload = load_training_checkpoint(path)
    else:
        payload = torch_load(path)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise InputError("not a training checkpoint (no state_dict)", path)
    return payload


def _resume_fields(payload: dict) -> tuple[int, dict | None]:
    engine = payload.get("engine") or (payload.get("extra") or {}).get("engine") or {}
    epoch = int(engine.get("epoch", payload.get("epoch", 0)))
    return epoch, engine.get("scaler")


# ---------------------------------------------------------------- evaluation

def evaluate_checkpoint(cfg, checkpoint: Path, device: torch.device) -> dict:
    """rank-1 / mAP with prompts (or without when data.prompts=false) on query/gallery, through
    reid-eval's code and a ``KPRReID`` that loads ``checkpoint`` strictly."""
    import warnings

    from kprtrack.reid.evaluate import EmbeddingRunner, SplitInput, evaluate_mode, load_split
    from kprtrack.reid.kpr.stage import KPRReID

    folder = Path(str(cfg.eval.dataset_dir or cfg.data.dataset_dir)).expanduser()
    if not (folder / "splits" / "query.json").is_file():
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backend = KPRReID(**reid_settings(cfg, checkpoint, device))
    runner = EmbeddingRunner(backend, batch_size=int(cfg.eval.batch_size))
    query = SplitInput(folder, "query", load_split(folder, "query"))
    gallery = SplitInput(folder, "gallery", load_split(folder, "gallery"))
    results = evaluate_mode(runner, bool(cfg.data.prompts), query, gallery)
    summary = results.summary([1])
    return {"rank1": summary["rank1"], "mAP": summary["mAP"]}


def reid_settings(cfg, checkpoint: Path | str, device: torch.device | str = "cpu") -> dict:
    """The ``reid=kpr`` keys that load a checkpoint of this training run."""
    data = cfg.data
    return dict(weights=str(checkpoint), backbone=str(cfg.model.backbone), parts=str(data.parts),
                prompt_parts=str(data.prompt_parts), dim=int(cfg.model.dim), height=int(data.height),
                width=int(data.width), mean=[float(v) for v in data.mean], std=[float(v) for v in data.std],
                prompts=bool(data.prompts), use_negative_keypoints=bool(data.use_negative_keypoints),
                device=str(device), download=False)


# ---------------------------------------------------------------- training

def _forward(wrapped: nn.Module, batch: dict):
    return wrapped(batch["images"], batch.get("prompts"), batch["pids"], batch.get("part_labels"))


def train(cfg) -> dict:
    """Train as configured; returns {"epochs", "history" (metrics rows), "checkpoint", "output_dir"}."""
    dist = setup_distributed(str(cfg.device))
    try:
        return _train(cfg, dist)
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(cfg, dist: Dist) -> dict:
    from tqdm import tqdm

    out = Path(str(cfg.output_dir)).expanduser()
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.pth.tar"
    seed = int(cfg.seed)
    seed_all(seed)
    dataset, labels, num_classes = build_train_data(cfg)
    opt = cfg.optim
    from kprtrack.reid.train.data import PKSampler

    try:
        sampler = PKSampler(labels, int(opt.p), int(opt.k), seed, dist.rank, dist.world_size)
    except ValueError as err:
        raise InputError(str(err)) from None
    if len(sampler) == 0:
        raise InputError(f"no P={opt.p} x K={opt.k} batch can be drawn from {len(labels)} training images")
    subs = int(opt.get("sub_batches") or 1)
    if subs < 1 or (int(opt.p) * int(opt.k)) % (dist.world_size * subs):
        raise InputError(f"optim.sub_batches={subs}: the global batch P x K = {opt.p} x {opt.k} must split "
                         f"evenly into world_size ({dist.world_size}) x sub_batches ({subs}) slices")
    iters = len(sampler) if cfg.get("max_iters_per_epoch") in (None, 0) else min(len(sampler), int(cfg.max_iters_per_epoch))
    workers = int(cfg.num_workers)
    seed_all(seed)  # the same initial weights on every rank and in every run
    model, arch = build_model(cfg, num_classes)
    model.to(dist.device)
    if dist.enabled and dist.device.type == "cuda" and bool(cfg.sync_bn):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = build_loss(cfg, num_classes).to(dist.device)
    optimizer = build_sgd(model.parameters(), float(opt.lr), float(opt.momentum), float(opt.weight_decay),
                          bool(opt.nesterov))
    scheduler = WarmupCosine(optimizer, int(opt.epochs), float(opt.warmup_epochs), float(opt.warmup_factor),
                             float(opt.min_lr), iters, bool(opt.per_iteration))
    use_amp = bool(cfg.amp) and dist.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    start_epoch, history = 0, []
    if bool(cfg.resume) and last.is_file():
        payload = load_resume(last, arch)
        state = {k.removeprefix("module."): v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state, strict=arch is None)
        if arch is not None:
            from kprtrack.reid.kpr.checkpoint import load_strict

            load_strict(model, state, last)
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        start_epoch, scaler_state = _resume_fields(payload)
        if scaler is not None and scaler_state:
            scaler.load_state_dict(scaler_state)
        history = [r for r in read_metrics_csv(out / "metrics.csv") if int(r["epoch"]) <= start_epoch]
        if dist.main:
            print(f"train-reid: resuming {last} after epoch {start_epoch}")
    epochs = int(opt.epochs)
    board = TensorBoard(out / "tensorboard", dist.main and bool(cfg.tensorboard))
    freeze_epochs = int(cfg.model.freeze_tokenizer_epochs)
    frozen_state, wrapped = None, None
    find_unused = arch is not None  # KPR carries parameters the training path does not use (parts_embed...)
    it_per_s = float("nan")
    for epoch in range(start_epoch, epochs):
        frozen = tokenizer_frozen(epoch, freeze_epochs)
        if frozen != frozen_state or wrapped is None:
            set_tokenizer_frozen(model, frozen)
            # DDP registers the trainable parameters once: re-wrapped when the tokenizer freezes or thaws
            wrapped = ddp(TrainForward(model, loss_fn), dist, find_unused)
            frozen_state = frozen
        seed_all(epoch_seed(seed, epoch, dist.rank))
        sampler.set_epoch(epoch)
        # per epoch: sub-batch s of this rank is made as rank (rank * subs + s) of a world_size * subs
        # run would make it, seeded from (seed, epoch, that rank); subs=1: (seed, epoch, rank)
        makers = [build_collate(cfg, epoch_seed(seed, epoch, dist.rank * subs + s)) for s in range(subs)]
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=SliceCollate(makers),
            num_workers=workers, pin_memory=dist.device.type == "cuda")
        model.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        bar = tqdm(total=iters, desc=f"train-reid epoch {epoch + 1}/{epochs}", unit="it",
                   disable=None if dist.main else True, leave=False)
        done = 0
        for i, slices in enumerate(loader):
            if i >= iters:
                break
            scheduler.step(epoch, i)
            step_loss, terms = accumulated_step(wrapped, model, slices, _forward, optimizer, scaler, dist, use_amp,
                                                f"train-reid epoch {epoch + 1}, iteration {i + 1}")
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
        bar.close()
        elapsed = time.perf_counter() - started
        it_per_s = done / elapsed if elapsed > 0 else float("nan")
        means = dist.mean({k: v / max(1, done) for k, v in sums.items()})
        row = {"epoch": epoch + 1, "iterations": done, "lr": scheduler.get_last_lr()[0],
               "tokenizer_frozen": int(frozen) if arch is not None else None,
               **{k: means[k] for k in ["loss", *sorted(k for k in means if k != "loss")]},
               "time_s": round(elapsed, 3), "it_per_s": round(it_per_s, 3)}
        row = {k: v for k, v in row.items() if v is not None}
        if dist.main:
            save_checkpoint(last, model, arch, epoch + 1, optimizer, scheduler, scaler, 0, cfg)
            every = int(cfg.eval_every or 0)
            if arch is not None and every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
                row.update(evaluate_checkpoint(cfg, last, dist.device))
            history.append(row)
            write_metrics_csv(out / "metrics.csv", history)
            board.log(row)
            terms_text = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k not in ("epoch", "iterations"))
            print(f"train-reid epoch {epoch + 1}/{epochs}: {terms_text}")
        dist.barrier()
        if cfg.get("stop_after_epoch") is not None and epoch + 1 >= int(cfg.stop_after_epoch):
            break
    board.close()
    final = ckpt_dir / "model.pth.tar"
    finished = history and int(history[-1]["epoch"]) >= epochs or start_epoch >= epochs
    if dist.main:
        if last.is_file() and finished:
            save_checkpoint(final, model, arch, epochs, optimizer, scheduler, scaler, 0, cfg)
    dist.barrier()
    return {"epochs": epochs, "history": history, "checkpoint": str(final), "output_dir": str(out),
            "iterations_per_epoch": iters, "it_per_s": it_per_s, "world_size": dist.world_size}


def main(argv: list[str]) -> int:
    from kprtrack.config import compose_command

    cfg = compose_command("train_reid", argv)
    if cfg is None:
        return 0
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {result['checkpoint']}")
        print(f"metrics: {Path(result['output_dir']) / 'metrics.csv'}")
    return 0


__all__ = ["train", "main", "reid_settings", "evaluate_checkpoint"]
