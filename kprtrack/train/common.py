"""What every trainer shares (train-reid, train-detector, train-pose): torchrun process setup,
per-(epoch, rank) seeding, the per-rank slice collate, ``metrics.csv`` and TensorBoard logging."""
from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kprtrack.errors import InputError
from kprtrack.io import write_text


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        if self.device.type == "cuda":
            t = t.to(self.device)
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.cpu().tolist())}


def setup_distributed(device_name: str) -> Dist:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; without them (or WORLD_SIZE=1) one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device={device_name} but CUDA is not available (use device=cpu)")
        if device.index is None:
            device = torch.device("cuda", local if world > 1 else 0)
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        # rank 0 evaluates (a whole val split) while the others wait at a barrier: far longer than
        # the default collective timeout (10 min for nccl) on a real data set
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                             timeout=datetime.timedelta(hours=4))
    return Dist(rank, world, local, device)


def ddp(forward: torch.nn.Module, dist: Dist, find_unused: bool = False) -> torch.nn.Module:
    """``forward`` (a module computing the loss) under DistributedDataParallel when the run is
    distributed, else as it is."""
    if not dist.enabled:
        return forward
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(forward, device_ids=ids, find_unused_parameters=find_unused)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 10_007 + int(rank) * 101 + 17) % (2 ** 31)


class SliceCollate:
    """Collates one rank's P*K/W indices as ``len(makers)`` contiguous sub-batches, sub-batch s by
    ``makers[s]`` (its own generator) -> a list of batches. Picklable (DataLoader workers)."""

    def __init__(self, makers: list):
        self.makers = list(makers)

    def __call__(self, items: list) -> list[dict]:
        n = len(items) // len(self.makers)
        return [make(items[s * n:(s + 1) * n]) for s, make in enumerate(self.makers)]


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    write_text(path, out.getvalue())


def read_metrics_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (_number(v) if k != "epoch" else int(v)) for k, v in row.items()} for row in rows]


def _number(text: str):
    if text in ("", None):
        return None
    try:
        return float(text)
    except ValueError:
        return text


class TensorBoard:
    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if not enabled:
            return
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:  # SummaryWriter needs it
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))

    def log(self, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and value == value:
                self.writer.add_scalar(f"train/{key}", value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def option(node, key: str, default=None):
    """``node.<key>`` (a dotted path) of an OmegaConf config or a dict; ``default`` when a part is
    absent, missing (``???``) or null. Containers come back as plain dicts/lists."""
    for part in key.split("."):
        if node is None:
            return default
        try:
            node = node.get(part) if hasattr(node, "get") else getattr(node, part, None)
        except Exception:  # omegaconf's MissingMandatoryValue
            return default
    if node is None:
        return default
    if type(node).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(node, resolve=True)
    return node


def accumulated_step(wrapped, model, slices: list, forward, optimizer, scaler, dist: Dist, use_amp: bool,
                     where: str) -> tuple[float, dict[str, float]]:
    """One optimiser step over a rank's sub-batches: each one's loss / S backpropagated (DDP
    all-reduces on the last only), then the step. ``forward(wrapped, batch) -> (total, terms)``.
    BatchNorm running statistics are those of sub-batch 0, as DDP keeps rank 0's buffers, so one
    process with S sub-batches matches S processes. -> (loss, {term: value}), means over sub-batches."""
    subs = len(slices)
    sums: dict[str, float] = {}
    optimizer.zero_grad(set_to_none=True)
    for s, batch in enumerate(slices):
        batch = {k: (v.to(dist.device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                 for k, v in batch.items()}
        sync = s == subs - 1 or not dist.enabled
        kept = [b.detach().clone() for b in model.buffers()] if s > 0 else None
        with (wrapped.no_sync() if not sync else contextlib.nullcontext()):
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                total, terms = forward(wrapped, batch)
            if not torch.isfinite(total):
                raise InputError(f"the loss became {float(total.detach())} at {where} (lower optim.lr, check the data)")
            scaled = total / subs
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if kept is not None:
            with torch.no_grad():
                for buffer, value in zip(model.buffers(), kept):
                    buffer.copy_(value)
        for name, value in {"loss": total, **terms}.items():
            sums[name] = sums.get(name, 0.0) + float(torch.as_tensor(value).detach()) / subs
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return sums["loss"], sums


def batch_rng(seed: int, keys) -> np.random.Generator:
    """The augmentation generator of one batch: from the collate's seed (run seed, epoch, slot) and
    the batch's item keys, so a batch is augmented the same whichever DataLoader worker makes it,
    however many there are, and wherever the data set lives."""
    digest = hashlib.blake2b(digest_size=8)
    for key in keys:
        digest.update(f"{key}\n".encode())
    return np.random.default_rng([int(seed) % 2**64, int.from_bytes(digest.digest(), "little")])
