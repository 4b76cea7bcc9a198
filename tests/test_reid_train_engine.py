"""The training engine (issue #18): schedule, resume, CSV, DDP equality on CPU, and (once the model,
loss and data pieces exist) the tiny Swin KPR learning on the demo Occ-PTrack subset."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kprtrack.cli import main as cli_main
from kprtrack.config import compose
from kprtrack.reid.train.engine import train
from kprtrack.reid.train.schedule import WarmupCosine, build_sgd, tokenizer_frozen, warmup_cosine

TOY = ["model.name=toy", "data.layout=synthetic", "data.height=32", "data.width=16", "optim.p=4", "optim.k=4",
       "optim.lr=0.1", "optim.warmup_epochs=1", "num_workers=0", "device=cpu", "eval_every=0", "tensorboard=false"]


def toy_cfg(out: Path, *extra: str):
    return compose("train_reid", [*TOY, f"output_dir={out}", *extra])


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- schedule

def test_warmup_ramps_linearly_then_follows_cosine():
    base, epochs, warm = 0.008, 120, 5
    lrs = [warmup_cosine(e, base, epochs, warm, 0.01) for e in range(epochs)]
    assert lrs[0] == pytest.approx(base * 0.01)
    assert all(b > a for a, b in zip(lrs[:warm], lrs[1:warm + 1]))  # ramps up over the warm-up
    assert lrs[warm] == pytest.approx(base)  # warm-up done: the cosine starts at the base lr
    for e in range(warm, epochs):
        assert lrs[e] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * (e - warm) / (epochs - warm))))
    assert all(b < a for a, b in zip(lrs[warm:], lrs[warm + 1:]))


def test_without_warmup_starts_at_base_lr():
    assert warmup_cosine(0, 0.008, 120, 0) == pytest.approx(0.008)
    assert warmup_cosine(60, 0.008, 120, 0) == pytest.approx(0.004)


def test_scheduler_sets_optimizer_lr_per_epoch_or_per_iteration_and_restores():
    opt = build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4 and not opt.defaults["nesterov"]
    sched = WarmupCosine(opt, epochs=10, warmup_epochs=2, iters_per_epoch=4)
    sched.step(1, 3)
    assert sched.get_last_lr()[0] == pytest.approx(0.1 * (0.01 + 0.99 * 0.5))  # per epoch: iteration ignored
    per_it = WarmupCosine(build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 10, 2, iters_per_epoch=4,
                          per_iteration=True)
    per_it.step(1, 2)
    assert per_it.get_last_lr()[0] == pytest.approx(0.1 * (0.01 + 0.99 * 1.5 / 2))
    other = WarmupCosine(build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.5), 3, 0)
    other.load_state_dict(sched.state_dict())
    assert other.get_last_lr() == sched.get_last_lr()


def test_tokenizer_frozen_for_first_epochs_only():
    assert [tokenizer_frozen(e, 2) for e in range(4)] == [True, True, False, False]
    assert not tokenizer_frozen(0, 0)


def test_recipes_hold_the_issue_values():
    cfg = compose("train_reid", [])
    assert (cfg.optim.p, cfg.optim.k, cfg.optim.lr, cfg.optim.epochs, cfg.optim.warmup_epochs) == (16, 4, 0.008, 120, 5)
    assert (cfg.data.height, cfg.data.width, cfg.model.dim, cfg.loss.label_smoothing, cfg.loss.triplet_margin) == \
        (256, 128, 256, 0.1, 0.3)
    sol = compose("train_reid", ["recipe=sol"])
    assert (sol.optim.lr, sol.data.height, sol.model.freeze_tokenizer_epochs, sol.model.semantic_weight) == \
        (0.0002, 384, 20, 0.2)
    assert compose("train_reid", ["recipe=sol", "optim.lr=0.001"]).optim.lr == 0.001  # the command line wins


# ---------------------------------------------------------------- engine with the toy model

def test_toy_training_writes_metrics_checkpoints_and_lr_follows_schedule(tmp_path):
    result = train(toy_cfg(tmp_path, "optim.epochs=3"))
    table = rows(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in table] == [1, 2, 3]
    assert {"lr", "loss", "id", "time_s", "iterations"} <= set(table[0])
    expected = [warmup_cosine(e, 0.1, 3, 1, 0.01) for e in range(3)]
    assert [float(r["lr"]) for r in table] == pytest.approx(expected)
    assert (tmp_path / "checkpoints" / "last.pth.tar").is_file()
    assert Path(result["checkpoint"]).is_file()


@pytest.mark.slow
def test_resume_continues_the_same_schedule(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(toy_cfg(straight, "optim.epochs=4"))
    train(toy_cfg(split, "optim.epochs=4", "stop_after_epoch=2"))  # as if killed after epoch 2
    assert not (split / "checkpoints" / "model.pth.tar").exists()
    assert len(rows(split / "metrics.csv")) == 2
    train(toy_cfg(split, "optim.epochs=4"))  # finds checkpoints/last.pth.tar
    a, b = rows(straight / "metrics.csv"), rows(split / "metrics.csv")
    assert [r["epoch"] for r in b] == ["1", "2", "3", "4"]
    for ra, rb in zip(a, b):
        for key in ("lr", "loss", "id", "iterations"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-5, abs=1e-7)
    wa = torch.load(straight / "checkpoints" / "model.pth.tar", weights_only=True)["state_dict"]
    wb = torch.load(split / "checkpoints" / "model.pth.tar", weights_only=True)["state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def _torchrun(nproc: int, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "kprtrack", "train-reid", *TOY, f"output_dir={out}", *extra]
    if nproc == 1:
        cmd = [sys.executable, "-m", "kprtrack", "train-reid", *TOY, f"output_dir={out}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.slow
def test_ddp_two_processes_gloo_same_loss_curve_as_one(tmp_path):
    """Same global batch (P*K = 16: 8 per rank) -> same curve. The toy model has no BatchNorm and a
    per-sample-mean loss, so DDP's gradient averaging equals the single-process gradient; KPR's
    BatchNorm statistics and batch-hard triplet mining are per process (see docs/train_reid.md)."""
    one, two = _torchrun(1, tmp_path / "one", "optim.epochs=3"), _torchrun(2, tmp_path / "two", "optim.epochs=3")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = rows(tmp_path / "one" / "metrics.csv"), rows(tmp_path / "two" / "metrics.csv")
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-4)
        assert float(ra["lr"]) == pytest.approx(float(rb["lr"]))
    wa = torch.load(tmp_path / "one" / "checkpoints" / "model.pth.tar", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "two" / "checkpoints" / "model.pth.tar", weights_only=True)["state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-6)


def test_cli_help_lists_train_reid(capsys):
    assert cli_main(["train-reid", "--help"]) == 0
    text = capsys.readouterr().out
    assert "recipe" in text and "warmup_epochs" in text


# ---------------------------------------------------------------- the tiny Swin KPR on real pieces

TINY = ["model.backbone=swinv2_tiny_window8_256", "data.height=64", "data.width=32", "optim.p=4", "optim.k=4",
        "optim.warmup_epochs=1", "optim.lr=0.0005", "num_workers=0", "device=cpu", "tensorboard=false"]


@pytest.fixture(scope="module")
def demo_occ(tmp_path_factory):
    """The demo Occ-PTrack subset; the demo has one annotated split, so train = that split's identities
    (a smoke test that the model learns, not a generalisation claim)."""
    out = tmp_path_factory.mktemp("occ")
    assert cli_main(["reid-dataset", "demo=true", "train_split=val", f"output_dir={out}"]) == 0
    return out


def _random_init_map(cfg, folder: Path) -> float:
    from kprtrack.reid.train.engine import build_model, evaluate_checkpoint, save_checkpoint, seed_all
    from kprtrack.reid.train.schedule import WarmupCosine

    seed_all(int(cfg.seed))
    from kprtrack.reid.train.data import ReidTrainSet

    model, arch = build_model(cfg, ReidTrainSet(cfg.data.dataset_dir).num_classes)
    opt = build_sgd(model.parameters(), 0.1)
    path = folder / "init.pth.tar"
    save_checkpoint(path, model, arch, 0, opt, WarmupCosine(opt, 1), None, 0, cfg)
    return evaluate_checkpoint(cfg, path, torch.device("cpu"))["mAP"]


@pytest.mark.slow
def test_tiny_swin_learns_on_demo_occ_ptrack(demo_occ, tmp_path, capsys):
    """Every loss term decreases (mean of the first vs the last epoch) with the recipe's structure
    (upstream loss weights, raw-Euclidean part triplet, 0.35 pixel CE). lr 0.0005 and no warm-up: at
    higher lr the identity/triplet gradients reaching the attention maps through the part pooling
    outpace the 0.35-weighted pixel CE of this random-init tiny model (docs/train_reid.md)."""
    import time

    from kprtrack.reid.kpr.stage import KPRReID
    from kprtrack.reid.train.engine import reid_settings

    cfg = compose("train_reid", [*TINY, f"data.dataset_dir={demo_occ}", f"output_dir={tmp_path / 'run'}",
                                 "optim.epochs=20", "optim.warmup_epochs=0", "optim.min_lr=0.0005",
                                 "eval_every=20"])
    started = time.perf_counter()
    result = train(cfg)
    elapsed = time.perf_counter() - started
    table = rows(tmp_path / "run" / "metrics.csv")
    iterations = sum(int(r["iterations"]) for r in table)
    assert iterations >= 50  # a few dozen P x K batches (the demo's 10 identities: 3 per epoch)
    terms = [k for k in table[0] if k.endswith(("_id", "_tr", "_ce"))]
    assert set(terms) == {"globl_id", "foreg_id", "conct_id", "parts_tr", "pixls_ce"}
    def mean(part, term):  # 3 epochs (~9 iterations) per mean: single 3-iteration epochs are noisy
        return sum(float(r[term]) for r in part) / len(part)

    for term in terms + ["loss"]:
        assert mean(table[-3:], term) < mean(table[:3], term), (term, [r[term] for r in table])
    trained_map = float(table[-1]["mAP"])
    random_map = _random_init_map(cfg, tmp_path)
    assert trained_map > random_map
    backend = KPRReID(**reid_settings(cfg, result["checkpoint"]))  # strict load, as reid=kpr does
    assert backend.arch.dim_reduce_output == 256
    with capsys.disabled():
        print(f"\ntiny Swin 64x32, batch 16, CPU: {result['it_per_s']:.2f} it/s (last epoch); {iterations} it in "
              f"{elapsed:.1f} s with eval; mAP {random_map:.1f} (random init) -> {trained_map:.1f}; "
              + ", ".join(f"{t} {mean(table[:3], t):.3f}->{mean(table[-3:], t):.3f}" for t in terms))


@pytest.mark.slow
def test_tokenizer_frozen_then_trained(demo_occ, tmp_path):
    from kprtrack.reid.train.checkpoint import load_training_checkpoint, tokenizer_parameters
    from kprtrack.reid.train.engine import build_model, seed_all

    out = tmp_path / "run"
    args = [*TINY, f"data.dataset_dir={demo_occ}", f"output_dir={out}", "optim.epochs=2", "max_iters_per_epoch=2",
            "eval_every=0", "model.freeze_tokenizer_epochs=1"]
    cfg = compose("train_reid", [*args, "stop_after_epoch=1"])
    seed_all(0)
    from kprtrack.reid.train.data import ReidTrainSet

    init, _ = build_model(cfg, ReidTrainSet(demo_occ).num_classes)
    names = list(tokenizer_parameters(init))
    assert names
    train(cfg)
    after1 = load_training_checkpoint(out / "checkpoints" / "last.pth.tar")["state_dict"]
    ref = init.state_dict()
    assert all(torch.equal(after1[n], ref[n]) for n in names)  # frozen in epoch 1
    assert not torch.equal(after1["pixel_classifier.classifier.weight"], ref["pixel_classifier.classifier.weight"])
    train(compose("train_reid", args))  # resumes for epoch 2: unfrozen
    after2 = load_training_checkpoint(out / "checkpoints" / "last.pth.tar")["state_dict"]
    assert any(not torch.equal(after2[n], ref[n]) for n in names)
    assert [float(r["tokenizer_frozen"]) for r in rows(out / "metrics.csv")] == [1, 0]


def _run_tiny(nproc: int, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc -m kprtrack train-reid`` (nproc=1: plain process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "kprtrack", "train-reid", *TINY, f"output_dir={out}", *extra]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=240)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_sub_batches_make_the_batches_each_rank_makes(demo_occ):
    """1 process with optim.sub_batches=2 draws, per step, exactly the two batches (crops, prompts,
    pids, pixel labels, augmentations included) that ranks 0 and 1 of a 2-process run draw."""
    from kprtrack.reid.train.data import PKSampler, ReidTrainSet
    from kprtrack.reid.train.engine import SliceCollate, build_collate, epoch_seed

    cfg = compose("train_reid", [*TINY, f"data.dataset_dir={demo_occ}", "aug.erasing=0.5", "aug.flip=0.5"])
    ds = ReidTrainSet(demo_occ, scheme=str(cfg.data.parts))
    seed, epoch = 0, 1
    one = PKSampler(ds.labels, 4, 4, seed, 0, 1)
    ranks = [PKSampler(ds.labels, 4, 4, seed, r, 2) for r in range(2)]
    for smp in [one, *ranks]:
        smp.set_epoch(epoch)
    sliced = SliceCollate([build_collate(cfg, epoch_seed(seed, epoch, s)) for s in range(2)])
    per_rank = [SliceCollate([build_collate(cfg, epoch_seed(seed, epoch, r))]) for r in range(2)]
    steps = 0
    for indices, *rank_indices in zip(one, *ranks):
        slices = sliced([ds[i] for i in indices])
        for r in range(2):
            (ref,) = per_rank[r]([ds[i] for i in rank_indices[r]])
            assert set(ref) == set(slices[r])
            for key, value in ref.items():
                assert _same(value, slices[r][key]), key
        steps += 1
    assert steps >= 2


@pytest.mark.slow
def test_kpr_ddp_two_processes_equal_one_process_with_two_sub_batches(demo_occ, tmp_path):
    """The tiny Swin KPR (BatchNorm, batch-hard triplet): torchrun with 2 gloo processes (8 crops per
    rank) and 1 process with optim.sub_batches=2 (2 x 8 crops, loss / 2, one step) give the same loss
    terms per epoch and the same weights; 1 process with sub_batches=1 (BN and mining over all 16)
    does not, so the comparison can fail."""
    common = [f"data.dataset_dir={demo_occ}", "optim.epochs=2", "max_iters_per_epoch=2", "eval_every=0",
              "optim.lr=0.01", "optim.warmup_epochs=0"]
    runs = {"ddp": (2, []), "sub2": (1, ["optim.sub_batches=2"]), "sub1": (1, [])}
    for name, (nproc, extra) in runs.items():
        done = _run_tiny(nproc, tmp_path / name, *common, *extra)
        assert done.returncode == 0, done.stderr[-3000:]
    table = {name: rows(tmp_path / name / "metrics.csv") for name in runs}
    terms = [k for k in table["ddp"][0] if k == "loss" or k.endswith(("_id", "_tr", "_ce"))]
    assert len(terms) == 6 and len(table["ddp"]) == len(table["sub2"]) == 2
    worst = 0.0
    for a, b in zip(table["ddp"], table["sub2"]):
        for term in terms:
            assert float(b[term]) == pytest.approx(float(a[term]), rel=1e-4, abs=1e-6), (term, a, b)
            worst = max(worst, abs(float(a[term]) - float(b[term])) / max(abs(float(a[term])), 1e-12))
    weights = {name: torch.load(tmp_path / name / "checkpoints" / "model.pth.tar", weights_only=True)["state_dict"]
               for name in runs}
    max_abs = 0.0
    for key, value in weights["ddp"].items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # BN buffers: DDP broadcasts rank 0's, training losses do not read them
        torch.testing.assert_close(weights["sub2"][key], value, rtol=1e-4, atol=1e-5)
        if value.is_floating_point():
            max_abs = max(max_abs, float((weights["sub2"][key] - value).abs().max()))
    # the same global batch without the split: BN statistics and triplet mining over 16 crops
    differs = max(abs(float(a[t]) - float(b[t])) / abs(float(a[t]))
                  for a, b in zip(table["ddp"], table["sub1"]) for t in terms if float(a[t]))
    assert differs > 1e-3
    print(f"\nKPR DDP(2) vs sub_batches=2: loss terms max rel diff {worst:.2e}, weights max abs diff {max_abs:.2e}; "
          f"vs sub_batches=1: loss terms max rel diff {differs:.2e}")


def _leave_one_out_map(checkpoint, cfg, ds) -> float:
    """mAP over the crops of ``ds``: each crop queries the others (its own identity's other crops are
    the positives), with the tracker's part distance on ``KPRReID`` embeddings (strict load)."""
    import warnings

    import numpy as np

    from kprtrack.reid.evaluate import EmbeddingRunner, rank_queries
    from kprtrack.reid.kpr.stage import KPRReID
    from kprtrack.reid.train.engine import reid_settings
    from kprtrack.tracker.part_distance import part_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backend = KPRReID(**reid_settings(cfg, checkpoint))
    samples = [ds[i] for i in range(len(ds))]
    emb, vis = EmbeddingRunner(backend).embed([s["image"] for s in samples], [s["keypoints"] for s in samples],
                                              [s["negatives"] for s in samples], True)
    ids = [s["identity"] for s in samples]
    aps = []
    for i in range(len(ids)):
        others = [j for j in range(len(ids)) if j != i]
        distance = part_distance(emb[i:i + 1], vis[i:i + 1], emb[others], vis[others])
        aps.append(rank_queries(distance, [ids[i]], [ids[j] for j in others]).average_precision[0])
    return float(np.mean(aps)) * 100


@pytest.mark.slow
def test_tiny_swin_trains_on_real_soccer_crops(tmp_path, capsys):
    """The whole kpr_soccer_players folder (group1 + group2: 3 players x 2 crops, identity = file-name
    prefix). Train = gallery here (6 crops, no held-out identities): mAP is leave-one-out on the
    training crops, a check that the model fits, not a generalisation claim."""
    from conftest import shared_file

    from kprtrack.reid.train.data import ReidTrainSet
    from kprtrack.reid.train.engine import build_model, save_checkpoint, seed_all

    folder = shared_file("data/media/kpr_soccer_players")
    ds = ReidTrainSet(folder)
    assert len(ds) == 6 and ds.identities == ["1470", "1475", "1479"]
    cfg = compose("train_reid", [*TINY, f"data.dataset_dir={folder}", f"output_dir={tmp_path / 'run'}", "optim.p=3",
                                 "optim.k=2", "optim.epochs=30", "optim.warmup_epochs=0", "optim.min_lr=0.0005",
                                 "eval_every=0"])
    seed_all(int(cfg.seed))
    init, arch = build_model(cfg, ds.num_classes)
    opt = build_sgd(init.parameters(), 0.1)
    save_checkpoint(tmp_path / "init.pth.tar", init, arch, 0, opt, WarmupCosine(opt, 1), None, 0, cfg)
    result = train(cfg)
    table = rows(tmp_path / "run" / "metrics.csv")
    assert len(table) == 30 and all(math.isfinite(float(r["loss"])) for r in table)

    def mean(part, term):  # one 6-crop batch per epoch: 5-epoch means
        return sum(float(r[term]) for r in part) / len(part)

    assert mean(table[-5:], "loss") < mean(table[:5], "loss"), [r["loss"] for r in table]
    random_map = _leave_one_out_map(tmp_path / "init.pth.tar", cfg, ds)
    trained_map = _leave_one_out_map(result["checkpoint"], cfg, ds)  # strict load, as reid=kpr does
    with capsys.disabled():
        terms = [k for k in table[0] if k.endswith(("_id", "_tr", "_ce"))] + ["loss"]
        print("\nsoccer crops (train = gallery): " + ", ".join(
            f"{t} {mean(table[:5], t):.3f}->{mean(table[-5:], t):.3f}" for t in terms)
            + f"; leave-one-out mAP {random_map:.1f} (random init) -> {trained_map:.1f}")
    assert trained_map >= random_map


@pytest.mark.slow
def test_trained_checkpoint_tracks_the_demo_with_reid_kpr(demo_occ, tmp_path):
    """End to end: a trained tiny checkpoint in ``python -m kprtrack run reid=kpr`` on the demo (its
    oracle detector/pose). The shape keys (backbone, dim, height, width) are passed as reid.* because
    ``reid=kpr`` builds the network from its own config and then loads strictly: a mismatch is an error,
    not silently taken from the checkpoint."""
    import json

    cfg = compose("train_reid", [*TINY, f"data.dataset_dir={demo_occ}", f"output_dir={tmp_path / 'train'}",
                                 "optim.epochs=1", "max_iters_per_epoch=2", "eval_every=0"])
    checkpoint = train(cfg)["checkpoint"]
    args = ["dataset=demo", "reid=kpr", f"reid.weights={checkpoint}", "reid.backbone=swinv2_tiny_window8_256",
            "reid.dim=256", "reid.height=64", "reid.width=32", "reid.device=cpu", "reid.download=false",
            "run.progress=false", "output.render=false", f"output.dir={tmp_path / 'run'}"]
    result = subprocess.run([sys.executable, "-m", "kprtrack", "run", *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jsons = sorted((tmp_path / "run" / "posetrack21" / "sequences").glob("*.json"))
    assert jsons
    tracks = {a["track_id"] for p in jsons for a in json.loads(p.read_text())["annotations"]}
    assert tracks
