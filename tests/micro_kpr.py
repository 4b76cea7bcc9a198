"""A micro SwinV2 KPR for the training tests: registered as a backbone for one test (monkeypatch)."""
from __future__ import annotations

import torch

from kprtrack.reid.kpr import swin
from kprtrack.reid.kpr.model import KPR, KPRArch
from kprtrack.reid.kpr.swin import SwinSpec


def register_micro_backbone(monkeypatch, name: str) -> None:
    monkeypatch.setitem(swin.SWIN_SPECS, name, SwinSpec(2, embed_dim=16, depths=(2, 2, 2, 2),
                                                        num_heads=(1, 2, 4, 8), window_size=8))


def micro_model(name: str, height: int = 64, width: int = 32, dim: int = 16, num_classes: int = 5, **kw) -> KPR:
    """A seeded KPR on the micro backbone ``name`` (register it first); ``kw``: other KPRArch fields."""
    torch.manual_seed(0)
    return KPR(KPRArch(backbone=name, height=height, width=width, dim_reduce_output=dim, num_classes=num_classes, **kw))
