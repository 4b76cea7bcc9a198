"""KPR model: timm-compatible backbone, upstream key names, strict checkpoint loading, stage contract."""
import sys
import types
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from kprtrack.reid.kpr import KPRReID
from kprtrack.reid.kpr.model import KPR, KPRArch
from kprtrack.reid.kpr import swin
from kprtrack.reid.kpr import checkpoint as kpr_checkpoint
from kprtrack.reid.kpr.swin import SwinSpec, SwinTransformer, swin_spec
from kprtrack.weights import torch_load
from numpy1_pickle import save_numpy1

TINY = "swinv2_tiny_window8_256"
MICRO = "test_micro_swinv2"  # same code and names as the real ones, a few hundred k parameters
SMALL = dict(backbone=MICRO, height=128, width=64, dim=32)  # fast settings for the stage tests


@pytest.fixture(autouse=True)
def _micro_backbone(monkeypatch):
    monkeypatch.setitem(swin.SWIN_SPECS, MICRO, SwinSpec(2, embed_dim=16, depths=(2, 2, 2, 2),
                                                         num_heads=(1, 2, 4, 8), window_size=8))


def _seeded(model):
    keys = sorted((k, tuple(v.shape)) for k, v in model.state_dict().items() if v.is_floating_point())
    g = torch.Generator().manual_seed(1234)
    state = {k: torch.randn(s, generator=g) * 0.05 for k, s in keys}
    # BatchNorm variances must be positive, or the outputs are NaN and compare equal by accident.
    return {k: (v.abs() + 0.5 if k.endswith("running_var") else v) for k, v in state.items()}


@pytest.mark.parametrize("name, first, mean_abs", [
    # Produced by timm 1.0.31's own swinv2_tiny_window8_256 / swin_tiny_patch4_window7_224 (img_size 128x64)
    # with the same seeded weights and input; v1 at 128x64 exercises padded and shifted windows.
    (TINY, [0.03387, -0.19286, 0.07067, 0.12631], 0.12624),
    ("swin_tiny_patch4_window7_224", [-0.04743, -0.16586, -0.27425, -0.24808], 0.27245),
])
@pytest.mark.slow
def test_swin_matches_timm_reference_outputs(name, first, mean_abs):
    m = SwinTransformer(swin_spec(name), (128, 64)).eval()
    m.load_state_dict(_seeded(m), strict=False)
    x = torch.randn((1, 3, 128, 64), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        f = m(x)[-1]
    np.testing.assert_allclose(f.flatten()[:4].numpy(), first, atol=2e-4)
    assert float(f.abs().mean()) == pytest.approx(mean_abs, abs=2e-4)


def test_base_swin_key_sets_match_timm_counts():
    with torch.device("meta"):
        v2 = SwinTransformer(swin_spec("swinv2_base_window12to16_192to256.ms_in22k_ft_in1k"), (256, 128))
        v1 = SwinTransformer(swin_spec("swin_base_patch4_window7_224"), (256, 128))
    sd2, sd1 = v2.state_dict(), v1.state_dict()
    assert len(sd2) == 423 and len(sd1) == 327  # timm 1.0.31 state_dict sizes for these models at 256x128
    assert tuple(sd2["layers.2.blocks.17.attn.cpb_mlp.2.weight"].shape) == (16, 512)
    assert tuple(sd2["layers.3.downsample.reduction.weight"].shape) == (1024, 2048)
    assert tuple(sd1["layers.1.blocks.0.attn.relative_position_bias_table"].shape) == (169, 8)


def test_occ_posetrack_model_has_upstream_names_and_shapes():
    with torch.device("meta"):
        model = KPR(KPRArch(num_classes=1000))
    sd = model.state_dict()
    b = "backbone_appearance_feature_extractor."
    expect = {
        b + "patch_embed.proj.weight": (128, 3, 4, 4),  # registered twice upstream
        b + "model.patch_embed.proj.weight": (128, 3, 4, 4),
        b + "masks_patch_embed.proj.weight": (128, 10, 4, 4),  # [bg, neg, 8 cck8 parts]
        b + "masks_patch_embed.norm.weight": (128,),
        b + "parts_embed": (10, 1, 128),
        b + "norm.weight": (1920,),
        b + "model.norm.weight": (1024,),
        "msf.dim_reduce.layers.0.weight": (1024, 1920, 1, 1),
        "msf.dim_reduce.layers.1.running_var": (1024,),
        "pixel_classifier.bn.weight": (1024,),
        "pixel_classifier.classifier.weight": (9, 1024, 1, 1),
        "foreground_after_pooling_dim_reduce.layers.0.weight": (512, 1024),
        "parts_after_pooling_dim_reduce.layers.1.running_mean": (512,),
        "foreground_identity_classifier.bn.weight": (512,),
        "foreground_identity_classifier.classifier.weight": (1000, 512),
        "concat_parts_identity_classifier.bn.weight": (4096,),
        "parts_identity_classifier.7.classifier.weight": (1000, 512),
    }
    for key, shape in expect.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any("relative_position_index" in k or "attn_mask" in k for k in sd)


class _FakeCfgNode(dict):
    """Pickles like yacs' CfgNode (dict subclass with flags in __dict__) under the same name."""

    def __init__(self, init=None):
        super().__init__({k: _FakeCfgNode(v) if isinstance(v, dict) else v for k, v in (init or {}).items()})
        self.__dict__["__immutable__"] = False
        self.__dict__["__new_allowed__"] = False


@pytest.fixture
def fake_yacs(monkeypatch):
    pkg, mod = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    _FakeCfgNode.__module__, _FakeCfgNode.__qualname__ = "yacs.config", "CfgNode"
    mod.CfgNode = _FakeCfgNode
    pkg.config = mod
    monkeypatch.setitem(sys.modules, "yacs", pkg)
    monkeypatch.setitem(sys.modules, "yacs.config", mod)
    return _FakeCfgNode


def _upstream_config(parts="eight", parts_num=8, prompt="cck8", dim=32, backbone=MICRO, h=128, w=64):
    return {
        "model": {
            "kpr": {"backbone": backbone, "dim_reduce": "after_pooling", "dim_reduce_output": dim,
                    "enable_msf": True, "enable_fpn": False, "pooling": "gwap", "normalization": "identity",
                    "learnable_attention_enabled": True, "test_use_target_segmentation": "none",
                    "use_prompt_visibility_score": False, "test_embeddings": ["bn_foreg", "parts"],
                    "masks": {"parts_num": parts_num, "preprocess": parts, "prompt_parts_num": 8},
                    "keypoints": {"prompt_masks": "keypoints_gaussian", "prompt_preprocess": prompt,
                                  "use_negative_keypoints": True, "vis_thresh": 0.3, "vis_continous": False}},
            "promptable_trans": {"masks_prompting": True, "no_background_token": False,
                                 "pose_encoding_strategy": "embed_heatmaps_patches",
                                 "pose_encoding_all_layers": False},
        },
        "data": {"height": h, "width": w, "norm_mean": [0.485, 0.456, 0.406], "norm_std": [0.229, 0.224, 0.225],
                 "sources": ["occ_PoseTrack21"]},
    }


def _save_upstream_checkpoint(path, cfg_node, arch, config, extra_buffers=True):
    """A checkpoint laid out like torchreid's save_checkpoint (DataParallel 'module.' prefixes)."""
    model = KPR(arch)
    state = _seeded(model)
    state.update({k: v for k, v in model.state_dict().items() if not v.is_floating_point()})
    if extra_buffers:  # older timm saved these index buffers
        for name, buf in model.named_buffers():
            if name.endswith("relative_position_index"):
                state[name] = buf
    model.load_state_dict(state, strict=False)
    # Published files were pickled under numpy 1.x (numpy.core.multiarray names): write them that way.
    save_numpy1({"state_dict": OrderedDict(("module." + k, v) for k, v in state.items()), "epoch": 120,
                 "rank1": np.float32(0.92), "mAP": np.float64(0.82), "config": cfg_node(config),
                 "optimizer": {"state": {}, "param_groups": [{"lr": 0.008}]}}, path)
    return model


def _arch(**kw):
    base = dict(backbone=MICRO, height=128, width=64, dim_reduce_output=32, num_classes=7)
    base.update(kw)
    return KPRArch(**base)


@pytest.mark.slow
def test_fake_official_checkpoint_loads_strictly_and_reproduces_outputs(tmp_path, fake_yacs):
    path = tmp_path / "kpr_fake.pth.tar"
    source = _save_upstream_checkpoint(path, fake_yacs, _arch(), _upstream_config())
    reid = KPRReID(weights=str(path), batch_size=4, device="cpu", **SMALL)
    images = [np.random.default_rng(i).integers(0, 255, (90 + i, 40, 3), dtype=np.uint8) for i in range(3)]
    emb, vis = reid.embed_crops(images)  # no prompt
    x = torch.from_numpy(__import__("kprtrack.reid.crops", fromlist=["x"]).normalise(
        __import__("kprtrack.reid.crops", fromlist=["x"]).resize_images(images, (128, 64))))
    with torch.no_grad():
        ref_emb, ref_vis = source.eval()(x)
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-5)
    np.testing.assert_array_equal(vis, ref_vis.numpy())
    assert emb.shape == (3, 9, 32) and emb.dtype == np.float32 and vis.shape == (3, 9) and np.isfinite(emb).all()


@pytest.mark.slow
def test_checkpoint_with_other_parts_is_a_clear_conflict(tmp_path, fake_yacs):
    path = tmp_path / "kpr_five.pth.tar"
    _save_upstream_checkpoint(path, fake_yacs, _arch(parts_num=5, prompt_parts_num=6),
                              _upstream_config(parts="five_v", parts_num=5, prompt="cck6"))
    with pytest.raises(InputError) as err:
        KPRReID(weights=str(path), **SMALL)
    msg = str(err.value)
    assert "reid.parts='eight' but checkpoint has 'five_v'" in msg
    assert "reid.prompt_parts='cck8' but checkpoint has 'cck6'" in msg and str(path) in msg
    with pytest.warns(UserWarning, match="using the checkpoint's values.*reid.parts"):
        reid = KPRReID(weights=str(path), config_conflicts="use_checkpoint", **SMALL)
    emb, vis = reid.embed_crops([np.zeros((50, 20, 3), np.uint8)])
    assert emb.shape == (1, 6, 32) and vis.shape == (1, 6)


def test_checkpoint_with_other_backbone_is_rejected(tmp_path, fake_yacs):
    path = tmp_path / "kpr_v1.pth.tar"
    _save_upstream_checkpoint(path, fake_yacs, _arch(),
                              _upstream_config(backbone="swin_base_patch4_window7_224.ms_in22k_ft_in1k"))
    with pytest.raises(InputError, match=f"reid.backbone='{MICRO}' but checkpoint has 'swin_base"):
        KPRReID(weights=str(path), **SMALL)


@pytest.mark.slow
def test_checkpoint_missing_a_key_fails_strict_loading(tmp_path, fake_yacs):
    path = tmp_path / "kpr_broken.pth.tar"
    _save_upstream_checkpoint(path, fake_yacs, _arch(), _upstream_config())
    ckpt = torch_load(path, tuple(kpr_checkpoint._safe_globals()))  # the config comes back as a dict: fine here
    del ckpt["state_dict"]["module.msf.dim_reduce.layers.0.weight"]
    ckpt["state_dict"]["module.unknown.weight"] = torch.zeros(1)
    save_numpy1(ckpt, path)
    with pytest.raises(InputError, match=r"1 missing: msf.dim_reduce.layers.0.weight; 1 unexpected: unknown.weight"):
        KPRReID(weights=str(path), **SMALL)


def test_unsupported_upstream_option_is_reported(tmp_path, fake_yacs):
    path = tmp_path / "kpr_fpn.pth.tar"
    config = _upstream_config()
    config["model"]["kpr"]["enable_fpn"] = True
    _save_upstream_checkpoint(path, fake_yacs, _arch(), config)
    with pytest.raises(InputError, match="enable_fpn=True"):
        KPRReID(weights=str(path), **SMALL)


def test_manual_registry_entry_says_where_to_get_it():
    with pytest.raises(InputError, match="drive.google.com.*put it there"):
        KPRReID(weights="kpr_occ_pt_IN")


@pytest.fixture
def random_reid():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return KPRReID(weights=None, batch_size=2, device="cpu", **SMALL)


def _frame_with_people():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[20, 20, 100, 220], [60, 30, 140, 230], [200, 10, 300, 200], [400, 10, 500, 100]], np.float32)
    kps = np.zeros((4, 17, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        kps[i, :, 0] = rng.uniform(x1, x2, 17)
        kps[i, :, 1] = np.linspace(y1 + 5, y2 - 5, 17)
        kps[i, :, 2] = 0.9
    kps[2, :, 2] = 0.1  # nobody confident: falls back to the no-prompt input
    return Frame("seq", 0, image), Detections(boxes, np.ones(4), keypoints=kps)


@pytest.mark.slow
def test_embed_fills_the_tracker_contract(random_reid):
    frame, dets = _frame_with_people()
    out = random_reid.embed(frame, dets)
    assert out.embeddings.shape == (4, 9, 32) and out.embeddings.dtype == np.float32
    assert out.visibility.shape == (4, 9) and out.visibility.dtype == np.float32
    assert set(np.unique(out.visibility)) <= {0.0, 1.0}
    assert out.visibility[:3, 0].min() == 1.0  # foreground always visible for a real crop
    assert np.all(out.visibility[3] == 0) and np.all(out.embeddings[3] == 0)  # box outside the frame
    # Batching does not change results (eval mode, batch-independent ops).
    one = [random_reid.embed(frame, dets.subset([i])).embeddings[0] for i in range(3)]
    np.testing.assert_allclose(one[2], out.embeddings[2], atol=1e-4)  # no negatives involved for person 2


@pytest.mark.slow
def test_prompts_matter_and_can_be_switched_off(random_reid):
    frame, dets = _frame_with_people()
    with_prompt = random_reid.embed(frame, dets.subset([0, 1])).embeddings
    without = random_reid.embed(frame, dets.subset([0, 1]).with_(keypoints=None)).embeddings
    assert not np.allclose(with_prompt, without, atol=1e-5)
    alone = random_reid.embed(frame, dets.subset([0])).embeddings[0]  # no negative from person 1
    assert not np.allclose(alone, with_prompt[0], atol=1e-6)
    # Person 2 has no confident keypoint: same result as without any prompt.
    p2 = random_reid.embed(frame, dets.subset([2])).embeddings
    p2_none = random_reid.embed(frame, dets.subset([2]).with_(keypoints=None)).embeddings
    np.testing.assert_allclose(p2, p2_none, atol=1e-5)


@pytest.mark.slow
def test_embed_crops_validates_input(random_reid):
    with pytest.raises(InputError, match="crop 1: expected a non-empty HxWx3 image"):
        random_reid.embed_crops([np.zeros((10, 10, 3), np.uint8), np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(InputError, match="2 crops but 1 positive"):
        random_reid.embed_crops([np.zeros((10, 10, 3), np.uint8)] * 2, np.zeros((1, 17, 3)))
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = 500  # every keypoint outside the crop: no prompt, no crash
    kp[0, :, 2] = 1
    emb, _ = random_reid.embed_crops([np.zeros((60, 30, 3), np.uint8)], kp, [np.zeros((0, 17, 3))])
    ref, _ = random_reid.embed_crops([np.zeros((60, 30, 3), np.uint8)])
    np.testing.assert_allclose(emb, ref, atol=1e-5)


def test_empty_frame(random_reid):
    frame, _ = _frame_with_people()
    out = random_reid.embed(frame, Detections.empty())
    assert out.embeddings.shape == (0, 9, 32) and out.visibility.shape == (0, 9)


def test_config_file_instantiates():
    from omegaconf import OmegaConf

    from kprtrack.config import config_dir, instantiate

    node = OmegaConf.load(config_dir() / "reid" / "kpr.yaml")
    assert node.weights == "kpr_occ_pt_IN" and node.parts == "eight"
    node.merge_with({"weights": None, **SMALL})
    with pytest.warns(UserWarning, match="random initialisation"):
        reid = instantiate(node)
    assert isinstance(reid, KPRReID) and reid.part_names[1] == "head"


def test_cpu_malloc_setting_is_checked():
    from kprtrack.errors import InputError
    from kprtrack.reid.kpr import KPRReID

    with pytest.raises(InputError, match="reid.cpu_malloc must be 'reuse' or 'system'"):
        KPRReID(weights=None, cpu_malloc="jemalloc")


@pytest.mark.slow
def test_checkpoint_test_options_are_used_unless_set_and_then_compared(tmp_path, fake_yacs):
    """test_embeddings and testing_binary_visibility_score stored in the checkpoint drive inference as upstream."""
    config = _upstream_config()
    config["model"]["kpr"]["test_embeddings"] = ["bn_globl", "bn_parts"]
    config["model"]["kpr"]["testing_binary_visibility_score"] = False
    path = tmp_path / "kpr_test_options.pth.tar"
    _save_upstream_checkpoint(path, fake_yacs, _arch(), config)
    reid = KPRReID(weights=str(path), device="cpu", **SMALL)
    assert reid.arch.test_embeddings == ("bn_globl", "bn_parts") and reid.arch.binary_visibility is False
    emb, vis = reid.embed_crops([np.random.default_rng(0).integers(0, 255, (90, 40, 3), dtype=np.uint8)])
    assert ((vis > 0) & (vis < 1)).any()  # continuous visibility: max part probability
    with pytest.raises(InputError, match=r"reid.test_embeddings=\['bn_foreg', 'parts'\] but checkpoint has "
                                         r"\['bn_globl', 'bn_parts'\]"):
        KPRReID(weights=str(path), test_embeddings=["bn_foreg", "parts"], **SMALL)
    with pytest.raises(InputError, match="reid.test_embeddings=\\['conct'\\] is not supported"):
        KPRReID(weights=None, test_embeddings=["conct"], **SMALL)


@pytest.mark.parametrize("scale, ok", [(-1, True), pytest.param(4, True, marks=pytest.mark.slow), (8, False)])
def test_msf_spatial_scale(tmp_path, fake_yacs, scale, ok):
    config = _upstream_config()
    config["model"]["kpr"]["msf_spatial_scale"] = scale
    path = tmp_path / f"kpr_msf{scale}.pth.tar"
    _save_upstream_checkpoint(path, fake_yacs, _arch(), config)
    if ok:
        KPRReID(weights=str(path), **SMALL)
    else:
        with pytest.raises(InputError, match="msf_spatial_scale=8"):
            KPRReID(weights=str(path), **SMALL)


SOL_MICRO = "solider_swin_base_patch4_window7_224"


@pytest.mark.slow
def test_kpr_sol_checkpoint_loads_strictly_with_its_semantic_weight(tmp_path, fake_yacs, monkeypatch):
    from kprtrack.reid.kpr import solider

    monkeypatch.setitem(solider.SOLIDER_SPECS, SOL_MICRO, solider.SoliderSpec(
        embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)))
    config = _upstream_config(backbone=SOL_MICRO, h=96, w=32)
    config["data"].update(norm_mean=[0.5, 0.5, 0.5], norm_std=[0.5, 0.5, 0.5])
    config["model"]["solider"] = {"semantic_weight": 0.5}
    path = tmp_path / "kpr_occ_pt_SOLIDER_fake.pth.tar"
    source = _save_upstream_checkpoint(path, fake_yacs, _arch(backbone=SOL_MICRO, height=96, width=32,
                                                               semantic_weight=0.5), config)
    sol = dict(backbone=SOL_MICRO, height=96, width=32, dim=32, mean=[0.5] * 3, std=[0.5] * 3)
    reid = KPRReID(weights=str(path), device="cpu", **sol)
    assert reid.arch.semantic_weight == 0.5
    crops = [np.random.default_rng(i).integers(0, 255, (90, 30, 3), dtype=np.uint8) for i in range(2)]
    emb, vis = reid.embed_crops(crops)
    from kprtrack.reid.crops import normalise, resize_images

    with torch.no_grad():
        ref_emb, _ = source.eval()(torch.from_numpy(normalise(resize_images(crops, (96, 32)), [0.5] * 3, [0.5] * 3)))
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-5)
    # the same conflict report as KPR_IN: IN defaults against a SOLIDER checkpoint
    with pytest.raises(InputError) as err:
        KPRReID(weights=str(path), backbone=MICRO, height=96, width=32, dim=32)
    assert f"reid.backbone='{MICRO}' but checkpoint has '{SOL_MICRO}'" in str(err.value)
    assert "reid.mean=[0.485, 0.456, 0.406] but checkpoint has [0.5, 0.5, 0.5]" in str(err.value)
    assert "e.g. with reid=kpr_sol" in str(err.value)


def test_registry_lists_every_published_kpr_file():
    from kprtrack.reid.kpr.registry import KPR_WEIGHTS

    sol = {k: v for k, v in KPR_WEIGHTS.items() if k.endswith("_SOLIDER")}
    assert {"kpr_occ_pt_SOLIDER", "kpr_market_SOLIDER"} <= set(sol)
    assert all(v.meta["height"] == 384 and v.meta["backbone"] == SOL_MICRO for v in sol.values())
    assert KPR_WEIGHTS["kpr_market_SOLIDER"].file_name == "kpr_market_SOLIDER_93.25_96.59_41453430.pth.tar"


@pytest.mark.parametrize("name", ["kpr", "kpr_sol"])
def test_reid_configs_are_constructor_kwargs(name):
    """reid=kpr_sol extends reid=kpr: only the SOLIDER settings differ, every key is a KPRReID argument."""
    import inspect

    from kprtrack.config import compose

    node = compose(f"reid/{name}").reid
    keys = {k for k in node.keys() if k != "_target_"}
    assert keys == set(inspect.signature(KPRReID).parameters)
    if name == "kpr_sol":
        assert node.backbone == SOL_MICRO and node.height == 384 and list(node.mean) == [0.5] * 3
        assert node.weights == "kpr_occ_pt_SOLIDER"
