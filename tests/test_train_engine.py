"""The detector/pose training engine (kprtrack/train/engine.py) on a seconds-fast toy task
(tests/train_toy.py): loss goes down, checkpoints, resume, EMA, schedules, DDP equality."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kprtrack.errors import InputError
from kprtrack.train.common import read_metrics_csv
from kprtrack.train.engine import GlobalBatches, ModelEMA, train
from kprtrack.train.schedules import Schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_toy import ToyTask, toy_config  # noqa: E402

TOY = Path(__file__).resolve().parent / "train_toy.py"


def _run(out: Path, **overrides):
    cfg = toy_config(output_dir=str(out), **overrides)
    return train(cfg, ToyTask(cfg))


def _weights(path: Path) -> dict:
    return ToyTask(None).read_checkpoint(path)[0]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_trains_writes_metrics_and_checkpoints(tmp_path):
    result = _run(tmp_path / "run", **{"optim.epochs": 6})
    rows = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.8
    assert rows[-1]["accuracy"] > 0.8  # evaluated from the saved checkpoint every epoch
    assert {"iterations", "lr", "ce", "time_s", "it_per_s"} <= set(rows[0])
    assert result["finished"] and Path(result["checkpoint"]).name == "model.pth"
    assert _same(_weights(tmp_path / "run" / "checkpoints" / "model.pth"), result["model"].state_dict())


@pytest.mark.slow
def test_resume_continues_the_same_run(tmp_path):
    whole = _run(tmp_path / "whole", **{"ema.enabled": True})
    part = _run(tmp_path / "part", **{"ema.enabled": True, "stop_after_epoch": 2})
    assert not part["finished"] and not (tmp_path / "part" / "checkpoints" / "model.pth").exists()
    resumed = _run(tmp_path / "part", **{"ema.enabled": True})
    assert resumed["finished"]
    assert _same(resumed["model"].state_dict(), whole["model"].state_dict())
    assert _same(_weights(tmp_path / "part" / "checkpoints" / "model.pth"),
                 _weights(tmp_path / "whole" / "checkpoints" / "model.pth"))
    a, b = read_metrics_csv(tmp_path / "whole" / "metrics.csv"), read_metrics_csv(tmp_path / "part" / "metrics.csv")
    drop = ("time_s", "it_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == \
           [{k: v for k, v in r.items() if k not in drop} for r in b]


@pytest.mark.slow
def test_ema_is_what_ships(tmp_path):
    result = _run(tmp_path / "run", **{"ema.enabled": True})
    shipped = _weights(tmp_path / "run" / "checkpoints" / "model.pth")
    assert _same(shipped, result["ema"].state_dict())
    assert not _same(shipped, result["model"].state_dict())


@pytest.mark.slow
def test_freeze_bn_stats_keeps_running_statistics(tmp_path):
    start = ToyTask(None).build_model().state_dict()
    result = _run(tmp_path / "run", freeze_bn_stats=True)
    end = result["model"].state_dict()
    assert torch.equal(end["1.running_mean"], start["1.running_mean"])
    assert torch.equal(end["1.running_var"], start["1.running_var"])
    assert not torch.equal(end["1.weight"], start["1.weight"])  # the affine part still trains
    moving = _run(tmp_path / "moving")["model"].state_dict()
    assert not torch.equal(moving["1.running_mean"], start["1.running_mean"])


def test_ema_decay_ramps_up():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.9998)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # d = 0.9998 * (1 - exp(-1/2000)) ~ 5e-4: nearly a copy at first
    d = 0.9998 * (1 - math.exp(-1 / 2000))
    assert float(ema.module.weight) == pytest.approx(1 - d)


def test_sampler_slices_one_global_batch():
    full = list(GlobalBatches(10, 4, seed=3))
    ranks = [list(GlobalBatches(10, 4, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(full) == 2 and all(len(b) == 4 for b in full)
    assert [a + b for a, b in zip(*ranks)] == full
    assert list(GlobalBatches(3, 4, seed=0)) and len(list(GlobalBatches(3, 4, seed=0))[0]) == 4  # repeats


def test_warmcos_matches_yolox_formula():
    s = Schedule("warmcos", lr=0.01, epochs=10, iters_per_epoch=10, warmup_epochs=2, min_lr_ratio=0.05,
                 no_aug_epochs=2)
    assert s.at(0, 0) == pytest.approx(0.01 * (1 / 20) ** 2)
    assert s.at(1, 9) == pytest.approx(0.01)  # t = 20 = end of warm-up
    assert s.at(8, 0) == pytest.approx(0.0005) and s.at(9, 9) == pytest.approx(0.0005)
    mid = s.at(4, 9)  # t = 50: halfway through the cosine span 20..80
    assert mid == pytest.approx(0.0005 + 0.5 * (0.01 - 0.0005))


def test_steps_schedule_matches_mmpose():
    s = Schedule("steps", lr=5e-4, epochs=20, iters_per_epoch=100, warmup_iters=500, warmup_start=0.001,
                 milestones=(10, 15), gamma=0.1)
    assert s.at(0, 0) == pytest.approx(5e-4 * 0.001)
    assert s.at(2, 50) == pytest.approx(5e-4 * (0.001 + 0.999 * 250 / 500))
    assert s.at(9, 99) == pytest.approx(5e-4) and s.at(10, 0) == pytest.approx(5e-5)
    assert s.at(15, 0) == pytest.approx(5e-6)


def test_bad_settings_are_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="split evenly"):
        _run(tmp_path / "a", batch_size=6, sub_batches=4)
    with pytest.raises(InputError, match="optim.name"):
        _run(tmp_path / "b", **{"optim.name": "lbfgs"})
    with pytest.raises(InputError, match="loss became"):
        _run(tmp_path / "c", **{"optim.lr": 1e30, "optim.warmup_epochs": 0, "optim.nesterov": False})


def _toy_run(nproc: int, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(TOY), f"output_dir={out}", "optim.epochs=3", "ema.enabled=true", *extra]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=240)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_with_two_sub_batches(tmp_path):
    """Rank r of 2 and sub-batch r of 1 process see the same samples, augmentation and BatchNorm
    statistics; the all-reduced (averaged) gradient equals the accumulated one. One process over the
    undivided batch (BatchNorm over all 8) differs, so the test can fail."""
    two = _toy_run(2, tmp_path / "two")
    one = _toy_run(1, tmp_path / "one", "sub_batches=2")
    plain = _toy_run(1, tmp_path / "plain")
    for done in (two, one, plain):
        assert done.returncode == 0, done.stderr[-3000:]
    a, b, c = (_weights(tmp_path / d / "checkpoints" / "model.pth") for d in ("two", "one", "plain"))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k].float(), c[k].float(), atol=1e-6) for k in a)
    la = [r["loss"] for r in read_metrics_csv(tmp_path / "two" / "metrics.csv")]
    lb = [r["loss"] for r in read_metrics_csv(tmp_path / "one" / "metrics.csv")]
    assert la == pytest.approx(lb, rel=1e-6)
