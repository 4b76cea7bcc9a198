"""train-pose: fine-tuned checkpoints in mmpose 1.x layout, UDP decoding, and pose mAP by the official kit."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from kprtrack.errors import InputError
from kprtrack.pose.heatmaps import decode_heatmaps, heatmap_to_input_scale
from kprtrack.pose.hrnet import HRNetPose, udp_center_scale
from kprtrack.pose.hrnet_net import PoseHighResolutionNet
from kprtrack.pose.topdown import to_frame, to_input, warp_matrices
from kprtrack.record import Detections, Frame
from kprtrack.train.pose.checkpoint import read_pose_checkpoint, save_pose_checkpoint
from kprtrack.train.pose.evaluate import evaluate_pose, parse_pose_results, run_pose_kit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- UDP decoding --------------------------------------------------------------------------------------

def udp_gaussian(point_hm, heatmap_size, sigma=2.0):
    """mmpose 1.x ``generate_udp_gaussian_heatmaps`` for one joint: a unit Gaussian centred at the
    sub-pixel heatmap position, drawn in the 3-sigma window around the nearest pixel."""
    h, w = heatmap_size
    out = np.zeros((h, w), np.float32)
    radius = int(3 * sigma)
    mu = (np.asarray(point_hm) + 0.5).astype(int)
    ys, xs = np.mgrid[max(0, mu[1] - radius):min(h, mu[1] + radius + 1),
                      max(0, mu[0] - radius):min(w, mu[0] + radius + 1)]
    out[ys, xs] = np.exp(-((xs - point_hm[0]) ** 2 + (ys - point_hm[1]) ** 2) / (2 * sigma ** 2))
    return out


def test_udp_decode_recovers_the_encoded_point():
    input_size, heatmap_size = (256, 192), (64, 48)
    factor = heatmap_to_input_scale("udp", input_size, heatmap_size)
    np.testing.assert_allclose(factor, [191 / 47, 255 / 63])
    rng = np.random.default_rng(0)
    # input pixels: 40 at least 6 heatmap pixels (the blur's reach) from the borders, then 4 on them
    points = np.concatenate([rng.uniform([25, 25], [166, 230], (40, 2)),
                             [[0.0, 0.0], [191.0, 255.0], [3.3, 250.1], [100.37, 1.2]]])
    maps = np.stack([udp_gaussian(p / factor, heatmap_size) for p in points])[None]
    decoded = decode_heatmaps(maps, "udp")[0]
    found = decoded[:, :2] * factor
    error = np.abs(found - points).max(axis=1)
    assert error[:40].max() < 0.1, error[:40].max()
    # on the borders mmpose's refinement is biased (the zero-padded blur pulls the peak inwards) but
    # stays within one heatmap pixel (~4 input pixels) and finite
    assert np.isfinite(found).all() and error[40:].max() < factor.min(), error[40:]
    np.testing.assert_allclose(decoded[:, 2], 1.0, atol=0.06)  # score = the heatmap maximum
    # argmax decoding of the same maps is off by up to half a heatmap pixel (~2 input px)
    plain = decode_heatmaps(maps, "argmax")[0, :40, :2] * factor
    assert np.abs(plain - points[:40]).max() > 0.5


def test_udp_crop_is_mmposes_udp_warp():
    """udp_center_scale + topdown's warp = mmpose get_udp_warp_matrix: c - s/2 -> pixel 0, c + s/2 -> w - 1."""
    input_size = (256, 192)
    centers, scales = np.array([[300.0, 200.0]]), np.array([[150.0, 200.0]])
    c2, s2 = udp_center_scale(centers, scales, input_size)
    mat = warp_matrices(c2, s2, input_size)[0]
    corners = np.array([[225.0, 100.0, 1.0], [375.0, 300.0, 1.0]])
    np.testing.assert_allclose(corners @ mat.T, [[0, 0], [191, 255]], atol=1e-9)
    point = np.array([[[310.5, 171.25]]])
    udp_input = (point - (centers - scales / 2)) * (np.array([191, 255]) / scales)
    np.testing.assert_allclose(to_input(point, c2, s2, input_size), udp_input, atol=1e-9)
    np.testing.assert_allclose(to_frame(udp_input, c2, s2, input_size), point, atol=1e-9)
    # the training crop (train-pose's augment, rotation 0) is the crop inference makes
    from kprtrack.train.pose.augment import affine_matrix

    np.testing.assert_allclose(affine_matrix(centers[0], scales[0], 0.0, input_size, udp=True), mat, atol=1e-9)
    np.testing.assert_allclose(affine_matrix(centers[0], scales[0], 0.0, input_size, udp=False),
                               warp_matrices(centers, scales, input_size)[0], atol=1e-9)


def test_hrnet_udp_decode_end_to_end_geometry():
    """Frame point -> mmpose's UDP crop -> UDP heatmap -> HRNetPose(decode=udp) -> the same frame point."""
    est = HRNetPose(weights=None, decode="udp", flip_test=False, input_size=[256, 256], layout="posetrack")
    frame = Frame("s", 0, np.zeros((240, 320, 3), np.uint8))
    box = np.array([[100.0, 40.0, 180.0, 200.0]], np.float32)
    points = np.array([[140.3, 120.7], [120.25, 80.5], [160.9, 170.1]])
    center = (box[0, :2] + box[0, 2:]) / 2
    side = (box[0, 3] - box[0, 1]) * 1.25  # square input: the padded box is made square by its height
    in_hm = (points - (center - side / 2)) * (63 / side)  # mmpose UDP: frame -> heatmap pixels, (W-1)/s
    maps = np.zeros((1, 17, 64, 64), np.float32)
    for k, p in enumerate(in_hm):
        maps[0, k] = udp_gaussian(p, (64, 64))
    est.heatmaps = lambda crops: maps
    out = est.estimate(frame, Detections(box, np.ones(1))).keypoints[0]
    np.testing.assert_allclose(out[:3, :2], points, atol=0.1)


def test_decoding_read_from_checkpoint_meta():
    from kprtrack.pose.hrnet_checkpoint import decode_from_meta, input_size_from_meta, layout_from_meta

    ours = {"kprtrack": {"arch": "w32", "input_size": [384, 288], "codec": "udp", "layout": "posetrack"}}
    assert (decode_from_meta(ours), input_size_from_meta(ours), layout_from_meta(ours)) == ("udp", (384, 288),
                                                                                           "posetrack")
    assert decode_from_meta({"kprtrack": {"codec": "msra"}}) is None  # -> argmax
    mm1 = "codec = dict(\n    type='UDPHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)\n"
    assert decode_from_meta({"cfg": mm1}) == "udp"
    dark = "codec = dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2, unbiased=True)"
    assert decode_from_meta({"cfg": dark}) == "dark"
    assert decode_from_meta({"config": "data_cfg = dict(image_size=[192, 256], use_udp=True)"}) == "udp"
    assert decode_from_meta({"config": "test_cfg = dict(use_udp=False)"}) is None
    with pytest.raises(InputError, match="argmax, dark, udp"):
        HRNetPose(weights=None, decode="soft")


def test_udp_flip_test_mirrors_without_the_shift():
    """UDP heatmaps mirror exactly (pixel 0 <-> W-1): shift_heatmap is not applied with decode=udp."""
    torch.manual_seed(0)
    est = HRNetPose(weights=None, decode="udp", flip_test=True, shift_heatmap=True, layout="posetrack",
                    input_size=[64, 64])
    crops = np.random.default_rng(2).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    from kprtrack.pose.layouts import flip_index

    mirrored = est.heatmaps(np.ascontiguousarray(crops[:, :, ::-1]))
    np.testing.assert_allclose(mirrored, est.heatmaps(crops)[:, flip_index("posetrack"), :, ::-1], atol=1e-4)


# --- checkpoints -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_w32():
    torch.manual_seed(0)
    net = PoseHighResolutionNet("w32").eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, value in net.state_dict().items():  # every tensor random: a skipped key would show
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
            elif value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=gen) * 0.2 - 0.1)
    return net


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["udp", "msra"])
def test_saved_checkpoint_loads_in_hrnet_pose_strictly(tmp_path, random_w32, codec):
    path = tmp_path / "ckpt" / "pose.pth"
    training = {"epoch": 3, "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4}]}, "rng": [1, 2]}
    save_pose_checkpoint(path, random_w32.state_dict(), "w32", [128, 96], codec, training)
    raw = torch.load(path, weights_only=True)
    assert all(k.startswith(("backbone.", "head.final_layer.")) for k in raw["state_dict"])
    assert "head.final_layer.weight" in raw["state_dict"] and "backbone.conv1.weight" in raw["state_dict"]
    names = raw["meta"]["dataset_meta"]["keypoint_id2name"]
    assert names[1] == "head_bottom" and names[16] == "right_ankle"
    assert raw["meta"]["kprtrack"] == {"arch": "w32", "input_size": [128, 96], "codec": codec, "layout": "posetrack"}
    assert not list(path.parent.glob(".*tmp"))  # written atomically, nothing left beside it

    est = HRNetPose(weights=str(path), flip_test=False, device="cpu")  # strict by default
    assert est.report.ok and est.report.format == "mmpose1" and not est.report.unexpected
    assert est.layout == "posetrack" and est.input_size == (128, 96) and est.arch == "w32"
    assert est.decode == ("udp" if codec == "udp" else "argmax")
    batch = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 128, 96)).astype(np.float32))
    with torch.inference_mode():
        ours = est.model(batch)
        assert torch.isfinite(ours).all() and torch.equal(ours, random_w32(batch))

    state, training_back = read_pose_checkpoint(path)
    assert training_back == training
    own = random_w32.state_dict()
    assert set(state) == set(own) and all(torch.equal(state[k], own[k]) for k in own)


def test_checkpoint_writer_refuses_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="codec"):
        save_pose_checkpoint(tmp_path / "a.pth", {"final_layer.weight": torch.zeros(17, 32, 1, 1)}, "w32",
                             [256, 192], "dark", {})
    with pytest.raises(InputError, match="not an HRNet state dict"):
        save_pose_checkpoint(tmp_path / "a.pth", {"fc.weight": torch.zeros(2)}, "w32", [256, 192], "msra", {})
    assert not (tmp_path / "a.pth").exists()


# --- the kit's PosemAP --------------------------------------------------------------------------------

RESULTS = """map & Head & Shou & Elb & Wri & Hip & Knee & Ankl & Total
 & 81.5 & 80.0 & 70.1 & 60.0 & 75.2 & 70.0 & 65.3 & 72.1
precision & Head & Shou & Elb & Wri & Hip & Knee & Ankl & Total
 & 1.0 & 2.0 & 3.0 & 4.0 & 5.0 & 6.0 & 7.0 & 4.5
recall & Head & Shou & Elb & Wri & Hip & Knee & Ankl & Total
 & 9.0 & 9.0 & 9.0 & 9.0 & 9.0 & 9.0 & 9.0 & 9.5
"""


def test_parse_kit_results():
    assert parse_pose_results(RESULTS) == {
        "pose_mAP": 72.1, "pose_AP_head": 81.5, "pose_AP_shoulder": 80.0, "pose_AP_elbow": 70.1,
        "pose_AP_wrist": 60.0, "pose_AP_hip": 75.2, "pose_AP_knee": 70.0, "pose_AP_ankle": 65.3,
        "pose_precision": 4.5, "pose_recall": 9.5}
    with pytest.raises(RuntimeError, match="kit output"):
        parse_pose_results("map & Head\n & nan?\n")


def test_no_kit_python_skips_with_a_reason(tmp_path, capsys):
    cfg = OmegaConf.create({"data": {"root": str(tmp_path)}, "eval": {"kit_python": None}})
    assert evaluate_pose(tmp_path / "none.pth", cfg, tmp_path / "out") == {}
    assert "pose evaluation skipped: eval.kit_python is not set" in capsys.readouterr().out


def _write_gt_as_predictions(root, annotations_dir, out_dir, perturb=False):
    """GT people (keypoints, score = visibility) through the writer; ``perturb``: odd joints moved far."""
    from kprtrack.data.posetrack import PoseTrackDataset
    from kprtrack.writers import PoseTrackWriter

    writer = PoseTrackWriter(str(out_dir), subdir="sequences")
    for source in PoseTrackDataset(str(root), "val", annotations_dir).sequences():
        writer.begin_sequence(source.name, source.meta)
        for frame in source.frames(decode=False):
            gt = frame.gt
            keypoints = gt.keypoints.copy()
            if perturb:
                height = (gt.boxes[:, 3] - gt.boxes[:, 1])[:, None]
                keypoints[:, 1::2, 0] += np.where(keypoints[:, 1::2, 2] > 0, 3 * height, 0)
            writer.write(frame, gt.with_(keypoints=keypoints))
        writer.end_sequence()
    return out_dir / "sequences"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from kprtrack.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo"), num_sequences=1, num_frames=30, width=320, height=192)


@pytest.fixture(scope="module")
def kit():
    from tests.kit.oracle import kit_python, kit_root

    return kit_python(), kit_root()  # skips with the reason where the kit's venv cannot be built


def _datasets(demo_root):
    from conftest import shared_root

    sets = [(demo_root, "posetrack_data")]
    pt18 = shared_root() / "data" / "posetrack18"
    if (pt18 / "annotations" / "val").is_dir():
        sets.append((pt18, "annotations"))
    return sets


@pytest.mark.slow
def test_kit_gives_100_for_ground_truth_and_less_for_a_perturbed_copy(tmp_path, demo_root, kit):
    python, kit_dir = kit
    for i, (root, annotations_dir) in enumerate(_datasets(demo_root)):
        exact = _write_gt_as_predictions(root, annotations_dir, tmp_path / f"exact{i}")
        moved = _write_gt_as_predictions(root, annotations_dir, tmp_path / f"moved{i}", perturb=True)
        gt = root / annotations_dir / "val"
        perfect = run_pose_kit(gt, exact, kit_dir, python, work_dir=tmp_path / f"kit_exact{i}")
        assert perfect["pose_mAP"] == pytest.approx(100.0, abs=0.05), (root, perfect)
        assert perfect["pose_AP_head"] == perfect["pose_AP_ankle"] == 100.0
        worse = run_pose_kit(gt, moved, kit_dir, python)
        print(root.name, "perturbed:", worse)
        assert 20 < worse["pose_mAP"] < 80, worse  # odd joints all wrong: about half the APs are 0
        assert (tmp_path / f"kit_exact{i}" / "sequences" / "pose_hota_results.txt").is_file()


@pytest.mark.slow
def test_kit_failures_are_reported(tmp_path, demo_root, kit):
    python, kit_dir = kit
    gt = demo_root / "posetrack_data" / "val"
    with pytest.raises(InputError, match="no prediction file"):
        run_pose_kit(gt, tmp_path, kit_dir, python)
    broken = tmp_path / "broken" / "sequences"
    broken.mkdir(parents=True)
    for path in gt.glob("*.json"):  # the GT file itself as predictions: no per-joint 'scores'
        (broken / path.name).write_text(path.read_text())
    with pytest.raises(RuntimeError, match="(?s)the PoseTrack21 kit failed .*broadcast"):
        run_pose_kit(gt, broken, kit_dir, python)
    with pytest.raises(InputError, match="not an executable"):
        run_pose_kit(gt, broken, kit_dir, tmp_path / "no_python")


class _GroundTruthPose:
    """An estimator that 'predicts' the GT keypoints it is handed (score = visibility)."""

    def estimate(self, frame, detections):
        assert frame.image is not None and frame.is_labeled
        return detections


@pytest.mark.slow
def test_predictions_on_gt_boxes_with_perfect_keypoints_score_100(tmp_path, demo_root, kit):
    from kprtrack.train.pose.evaluate import EvalSettings, predict_split

    python, kit_dir = kit
    settings = EvalSettings(root=demo_root, split="val", annotations_dir="posetrack_data")
    folder = predict_split(_GroundTruthPose(), settings, tmp_path / "sequences")
    metrics = run_pose_kit(demo_root / "posetrack_data" / "val", folder, kit_dir, python)
    assert metrics["pose_mAP"] == 100.0 and metrics["pose_precision"] == metrics["pose_recall"] == 100.0


@pytest.mark.slow
def test_evaluate_pose_on_a_random_checkpoint(tmp_path, demo_root, random_w32, kit):
    python, kit_dir = kit
    ckpt = save_pose_checkpoint(tmp_path / "random.pth", random_w32.state_dict(), "w32", [64, 64], "udp", {})
    cfg = OmegaConf.create({
        "data": {"root": str(demo_root), "input_size": [64, 64]},
        "eval": {"split": "val", "annotations_dir": "posetrack_data", "kit_dir": str(kit_dir),
                 "kit_python": str(python), "flip_test": True, "batch_size": 8, "device": "cpu"}})
    metrics = evaluate_pose(ckpt, cfg, tmp_path / "eval")
    print("random checkpoint:", metrics)
    assert set(metrics) == {"pose_mAP", "pose_AP_head", "pose_AP_shoulder", "pose_AP_elbow", "pose_AP_wrist",
                            "pose_AP_hip", "pose_AP_knee", "pose_AP_ankle", "pose_precision", "pose_recall"}
    assert 0 <= metrics["pose_mAP"] < 30 and all(math.isfinite(v) for v in metrics.values())
    written = json.loads((tmp_path / "eval" / "sequences" / f"{next((demo_root / 'posetrack_data' / 'val').glob('*.json')).stem}.json").read_text())
    gt = json.loads(next((demo_root / "posetrack_data" / "val").glob("*.json")).read_text())
    assert [im["id"] for im in written["images"]] == [im["id"] for im in gt["images"]]
    labelled = {im["id"] for im in gt["images"] if im["is_labeled"]}
    people = [a for a in gt["annotations"] if a["image_id"] in labelled and any(a["keypoints"][0::3])]
    assert len(written["annotations"]) == len(people) > 0
    assert all(len(a["scores"]) == 17 for a in written["annotations"])
    saved = json.loads((tmp_path / "eval" / "pose_map.json").read_text())
    assert saved["metrics"] == metrics and saved["decode"] == "udp"
