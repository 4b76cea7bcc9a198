"""Checkpoints pickled under numpy 1.x (every published KPR, mmpose and YOLOX file) load under numpy 2.

``tests/fixtures/numpy1/`` was written by a real numpy 1.26 process (``tools/make_numpy1_fixtures.py``)
with each upstream's top-level structure; ``numpy1_pickle.save_numpy1`` writes the same bytes from
here, which the full-model tests (test_kpr, test_pose_hrnet, test_detector_yolox) use.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kprtrack.detector.yolox_weights import load_state_dict
from kprtrack.errors import InputError
from kprtrack.pose import hrnet_checkpoint as hrnet
from kprtrack.reid.kpr.checkpoint import _safe_globals as kpr_safe_globals
from kprtrack.reid.kpr.checkpoint import checkpoint_settings, unsupported_features
from kprtrack.reid.kpr.checkpoint import read_checkpoint as read_kpr
from kprtrack.weights import torch_load
from numpy1_pickle import data_pickle, save_numpy1
from tool_modules import load_tool

FIXTURES = Path(__file__).parent / "fixtures" / "numpy1"


@pytest.mark.parametrize("name", ["torchreid_kpr.pth.tar", "mmpose1_hrnet_coco.pth",
                                  "mmpose1_hrnet_posetrack18.pth", "mmpose0_hrnet_posetrack18.pth",
                                  "yolox_coco.pth"])
def test_fixtures_really_are_numpy1_pickles(name):
    # `grep -ac numpy.core.multiarray FILE` is how a user tells an affected file.
    raw = data_pickle(FIXTURES / name)
    assert b"numpy.core.multiarray" in raw and b"numpy._core" not in raw


def test_plain_torch_load_refuses_them_which_is_the_bug():
    with pytest.raises(Exception, match="numpy.core.multiarray"):
        torch.load(FIXTURES / "mmpose1_hrnet_coco.pth", weights_only=True)


def test_torchreid_kpr_checkpoint():
    state, config = read_kpr(FIXTURES / "torchreid_kpr.pth.tar")
    assert sorted(state) == ["backbone_appearance_feature_extractor.parts_embed",
                             "parts_after_pooling_dim_reduce.layers.0.weight", "pixel_classifier.classifier.weight"]
    # the KPR repository's whole default config tree + its Occluded-PoseTrack test config
    assert config["project"]["name"] == "KPR" and config["model"]["kpr"]["keypoints"]["prompt_preprocess"] == "cck8"
    assert config["data"]["norm_std"] == [0.229, 0.224, 0.225]
    assert unsupported_features(config) == []  # upstream's defaults are all reproduced
    settings = checkpoint_settings(state, config)
    assert settings["backbone"].startswith("swinv2_base_window12to16") and settings["semantic_weight"] == 0.2
    assert settings["test_embeddings"] == ["bn_foreg", "parts"] and settings["binary_visibility"] is True
    raw = torch_load(FIXTURES / "torchreid_kpr.pth.tar", tuple(kpr_safe_globals()))
    assert isinstance(raw["rank1"], np.float32) and raw["rank1"] == pytest.approx(0.9233)
    assert raw["mAP"] == pytest.approx(0.8234) and raw["epoch"] == 120
    assert raw["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.008 * 0.5 * (1 + np.cos(np.pi / 120)))
    assert raw["scheduler"]["last_epoch"] == 1 and raw["ssmd"] == pytest.approx(1.25)


@pytest.mark.parametrize("name, layout", [("mmpose1_hrnet_coco.pth", "coco"),
                                          ("mmpose1_hrnet_posetrack18.pth", "posetrack")])
def test_mmpose1_checkpoint(name, layout):
    state, meta = hrnet.read_checkpoint(FIXTURES / name)
    adapted, fmt = hrnet.adapt_keys(state)
    assert fmt == "mmpose1" and "final_layer.weight" in adapted
    sigmas = meta["dataset_meta"]["sigmas"]
    assert isinstance(sigmas, np.ndarray) and sigmas.dtype == np.float32 and sigmas.shape == (17,)
    assert meta["dataset_meta"]["keypoint_colors"].dtype == np.uint8 and meta["iter"] == 366660
    assert hrnet.layout_from_meta(meta) == layout


def test_mmpose0_checkpoint():
    state, meta = hrnet.read_checkpoint(FIXTURES / "mmpose0_hrnet_posetrack18.pth")
    assert hrnet.adapt_keys(state)[1] == "mmpose0"
    assert meta["hook_msgs"]["best_score"] == pytest.approx(0.774) and hrnet.layout_from_meta(meta) == "posetrack"


@pytest.mark.parametrize("name, classes", [("yolox_coco.pth", 80), ("bytetrack_mot17.pth.tar", 1)])
def test_yolox_and_bytetrack_checkpoints(name, classes):
    state = load_state_dict(FIXTURES / name)
    assert tuple(state["head.cls_preds.0.weight"].shape) == (classes, 2, 1, 1)


@pytest.mark.parametrize("builder, name", [
    (lambda t: t.mmpose1_checkpoint(t.COCO, "coco"), "mmpose1_hrnet_coco.pth"),
    (lambda t: t.mmpose0_checkpoint(), "mmpose0_hrnet_posetrack18.pth"),
    (lambda t: t.yolox_checkpoint(bytetrack=False), "yolox_coco.pth"),
])
def test_save_numpy1_writes_what_numpy1_writes(tmp_path, builder, name):
    """The in-test writer used for full-size models is byte-faithful to a real numpy 1.x save."""
    path = tmp_path / name
    save_numpy1(builder(load_tool("make_numpy1_fixtures")), path)
    assert data_pickle(path) == data_pickle(FIXTURES / name)


def test_refusals_name_the_object_and_never_execute_it(tmp_path):
    path = tmp_path / "evil.pth"
    save_numpy1({"model": {}, "hook": Path("x")}, path)
    with pytest.raises(InputError, match=r"Python object of type pathlib\.\w*Path.*never arbitrary code"):
        torch_load(path)


def test_legacy_format_files_load_too(tmp_path):
    """Files saved by torch < 1.6 (not zip archives), like the original HRNet release, with numpy meta."""
    path = tmp_path / "pose_hrnet_w32_256x192.pth"
    save_numpy1({"final_layer.weight": torch.ones(17, 32, 1, 1), "best": np.float64(0.744)}, path, legacy_format=True)
    loaded = torch_load(path)
    assert loaded["best"] == pytest.approx(0.744) and loaded["final_layer.weight"].shape == (17, 32, 1, 1)
    assert b"numpy.core.multiarray" in path.read_bytes()


@pytest.mark.parametrize("name, preset", [("torchreid_kpr.pth.tar", "kpr"), ("torchreid_kpr_sol.pth.tar", "kpr_sol")])
@pytest.mark.slow
def test_reid_presets_agree_with_upstream_test_configs(name, preset):
    """reid=kpr / reid=kpr_sol ask for what the KPR repository's occ-PoseTrack test configs (IN /
    SOLIDER) hold: no conflict to report (dim and parts come from tensor shapes, not these files)."""
    import warnings

    from kprtrack.config import compose, instantiate
    from kprtrack.reid.kpr.stage import _reconcile

    state, config = read_kpr(FIXTURES / name)
    assert unsupported_features(config) == []
    node = compose(f"reid/{preset}", [f"reid.weights=null"]).reid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random initialisation
        reid = instantiate(node)
    stored = {k: v for k, v in checkpoint_settings({}, config).items() if k != "dim"}
    settings = _reconcile(reid.settings, stored, "error", FIXTURES / name)  # raises on any conflict
    assert settings["backbone"].split(".")[0] == config["model"]["kpr"]["backbone"].split(".")[0]
