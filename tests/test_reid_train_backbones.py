"""Backbone start weights (reid/train/backbones.py): registry entries, upstream key layouts -> ours."""
from __future__ import annotations

import re
import urllib.parse

import pytest
import torch

from kprtrack.errors import InputError
from kprtrack.reid.train import backbones
from kprtrack.reid.train.backbones import BACKBONE_WEIGHTS, load_backbone_weights
from kprtrack.weights import WeightSpec

V2_TINY = "swinv2_tiny_window8_256"
V1_TINY = "swin_tiny_patch4_window7_224"
SOL = "solider_swin_base_patch4_window7_224"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("KPRTRACK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KPRTRACK_WEIGHTS_MIRROR", raising=False)


def _kpr(backbone: str, height=64, width=32, seed=0):
    from kprtrack.reid.kpr.model import KPR, KPRArch

    torch.manual_seed(seed)
    return KPR(KPRArch(backbone=backbone, height=height, width=width, parts_num=2, prompt_parts_num=2,
                       dim_reduce_output=16, num_classes=3))


def _backbone_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone_appearance_feature_extractor.model.state_dict().items()}


def _to_old_timm(state):
    """Inverse of map_timm for the old layout: the downsample ends the previous stage."""
    return {re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k): v
            for k, v in state.items()}


def _serve(tmp_path, monkeypatch, name, payload, layout):
    path = tmp_path / "upstream" / f"{name}.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save(payload, path)
    monkeypatch.setitem(BACKBONE_WEIGHTS, name, WeightSpec(url=path.as_uri(), meta={"layout": layout}))
    return path


def _assert_loaded(model, source):
    for key, value in model.backbone_appearance_feature_extractor.model.state_dict().items():
        assert torch.equal(value, source[key]), key


@pytest.mark.parametrize("old_layout", [False, True])
def test_timm_swinv2_file_through_the_registry(tmp_path, monkeypatch, capsys, old_layout):
    source = _backbone_state(_kpr(V2_TINY, seed=1))
    upstream = _to_old_timm(source) if old_layout else dict(source)
    upstream.update({"head.fc.weight" if not old_layout else "head.weight": torch.zeros(10, 768),
                     "head.fc.bias" if not old_layout else "head.bias": torch.zeros(10),
                     "layers.0.blocks.0.attn.relative_position_index": torch.zeros(64, 64, dtype=torch.long)})
    _serve(tmp_path, monkeypatch, "tiny_v2", {"model": upstream}, "timm")
    model = _kpr(V2_TINY, seed=2)
    report = load_backbone_weights(model, "tiny_v2")
    _assert_loaded(model, source)
    assert report.layout == "timm" and not report.reshaped
    assert sorted(report.unexpected) == sorted(k for k in upstream if k.startswith("head."))
    assert report.dropped == ["layers.0.blocks.0.attn.relative_position_index"]
    prefix = "backbone_appearance_feature_extractor."
    assert prefix + "masks_patch_embed.proj.weight" in report.missing  # the keypoint tokenizer
    assert any(not k.startswith(prefix) for k in report.missing)  # KPR heads
    assert not any(k.startswith(prefix + "model.") for k in report.missing)
    assert "tensors loaded" in capsys.readouterr().out
    # the alias of the image patch embedding is the same tensor
    assert torch.equal(model.backbone_appearance_feature_extractor.patch_embed.proj.weight,
                       source["patch_embed.proj.weight"])


def test_wrong_shape_is_refused_naming_key_and_file(tmp_path, monkeypatch):
    source = _backbone_state(_kpr(V2_TINY))
    source["layers.1.blocks.0.mlp.fc1.weight"] = torch.zeros(7, 7)
    path = _serve(tmp_path, monkeypatch, "bad_v2", source, "timm")
    with pytest.raises(InputError) as err:
        load_backbone_weights(_kpr(V2_TINY), path.as_uri())
    text = str(err.value)
    assert "layers.1.blocks.0.mlp.fc1.weight" in text and "bad_v2.pth" in text and "(7, 7)" in text


def test_missing_required_tensor_is_refused(tmp_path, monkeypatch):
    source = _backbone_state(_kpr(V2_TINY))
    del source["layers.2.blocks.1.attn.qkv.weight"]
    path = tmp_path / "partial.pth"
    torch.save(source, path)
    with pytest.raises(InputError, match=r"layers\.2\.blocks\.1\.attn\.qkv\.weight"):
        load_backbone_weights(_kpr(V2_TINY), str(path))


def test_swin_v1_bias_table_of_another_window_is_resized(tmp_path, monkeypatch):
    model = _kpr(V1_TINY, seed=3)
    source = _backbone_state(model)
    # stage 3 (4x2 map at 64x32) clamps the window to 4x2: a 224 file has 7x7 windows everywhere
    key = "layers.2.blocks.0.attn.relative_position_bias_table"
    assert source[key].shape == (7 * 3, 12)
    source[key] = torch.randn(13 * 13, 12)
    _serve(tmp_path, monkeypatch, "tiny_v1", source, "timm")
    report = load_backbone_weights(model, "tiny_v1")
    assert (key, (169, 12), (21, 12)) in report.reshaped
    table = model.backbone_appearance_feature_extractor.model.state_dict()[key]
    assert table.shape == (21, 12) and torch.isfinite(table).all()


def _micro_solider(monkeypatch):
    from kprtrack.reid.kpr import solider

    monkeypatch.setitem(solider.SOLIDER_SPECS, SOL, solider.SoliderSpec(
        embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)))


def test_solider_teacher_file(tmp_path, monkeypatch):
    _micro_solider(monkeypatch)
    source = _backbone_state(_kpr(SOL, height=96, width=32, seed=4))
    upstream = {"backbone." + k: v for k, v in source.items()}
    upstream["backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    upstream["head.weight"] = torch.zeros(3, 3)  # not backbone.*: SOLIDER's loader ignores it too
    _serve(tmp_path, monkeypatch, "tiny_sol", {"teacher": upstream, "epoch": 100}, "solider")
    model = _kpr(SOL, height=96, width=32, seed=5)
    report = load_backbone_weights(model, "tiny_sol")
    _assert_loaded(model, source)
    assert report.layout == "solider" and report.unexpected == [] and len(report.dropped) == 1


def test_microsoft_swin_file_into_solider_code(tmp_path, monkeypatch):
    """KPR's imagenet_swin: Microsoft names through SOLIDER's swin_converter (inverse applied here)."""
    _micro_solider(monkeypatch)
    source = _backbone_state(_kpr(SOL, height=96, width=32, seed=6))
    inv = {}
    for k, v in source.items():
        if k.startswith("stages."):
            if ".downsample.reduction." in k:
                o, i = v.shape
                v = v.reshape(o, i // 4, 4).transpose(1, 2)[:, [0, 2, 1, 3], :].reshape(o, i)
            elif ".downsample.norm." in k:
                v = v.reshape(v.shape[0] // 4, 4).t()[[0, 2, 1, 3], :].reshape(-1)
            k = ("layers." + k[len("stages."):]).replace(".attn.w_msa.", ".attn.").replace(
                ".ffn.layers.0.0.", ".mlp.fc1.").replace(".ffn.layers.1.", ".mlp.fc2.")
        elif k.startswith("patch_embed.projection."):
            k = k.replace("projection", "proj")
        elif k.startswith(("norm", "semantic_embed")):
            continue  # an ImageNet file has neither the per-stage norms nor SOLIDER's semantic embeddings
        inv[k] = v
    inv.update({"norm.weight": torch.ones(128), "head.weight": torch.zeros(5, 128), "head.bias": torch.zeros(5)})
    _serve(tmp_path, monkeypatch, "tiny_ms", {"model": inv}, "swin_official")
    model = _kpr(SOL, height=96, width=32, seed=7)
    report = load_backbone_weights(model, "tiny_ms")
    own = model.backbone_appearance_feature_extractor.model.state_dict()
    for key in report.loaded:
        assert torch.equal(own[key], source[key]), key
    assert report.layout == "swin_official"
    assert sorted(report.unexpected) == ["head.bias", "head.weight", "norm.weight"]
    assert all(k.startswith(("stages.", "patch_embed.")) for k in report.loaded)
    assert any(".norm0." in k or ".semantic_embed_w." in k for k in report.missing)


def test_manual_download_entry_says_where(tmp_path):
    with pytest.raises(InputError, match="manual download"):
        load_backbone_weights(_kpr(V2_TINY), SOL)


def test_registry_entries_are_well_formed():
    from kprtrack.reid.kpr.solider import SOLIDER_SPECS
    from kprtrack.reid.kpr.swin import SWIN_SPECS

    for name, spec in BACKBONE_WEIGHTS.items():
        assert urllib.parse.urlparse(spec.url).scheme == "https", name
        assert spec.meta["layout"] in ("timm", "solider", "swin_official"), name
        assert name.split(".")[0] in SWIN_SPECS or name in SOLIDER_SPECS, name
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{8,64}", spec.sha256), name
        if spec.meta["layout"] == "timm":
            assert spec.url == backbones._HF.format(name=name)


def test_recipe_defaults_are_registry_names():
    from kprtrack.config import compose

    for recipe in ("in", "sol"):
        cfg = compose("train_reid", [f"recipe={recipe}"])
        assert cfg.model.backbone in BACKBONE_WEIGHTS, recipe
        assert cfg.model.backbone_weights == "auto" and cfg.model.backbone_weights_download is True
    assert compose("train_reid", []).model.backbone_weights == "auto"
