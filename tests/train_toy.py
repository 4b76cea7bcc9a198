"""A seconds-fast TrainTask for the engine's own tests (kprtrack/train/engine.py): noisy 2-class
points, an MLP with BatchNorm (so per-slice statistics matter, as in YOLOX and HRNet).

``python tests/train_toy.py key=value ...`` trains it (torchrun runs it for the DDP test)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kprtrack.io import atomic_open
from kprtrack.weights import torch_load

ENGINE_DEFAULTS = {
    "output_dir": "toy", "seed": 0, "device": "cpu", "num_workers": 0, "resume": True, "amp": False,
    "tensorboard": False, "eval_every": 1, "max_iters_per_epoch": None, "stop_after_epoch": None,
    "batch_size": 8, "sub_batches": 1,
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
              "schedule": "warmcos", "epochs": 4, "warmup_epochs": 1, "warmup_start": 0.0,
              "min_lr_ratio": 0.05, "no_aug_epochs": 1},
    "ema": {"enabled": False, "decay": 0.9998},
    "data": {"size": 48, "noise": 0.3},
}


class ToyCollate:
    def __init__(self, seed: int, noise: float):
        self.rng, self.noise = np.random.default_rng(seed), noise

    def __call__(self, items: list) -> dict:
        x = np.stack([it[0] for it in items]).astype(np.float32)
        x = x + self.noise * self.rng.standard_normal(x.shape).astype(np.float32)  # "augmentation"
        return {"x": torch.from_numpy(x), "y": torch.tensor([it[1] for it in items])}


class ToyTask:
    name = "train-toy"

    def __init__(self, cfg):
        self.cfg = cfg

    def build_dataset(self):
        rng = np.random.default_rng(123)
        n = int(self.cfg.data.size)
        labels = rng.integers(0, 2, n)
        points = rng.standard_normal((n, 4)) + 1.5 * labels[:, None]
        return [(points[i], int(labels[i])) for i in range(n)]

    def make_collate(self, dataset, seed: int, epoch: int):
        no_aug = epoch >= int(self.cfg.optim.epochs) - int(self.cfg.optim.no_aug_epochs)
        return ToyCollate(seed, 0.0 if no_aug else float(self.cfg.data.noise))

    def build_model(self):
        return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))

    def param_groups(self, model):
        decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim > 1]
        rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.ndim > 1)]
        return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]

    def loss(self, model, batch, epoch):
        ce = nn.functional.cross_entropy(model(batch["x"]), batch["y"])
        return ce, {"ce": ce.detach()}

    def save_checkpoint(self, path: Path, model, training_state: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as handle:
            torch.save({"state_dict": model.state_dict(), "training": training_state}, handle)

    def read_checkpoint(self, path: Path):
        payload = torch_load(path)
        return payload["state_dict"], payload.get("training") or {}

    def evaluate(self, checkpoint: Path, output_dir: Path) -> dict:
        model = self.build_model()
        model.load_state_dict(self.read_checkpoint(checkpoint)[0])
        model.eval()
        data = self.build_dataset()
        x = torch.tensor(np.stack([d[0] for d in data]), dtype=torch.float32)
        y = torch.tensor([d[1] for d in data])
        with torch.no_grad():
            return {"accuracy": float((model(x).argmax(1) == y).float().mean())}


def toy_config(**overrides):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(ENGINE_DEFAULTS)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


if __name__ == "__main__":
    from omegaconf import OmegaConf

    from kprtrack.train.engine import train

    cfg = OmegaConf.merge(OmegaConf.create(ENGINE_DEFAULTS), OmegaConf.from_dotlist(sys.argv[1:]))
    train(cfg, ToyTask(cfg))
