"""KPR training checkpoints (issue #18): tokenizer freeze, torchreid-layout files that reid=kpr loads strictly."""
import warnings

import numpy as np
import pytest
import torch

from kprtrack.reid.kpr import KPRReID
from kprtrack.reid.kpr.checkpoint import checkpoint_settings, load_strict, read_checkpoint, unsupported_features
from kprtrack.reid.kpr.model import KPR, KPRArch
from micro_kpr import micro_model, register_micro_backbone

from kprtrack.reid.train.checkpoint import (freeze_tokenizer, load_training_checkpoint, save_torchreid_checkpoint,
                                             tokenizer_parameters)
from kprtrack.reid.train.losses import KPRLoss

MICRO = "test_micro_swinv2_ckpt"
H, W, D, C = 64, 32, 16, 5


@pytest.fixture(autouse=True)
def _micro_backbone(monkeypatch):
    register_micro_backbone(monkeypatch, MICRO)


def _model(**kw):
    return micro_model(MICRO, **{"height": H, "width": W, "dim": D, "num_classes": C, **kw})


def _step(model, frozen):
    freeze_tokenizer(model, frozen)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9,
                          weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    images = torch.randn((4, 3, H, W), generator=g)
    prompt = torch.rand((4, model.arch.prompt_channels, H, W), generator=g)
    labels = torch.randint(0, 9, (4, H, W), generator=g)
    model.train()
    total, _ = KPRLoss(C)(model.forward_train(images, prompt), torch.tensor([0, 0, 1, 1]), labels)
    opt.zero_grad()
    total.backward()
    opt.step()
    return {k: not torch.equal(before[k], v.detach()) for k, v in model.named_parameters()}


@pytest.mark.slow
def test_tokenizer_freeze_acts():
    model = _model()
    names = set(tokenizer_parameters(model))
    assert "backbone_appearance_feature_extractor.masks_patch_embed.proj.weight" in names
    changed = _step(model, frozen=True)
    assert not any(changed[n] for n in names)
    assert changed["backbone_appearance_feature_extractor.model.patch_embed.proj.weight"]
    assert changed["parts_after_pooling_dim_reduce.layers.0.weight"]
    assert not any(p.requires_grad for p in tokenizer_parameters(model).values())
    changed = _step(model, frozen=False)  # unfrozen (after the 20 epochs): the prompt embedding learns
    assert changed["backbone_appearance_feature_extractor.masks_patch_embed.proj.weight"]


def test_freeze_tokenizer_works_for_solider(monkeypatch):
    from kprtrack.reid.kpr import solider
    monkeypatch.setitem(solider.SOLIDER_SPECS, "sol_micro_ckpt",
                        solider.SoliderSpec(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)))
    with torch.device("meta"):
        model = KPR(KPRArch(backbone="sol_micro_ckpt", height=96, width=32, dim_reduce_output=D))
    names = freeze_tokenizer(model, True)
    assert names and all(not p.requires_grad for p in tokenizer_parameters(model).values())
    assert any(p.requires_grad for p in model.parameters())


def _trained(tmp_path, **arch):
    model = _model(**arch)
    g = torch.Generator().manual_seed(3)
    # Non-trivial BN statistics and weights, as after training.
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.05 + (1.0 if name.endswith("running_var") else 0.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.008, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 120)
    path = save_torchreid_checkpoint(tmp_path / "model.pth.tar", model, epoch=7, optimizer_state=opt.state_dict(),
                                     scheduler_state=sched.state_dict(), extra={"rank1": 0.5, "mAP": 0.25})
    return model.eval(), path, opt, sched


@pytest.mark.slow
def test_saved_checkpoint_loads_strictly_through_kprreid_with_same_embeddings(tmp_path):
    model, path, _, _ = _trained(tmp_path)
    state, config = read_checkpoint(path)
    assert unsupported_features(config) == []
    settings = checkpoint_settings(state, config)
    assert settings["backbone"] == MICRO and settings["parts_num"] == 8 and settings["dim"] == D
    assert settings["height"] == H and settings["width"] == W and settings["prompt_parts"] == "cck8"
    fresh = KPR(model.arch)
    load_strict(fresh, state, path)
    reid = KPRReID(weights=str(path), backbone=MICRO, height=H, width=W, dim=D, device="cpu")
    assert reid.arch == model.arch
    crops = [np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8) for i in range(3)]
    kps = np.random.default_rng(9).uniform(0, 1, (3, 17, 3)).astype(np.float32) * [W, H, 1]
    emb, vis = reid.embed_crops(crops, kps)
    # The in-memory model on the same preprocessed input.
    from kprtrack.reid.crops import normalise, resize_images
    from kprtrack.reid.prompts import build_prompt
    x = torch.from_numpy(normalise(resize_images(crops, (H, W)), reid.settings["mean"], reid.settings["std"],
                                   to_rgb=True))
    prompt = torch.from_numpy(np.stack([build_prompt(k, None, (H, W), "cck8", True, 0.3) for k in kps]))
    with torch.no_grad():
        ref_emb, ref_vis = model(x, prompt)
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-5)
    np.testing.assert_allclose(vis, ref_vis.numpy())


@pytest.mark.slow
def test_other_arch_choices_round_trip(tmp_path):
    model, path, _, _ = _trained(tmp_path, shared_parts_id_classifier=True, test_embeddings=("globl", "bn_parts"),
                                 binary_visibility=False)
    reid = KPRReID(weights=str(path), backbone=MICRO, height=H, width=W, dim=D, device="cpu")
    assert reid.arch == model.arch


def test_mismatched_arch_is_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, path, _, _ = _trained(tmp_path)
    from kprtrack.errors import InputError
    with pytest.raises(InputError, match="reid.dim=32 but checkpoint has 16"):
        KPRReID(weights=str(path), backbone=MICRO, height=H, width=W, dim=32, device="cpu")


@pytest.mark.slow
def test_resume_payload(tmp_path):
    model, path, opt, sched = _trained(tmp_path)
    ckpt = load_training_checkpoint(path)
    assert ckpt["epoch"] == 7 and ckpt["rank1"] == 0.5
    assert ckpt["config"]["model"]["kpr"]["dim_reduce_output"] == D
    resumed = KPR(model.arch)
    resumed.load_state_dict(ckpt["state_dict"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    opt2 = torch.optim.SGD(resumed.parameters(), lr=1.0, momentum=0.9)
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.008)
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, 120)
    sched2.load_state_dict(ckpt["scheduler"])
    assert sched2.state_dict()["T_max"] == 120


def test_write_is_atomic(tmp_path, monkeypatch):
    model, path, _, _ = _trained(tmp_path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("killed")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        save_torchreid_checkpoint(path, model, epoch=8)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
