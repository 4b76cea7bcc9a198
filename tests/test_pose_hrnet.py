"""HRNet: random-init shapes and batching, flip test, checkpoint adapters on fake upstream files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kprtrack.errors import InputError
from kprtrack.pose import hrnet_checkpoint as ckpt
from kprtrack.pose.hrnet import HRNetPose
from kprtrack.pose.hrnet_net import PoseHighResolutionNet
from kprtrack.record import Detections, Frame
from numpy1_pickle import save_numpy1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def w32_state():
    torch.manual_seed(0)
    return PoseHighResolutionNet("w32").state_dict()


def _randomised(state):
    """Every float tensor random, so a load that skipped a key would show."""
    gen = torch.Generator().manual_seed(1)
    return {k: (torch.rand(v.shape, generator=gen) + 0.5 if v.is_floating_point() else v)
            for k, v in state.items()}


@pytest.mark.slow
def test_hrnet_shapes_and_param_counts():
    net = PoseHighResolutionNet("w32").eval()
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(28.5e6, rel=0.01)
    with torch.inference_mode():
        assert net(torch.zeros(2, 3, 256, 192)).shape == (2, 17, 64, 48)
        assert net(torch.zeros(1, 3, 384, 288)).shape == (1, 17, 96, 72)
    w48 = PoseHighResolutionNet("w48")
    assert w48.final_layer.in_channels == 48
    with pytest.raises(ValueError, match="w40"):
        PoseHighResolutionNet("w40")


@pytest.mark.slow
def test_batched_equals_one_at_a_time():
    torch.manual_seed(0)
    est = HRNetPose(weights=None, flip_test=False, batch_size=3, input_size=[128, 96])
    rng = np.random.default_rng(0)
    frame = Frame("s", 0, rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    boxes = np.array([[10, 10, 80, 200], [100, 30, 160, 150], [200, 0, 320, 240],
                      [150, 100, 230, 230], [0, 120, 60, 239]], np.float32)
    together = est.estimate(frame, Detections(boxes, np.ones(5))).keypoints
    alone = np.concatenate([est.estimate(frame, Detections(b[None], np.ones(1))).keypoints for b in boxes])
    assert together.shape == (5, 17, 3) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-3)
    inside = together[..., :2]
    assert (inside[..., 0] > -60).all() and (inside[..., 0] < 380).all()  # within padded boxes


@pytest.mark.slow
def test_flip_test_is_mirror_symmetric():
    torch.manual_seed(0)
    est = HRNetPose(weights=None, flip_test=True, shift_heatmap=False, layout="coco", input_size=[64, 64])
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    maps = est.heatmaps(crops)
    maps_of_mirror = est.heatmaps(np.ascontiguousarray(crops[:, :, ::-1]))
    index = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])
    np.testing.assert_allclose(maps_of_mirror, maps[:, index, :, ::-1], atol=1e-4)


def test_bad_boxes_do_not_crash():
    est = HRNetPose(weights=None, flip_test=False, input_size=[64, 64])
    frame = Frame("s", 0, np.zeros((100, 100, 3), np.uint8))
    boxes = np.array([[np.nan, 1, 2, 3], [10, 10, 10.5, 40], [-50, -50, -10, -10], [90, 90, 200, 200],
                      [0, 0, 100, 100]], np.float32)
    out = est.estimate(frame, Detections(boxes, np.ones(5))).keypoints
    assert (out[:3] == 0).all() and np.isfinite(out).all()
    assert est.estimate(frame, Detections.empty()).keypoints.shape == (0, 17, 3)
    with pytest.raises(InputError, match="multiples of 32"):
        HRNetPose(weights=None, input_size=[64, 48])


def _save(tmp_path, name, obj):
    """As upstream wrote it: pickled under numpy 1.x (numpy.core.multiarray names in the meta)."""
    path = tmp_path / name
    save_numpy1(obj, path)
    return path


def _check_loaded(est, reference):
    own = est.model.state_dict()
    differing = [key for key, value in reference.items() if not torch.equal(own[key], value)]
    assert not differing, differing[:5]


@pytest.mark.slow
def test_mmpose1_checkpoint_with_numpy_meta(tmp_path, w32_state):
    state = _randomised(w32_state)
    upstream = {("head." if k.startswith("final_layer") else "backbone.") + k: v for k, v in state.items()}
    meta = {"dataset_meta": {"dataset_name": "posetrack18",
                             "keypoint_id2name": {0: "nose", 1: "head_bottom", 2: "head_top"},
                             "sigmas": np.ones(17, np.float32), "flip_indices": [0, 1, 2]},
            "mmpose_version": "1.0.0"}
    path = _save(tmp_path, "mm1.pth", {"meta": meta, "state_dict": upstream})
    est = HRNetPose(weights=str(path), flip_test=False)
    assert est.report.format == "mmpose1" and est.report.ok and not est.report.unexpected
    assert est.layout == "posetrack" and est.arch == "w32" and est.input_size == (256, 192)
    _check_loaded(est, state)


@pytest.mark.slow
def test_mmpose0_checkpoint(tmp_path, w32_state):
    state = _randomised(w32_state)
    upstream = {("keypoint_head." if k.startswith("final_layer") else "backbone.") + k: v
                for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = _save(tmp_path, "mm0.pth", {"meta": {"epoch": 20}, "state_dict": upstream})
    est = HRNetPose(weights=str(path), layout="posetrack")
    assert est.report.format == "mmpose0" and est.report.ok
    _check_loaded(est, {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")})


@pytest.mark.slow
def test_original_release_checkpoint_with_dataparallel_prefix(tmp_path, w32_state):
    state = _randomised(w32_state)
    path = _save(tmp_path, "pose_hrnet_w32_256x192.pth", {"module." + k: v for k, v in state.items()})
    est = HRNetPose(weights=str(path))
    assert est.report.format == "original" and est.report.ok and est.layout == "coco"
    _check_loaded(est, state)


@pytest.mark.slow
def test_key_report_and_strictness(tmp_path, w32_state):
    state = dict(_randomised(w32_state))
    del state["stage4.0.branches.0.0.conv1.weight"]
    state["final_layer.weight"] = torch.zeros(15, 32, 1, 1)
    state["extra.unused"] = torch.zeros(1)
    path = _save(tmp_path, "broken.pth", state)
    with pytest.raises(InputError, match="missing: stage4.0.branches.0.0.conv1.weight") as err:
        HRNetPose(weights=str(path))
    assert "final_layer.weight: (15, 32, 1, 1) vs (17, 32, 1, 1)" in str(err.value)
    est = HRNetPose(weights=str(path), strict=False, flip_test=False)
    assert est.report.unexpected == ["extra.unused"] and len(est.report.missing) == 1


def test_wrong_arch_unknown_format_and_missing_file(tmp_path, w32_state):
    path = _save(tmp_path, "w32.pth", dict(w32_state))
    with pytest.raises(InputError, match="HRNet-W32"):
        HRNetPose(weights=str(path), arch="w48")
    other = _save(tmp_path, "resnet.pth", {"backbone.conv1.weight": torch.zeros(1)})
    with pytest.raises(InputError, match="no HRNet head"):
        HRNetPose(weights=str(other))
    with pytest.raises(InputError, match="not found"):
        HRNetPose(weights=str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        HRNetPose(weights=str(junk))


@pytest.mark.slow
def test_url_download_into_cache_and_sha_prefix(tmp_path, w32_state, monkeypatch):
    path = _save(tmp_path, "remote.pth", dict(w32_state))
    est = HRNetPose(weights=path.as_uri(), flip_test=False)
    assert est.report.ok
    from kprtrack.weights import cache_dir

    assert (cache_dir() / "remote.pth").is_file()
    # registry entries carry OpenMMLab's 8-digit sha256 prefix; a file that does not match is refused
    from kprtrack.weights import WeightSpec, resolve_weights

    registry = {"w32": WeightSpec(url=path.as_uri(), sha256="deadbeef", filename="prefixed.pth")}
    with pytest.raises(InputError, match="sha256 should start with deadbeef"):
        resolve_weights("w32", registry)


def test_registry_entries_offline_message(monkeypatch):
    assert set(ckpt.HRNET_WEIGHTS) >= {"hrnet_w32_coco_256x192", "hrnet_w32_posetrack18_256x192"}
    for name, spec in ckpt.HRNET_WEIGHTS.items():
        assert spec.url.startswith("https://download.openmmlab.com/mmpose/")
        assert len(spec.sha256) == 8 and spec.sha256 in spec.url
        assert spec.meta["layout"] in name
    with pytest.raises(InputError, match="fetch https://download.openmmlab.com"):
        HRNetPose(weights="hrnet_w32_coco_256x192", download=False)


def _mmpose0(state):
    return {("keypoint_head." if k.startswith("final_layer") else "backbone.") + k: v
            for k, v in state.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.slow
def test_mmpose0_posetrack_file_is_read_as_posetrack_from_its_config(tmp_path, w32_state):
    """A PoseTrack-trained mmpose 0.x file under any name: its stored config names the data set and size."""
    config = ("dataset_type = 'TopDownPoseTrack18Dataset'\n"
              "data_cfg = dict(image_size=[288, 384], heatmap_size=[72, 96], num_output_channels=17)\n"
              "load_from = 'https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w32_coco_384x288.pth'\n")
    meta = {"config": config, "epoch": 20, "hook_msgs": {"best_score": np.float64(0.77)}}
    path = _save(tmp_path, "my_model.pth", {"meta": meta, "state_dict": _mmpose0(w32_state)})
    est = HRNetPose(weights=str(path), flip_test=False)
    assert est.layout == "posetrack" and est.input_size == (384, 288) and est.report.format == "mmpose0"


@pytest.mark.slow
def test_mmpose0_file_that_says_nothing_is_refused_naming_the_option(tmp_path, w32_state):
    path = _save(tmp_path, "renamed.pth", {"meta": {"epoch": 20}, "state_dict": _mmpose0(w32_state)})
    with pytest.raises(InputError, match="set pose.layout=posetrack .* or pose.layout=coco"):
        HRNetPose(weights=str(path))
    assert HRNetPose(weights=str(path), layout="posetrack", flip_test=False).layout == "posetrack"


@pytest.mark.slow
def test_official_file_names_give_layout_and_input_size(tmp_path, w32_state, caplog):
    named = _save(tmp_path, "hrnet_w32_posetrack18_384x288-806f00a3_20211130.pth",
                  {"meta": {"epoch": 20}, "state_dict": _mmpose0(w32_state)})
    est = HRNetPose(weights=str(named), flip_test=False)
    assert est.layout == "posetrack" and est.input_size == (384, 288)
    bare = _save(tmp_path, "hrnet.pth", dict(w32_state))  # original-release keys, no size anywhere
    with caplog.at_level("WARNING"):
        est = HRNetPose(weights=str(bare), flip_test=False)
    assert est.input_size == (256, 192) and est.layout == "coco"
    assert "pose.input_size=[384,288]" in caplog.text
