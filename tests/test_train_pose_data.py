"""train-pose data: PoseTrack items, mmpose-style augmentation, MSRA/UDP heatmap targets."""
from __future__ import annotations

import json
import math
import pickle

import cv2
import numpy as np
import pytest

from kprtrack.errors import InputError
from kprtrack.pose.hrnet import normalise
from kprtrack.pose.layouts import flip_index
from kprtrack.pose.topdown import warp_matrices
from kprtrack.train.pose.augment import (
    LOWER_BODY, UPPER_BODY, AugmentConfig, affine_matrix, augment, truncnorm)
from kprtrack.train.pose.data import load_pose_items
from kprtrack.train.pose.targets import encode, msra_heatmaps, udp_heatmaps
from kprtrack.train.pose.task import PoseCollate, TargetSettings, target_settings
from tests.conftest import shared_file

INPUT = (128, 96)  # (h, w)
HEATMAP = (32, 24)
NO_AUG = AugmentConfig(enabled=False)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from kprtrack.data.demo import generate_demo

    root = tmp_path_factory.mktemp("pose_demo")
    generate_demo(root, num_sequences=1, num_frames=30, width=320, height=192)
    return root


# --- targets -------------------------------------------------------------------------------------

def test_msra_peak_at_nearest_heatmap_pixel():
    kpts = np.array([[37.0, 21.0], [38.1, 22.1], [0.0, 0.0]], np.float32)
    maps, weights = msra_heatmaps(kpts, [1, 1, 1], INPUT, HEATMAP, sigma=2)
    assert maps.shape == (3, 32, 24) and maps.dtype == np.float32
    # stride 4: 37/4 = 9.25 -> 9, 21/4 = 5.25 -> 5; 38.1/4 = 9.525 -> 10, 22.1/4 = 5.525 -> 6
    for k, (x, y) in enumerate([(9, 5), (10, 6), (0, 0)]):
        assert np.unravel_index(maps[k].argmax(), maps[k].shape) == (y, x)
        assert maps[k, y, x] == pytest.approx(1.0)
        # unit-peak Gaussian on integer offsets, sigma 2, zero beyond the 3-sigma window
        assert maps[k, y, x + 2] == pytest.approx(math.exp(-4 / 8), rel=1e-6)
    assert maps[0, 5, 9 + 7] == 0 and maps[0, 5, 9 + 6] > 0
    np.testing.assert_array_equal(weights, [1, 1, 1])


def test_udp_peak_at_sub_pixel():
    # UDP: heatmap pixel i <-> input pixel i * (96 - 1) / (24 - 1) in x, (128 - 1) / (32 - 1) in y
    fx, fy = 95 / 23, 127 / 31
    hx, hy = 9.3, 5.8
    maps, weights = udp_heatmaps(np.array([[hx * fx, hy * fy]]), [1], INPUT, HEATMAP, sigma=2)
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (6, 9)
    ys, xs = np.mgrid[0:32, 0:24]
    expected = np.exp(-((xs - hx) ** 2 + (ys - hy) ** 2) / 8)
    window = maps[0] > 0
    np.testing.assert_allclose(maps[0][window], expected[window], atol=1e-5)
    # the mass is centred on the sub-pixel position
    assert (maps[0] * xs).sum() / maps[0].sum() == pytest.approx(hx, abs=0.05)
    assert (maps[0] * ys).sum() / maps[0].sum() == pytest.approx(hy, abs=0.05)
    assert weights[0] == 1


@pytest.mark.parametrize("codec", ["msra", "udp"])
def test_invisible_or_outside_joints_get_weight_zero(codec):
    kpts = np.array([[40, 40], [40, 40], [-60, 40], [40, 900], [-10, 40], [96 + 10, 128 + 10]], np.float32)
    visible = np.array([1, 0, 1, 1, 1, 1], np.float32)
    maps, weights = encode(codec, kpts, visible, INPUT, HEATMAP, 2.0)
    np.testing.assert_array_equal(weights, [1, 0, 0, 0, 1, 1])
    assert not maps[1].any() and not maps[2].any() and not maps[3].any()
    # just outside the heatmap but within 3 sigma: a partial Gaussian on the border, weight kept
    assert 0 < maps[4].max() < 1 and maps[4][:, 0].max() == maps[4].max()
    assert 0 < maps[5].max() < 1


def test_bad_codec_is_an_input_error():
    with pytest.raises(InputError, match="codec"):
        encode("dark", np.zeros((1, 2)), [1], INPUT, HEATMAP)
    with pytest.raises(InputError, match="input_size"):
        target_settings({"input_size": [100, 75]})
    with pytest.raises(InputError, match="unknown aug"):
        AugmentConfig.from_cfg({"rotate": 3})


# --- geometry ------------------------------------------------------------------------------------

def _mmpose_warp(center, scale, rot, input_size):
    """mmpose's three-point get_warp_matrix(fix_aspect_ratio=True), written out independently."""
    out_h, out_w = input_size
    r = math.radians(rot)
    src_dir = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]]) @ [-0.5 * scale[0], 0]
    src = np.array([center, center + src_dir, [0, 0]], np.float32)
    dst = np.array([[out_w / 2, out_h / 2], [0, out_h / 2], [0, 0]], np.float32)
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts[2] = pts[1] + [-d[1], d[0]]
    return cv2.getAffineTransform(src, dst)


@pytest.mark.parametrize("rot", [0.0, 25.0, -70.0])
def test_affine_matches_mmpose_and_the_inference_crop(rot):
    center, scale = np.array([301.5, 188.0]), np.array([150.0, 200.0])
    np.testing.assert_allclose(affine_matrix(center, scale, rot, INPUT), _mmpose_warp(center, scale, rot, INPUT),
                               atol=2e-3)
    if rot == 0:  # the same crop as inference (kprtrack.pose.topdown)
        np.testing.assert_allclose(affine_matrix(center, scale, 0, INPUT),
                                   warp_matrices(center[None], scale[None], INPUT)[0], atol=1e-9)
    udp = affine_matrix(center, scale, rot, INPUT, udp=True)
    np.testing.assert_allclose(udp @ [*center, 1], [(96 - 1) / 2, (128 - 1) / 2], atol=1e-9)
    corner = udp @ [center[0] + 10, center[1], 1] - udp @ [*center, 1]
    # UDP scales each axis by (size - 1) / scale: 95 / 150 in x, 127 / 200 in y
    r = math.radians(rot)
    np.testing.assert_allclose(corner, [10 * math.cos(r) * 95 / 150, 10 * math.sin(r) * 127 / 200], atol=1e-9)


def test_truncnorm_is_bounded_and_seeded():
    a = truncnorm(np.random.default_rng(3), 10000)
    assert np.abs(a).max() <= 1 and abs(a.mean()) < 0.02 and 0.52 < a.std() < 0.56  # N(0, 1) on [-1, 1]: 0.540
    np.testing.assert_array_equal(a, truncnorm(np.random.default_rng(3), 10000))


COLORS = {9: (255, 0, 0), 10: (0, 255, 0), 0: (0, 0, 255), 15: (255, 255, 0), 16: (255, 0, 255)}  # joint -> RGB


def _painted_person(rng):
    """A 480x360 RGB frame with a person whose joints lie in a box; joints in COLORS get a dot."""
    image = np.full((360, 480, 3), 40, np.uint8)
    kpts = np.zeros((17, 3), np.float32)
    kpts[:, 0] = rng.uniform(170, 310, 17)
    kpts[:, 1] = np.linspace(60, 300, 17) + rng.uniform(-8, 8, 17)
    kpts[:, 2] = 1
    kpts[[3, 4], 2] = 0  # ears unlabelled, as in PoseTrack
    kpts[9, :2], kpts[10, :2] = (165, 150), (315, 170)  # wrists far apart, left and right
    for k, color in COLORS.items():
        cv2.circle(image, (int(round(kpts[k, 0])), int(round(kpts[k, 1]))), 7, color, -1)
    # fractional centres are not what we painted: use the integer centres as the truth
    for k in COLORS:
        kpts[k, :2] = np.round(kpts[k, :2])
    return image, np.array([150, 50, 330, 310], np.float32), kpts


def _centroid(crop, color):
    mask = np.all(np.abs(crop.astype(int) - color) < 60, axis=2)
    if mask.sum() < 4:
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("codec", ["msra", "udp"])
def test_flip_halfbody_affine_keep_joints_on_their_pixels(codec):
    image, box, kpts = _painted_person(np.random.default_rng(0))
    cfg = AugmentConfig(flip_prob=0.5, half_body_prob=0.5, rotate_prob=0.8)
    index = flip_index("posetrack")
    seen_flip = seen_rot = checked = 0
    for seed in range(16):
        rng = np.random.default_rng(seed)
        sample = augment(image, box, kpts, INPUT, cfg, rng, udp=codec == "udp")
        seen_flip += sample.flip
        seen_rot += sample.rotation != 0
        maps, weights = encode(codec, sample.keypoints, sample.visible, INPUT, HEATMAP, 2.0)
        for k in COLORS:
            # after a flip, joint k of the sample is the other side's joint of the original frame
            source = index[k] if sample.flip else k
            found = _centroid(sample.image, COLORS[source])
            x, y = sample.keypoints[k]
            if found is None or not (6 <= x < 90 and 6 <= y < 122) or weights[k] == 0:
                continue
            np.testing.assert_allclose(found, (x, y), atol=1.5)
            # the target's peak follows the dot: heatmap argmax back in input pixels
            hy, hx = np.unravel_index(maps[k].argmax(), maps[k].shape)
            stride = np.array([95 / 23, 127 / 31]) if codec == "udp" else np.array([4.0, 4.0])
            np.testing.assert_allclose(np.array([hx, hy]) * stride, found, atol=stride.max() * 0.75)
            checked += 1
    assert seen_flip >= 3 and seen_rot >= 3 and checked >= 30


def test_half_body_box_is_the_chosen_half():
    image, box, kpts = _painted_person(np.random.default_rng(1))
    cfg = AugmentConfig(flip_prob=0, half_body_prob=1.0, shift_prob=0, scale_prob=0, rotate_prob=0)
    halves = set()
    for seed in range(12):
        sample = augment(image, box, kpts, INPUT, cfg, np.random.default_rng(seed))
        for ids in (UPPER_BODY, LOWER_BODY):
            chosen = [i for i in ids if kpts[i, 2] > 0]
            if np.allclose(sample.center, kpts[chosen, :2].mean(axis=0)):
                extent = (kpts[chosen, :2].max(axis=0) - kpts[chosen, :2].min(axis=0)) * 1.5
                assert np.all(sample.scale >= extent - 1e-3) and np.isclose(sample.scale[0] / sample.scale[1], 96 / 128)
                halves.add(ids[0])
        assert sample.rotation == 0 and not sample.flip
    assert halves == {UPPER_BODY[0], LOWER_BODY[0]}  # both halves drawn (upper 70%)
    few = kpts.copy()
    few[:10, 2] = 0  # 5 visible joints < 9: never half-body
    sample = augment(image, box, few, INPUT, cfg, np.random.default_rng(0))
    np.testing.assert_allclose(sample.center, [(150 + 330) / 2, (50 + 310) / 2])


def test_no_augmentation_is_the_inference_crop():
    from kprtrack.pose.topdown import box_to_center_scale, crop_batch

    image, box, kpts = _painted_person(np.random.default_rng(2))
    sample = augment(image, box, kpts, INPUT, NO_AUG, np.random.default_rng(0))
    centers, scales = box_to_center_scale(box[None], INPUT)
    np.testing.assert_allclose(sample.center, centers[0])
    np.testing.assert_allclose(sample.scale, scales[0])
    expected = crop_batch(np.ascontiguousarray(image[..., ::-1]), centers, scales, INPUT, rgb=True)[0]
    assert np.abs(sample.image.astype(int) - expected).max() <= 1


def test_box_is_clipped_to_the_frame():
    image, _, kpts = _painted_person(np.random.default_rng(2))
    sample = augment(image, [-100, 40, 300, 500], kpts, INPUT, NO_AUG, None)
    np.testing.assert_allclose(sample.center, [(0 + 300) / 2, (40 + 359) / 2])


def test_normalise_matches_inference():
    from kprtrack.pose.hrnet import MEAN, STD

    crops = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3)).astype(np.uint8)
    out = normalise(crops)
    assert out.shape == (2, 3, 8, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, :, 3, 2], (crops[1, 3, 2] - MEAN) / STD, rtol=1e-6)


# --- items and collate ---------------------------------------------------------------------------

def test_demo_items(demo_root):
    items = load_pose_items(demo_root, split="val")
    raw = json.loads(next((demo_root / "posetrack_data" / "val").glob("*.json")).read_text())
    labelled = {im["id"] for im in raw["images"] if im.get("is_labeled")}
    people = [a for a in raw["annotations"] if a["image_id"] in labelled and a.get("bbox")
              and any(v > 0 for v in a["keypoints"][2::3])]
    assert len(items) == len(people) > 50
    first = items[0]
    assert first.bbox.dtype == np.float32 and first.bbox.shape == (4,)
    assert first.keypoints.shape == (17, 3) and set(np.unique(first.keypoints[:, 2])) <= {0.0, 1.0}
    assert first.image_path.endswith(".jpg") and first.sequence.endswith("_demo_val")
    assert all(it.image_id in labelled for it in items)
    strict = load_pose_items(demo_root, split="val", min_keypoints=15)
    assert 0 < len(strict) < len(items) and all(it.keypoints[:, 2].sum() >= 15 for it in strict)
    with pytest.raises(InputError, match="unknown sequence"):
        load_pose_items(demo_root, split="val", sequences=["nope"])


def test_broken_annotation_file_is_named(tmp_path):
    folder = tmp_path / "posetrack_data" / "train"
    folder.mkdir(parents=True)
    (folder / "000001_bad.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": '
                                            '[{"image_id": 1, "keypoints": [1, 2]}]}')
    with pytest.raises(InputError, match="000001_bad.json"):
        load_pose_items(tmp_path)


def _collate(seed, codec="msra"):
    return PoseCollate(TargetSettings(INPUT, codec, 2.0), AugmentConfig(), seed)


def test_collate_is_deterministic_and_picklable(demo_root):
    items = load_pose_items(demo_root, split="val")[:3]
    a = _collate(7)(items)
    assert a["images"].shape == (3, 3, 128, 96) and a["heatmaps"].shape == (3, 17, 32, 24)
    assert a["target_weights"].shape == (3, 17)
    for batch in (_collate(7)(items), pickle.loads(pickle.dumps(_collate(7)))(items)):
        for key in a:
            assert np.array_equal(a[key].numpy(), batch[key].numpy()), key
    used = _collate(7)
    used(items)
    copy = pickle.loads(pickle.dumps(used))  # a used collate pickles too; the copy restarts its stream
    assert np.array_equal(copy(items)["images"].numpy(), a["images"].numpy())
    other = _collate(8)(items)
    assert not np.array_equal(a["images"].numpy(), other["images"].numpy())


def test_posetrack18_items_and_batch():
    root = shared_file("data/posetrack18/annotations/val").parent.parent
    items = load_pose_items(root, split="val", annotations_dir="annotations")
    assert len(items) >= 3
    assert all(it.keypoints[:, 2].sum() >= 1 for it in items)
    batch = _collate(0, "udp")(items[:2])
    assert batch["heatmaps"].shape == (2, 17, 32, 24)
    assert float(batch["heatmaps"].max()) > 0.5 and float(batch["target_weights"].sum()) > 5


def test_heatmap_targets_equal_mmpose_codecs():
    """tests/fixtures/reference/mmpose_heatmaps.npz: mmpose 1.x's generate_gaussian_heatmaps
    (MSRAHeatmap) and generate_udp_gaussian_heatmaps (UDPHeatmap) on seeded joints, some off the
    heatmap, on its border or invisible (tools/mmpose_heatmap_reference.py)."""
    from pathlib import Path

    ref = np.load(Path(__file__).parent / "fixtures" / "reference" / "mmpose_heatmaps.npz")
    for case in range(int(ref["num_cases"])):
        args = (ref[f"case{case}_keypoints"], ref[f"case{case}_visible"] > 0, tuple(ref[f"case{case}_input"]),
                tuple(ref[f"case{case}_heatmap"]), float(ref[f"case{case}_sigma"]))
        for name, encoder in (("msra", msra_heatmaps), ("udp", udp_heatmaps)):
            maps, weights = encoder(*args)
            np.testing.assert_allclose(maps, ref[f"case{case}_{name}"], atol=5e-6, err_msg=f"{name} {case}")
            np.testing.assert_array_equal(weights, ref[f"case{case}_{name}_weights"], err_msg=f"{name} {case}")


def test_crop_warp_equals_mmpose():
    """The training crop's affine map is mmpose 1.x's get_warp_matrix / get_udp_warp_matrix on seeded
    centres, scales, rotations and output sizes (tools/mmpose_heatmap_reference.py). mmpose solves
    cv2.getAffineTransform on float32 points: translations agree to about 1e-5 px."""
    from pathlib import Path

    ref = np.load(Path(__file__).parent / "fixtures" / "reference" / "mmpose_heatmaps.npz")
    for row, plain, udp in zip(ref["warp_params"], ref["warp"], ref["warp_udp"]):
        center, scale, rotation, out_hw = row[:2], row[2:4], float(row[4]), (int(row[5]), int(row[6]))
        np.testing.assert_allclose(affine_matrix(center, scale, rotation, out_hw), plain, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(affine_matrix(center, scale, rotation, out_hw, udp=True), udp, rtol=1e-5, atol=1e-4)
