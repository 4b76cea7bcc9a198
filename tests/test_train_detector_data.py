"""train-detector's training data (PoseTrack boxes, ignore regions) and YOLOX augmentation."""
from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest

from kprtrack.data.demo import generate_demo
from kprtrack.errors import InputError
from kprtrack.train.detector.augment import (
    AugmentConfig, DetectionCollate, hflip, mixup, mosaic, preproc, random_affine,
)
from kprtrack.train.detector.data import (
    DetectionItem, centres_in_regions, load_detection_items, paint_ignore, read_item,
)
from tests.conftest import shared_file

WHITE = 200  # brighter than anything but the drawn boxes (pad is 114, background 0)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo"), num_sequences=1, num_frames=30, width=320, height=192)


def _write_root(root, frames, name="000001_test", sizes_in_json=False):
    """A PoseTrack21-layout root with one sequence; frames: dicts with image, boxes (xywh),
    ignore (list of [M, 2]), labeled."""
    images, annotations = [], []
    for i, frame in enumerate(frames):
        file_name = f"images/train/{name}/{i:06d}.png"
        (root / file_name).parent.mkdir(parents=True, exist_ok=True)
        if frame.get("image") is not None:
            cv2.imwrite(str(root / file_name), frame["image"])
        entry = {"id": 1000 + i, "file_name": file_name, "is_labeled": frame.get("labeled", True),
                 "ignore_regions_x": [[float(x) for x in p[:, 0]] for p in frame.get("ignore", [])],
                 "ignore_regions_y": [[float(y) for y in p[:, 1]] for p in frame.get("ignore", [])]}
        if sizes_in_json:
            entry["height"], entry["width"] = frame["image"].shape[:2]
        images.append(entry)
        for j, box in enumerate(frame.get("boxes", [])):
            annotations.append({"image_id": 1000 + i, "keypoints": [], "bbox": list(map(float, box)),
                                "track_id": j})
        annotations.append({"image_id": 1000 + i, "keypoints": [], "bbox": None, "track_id": 99})  # no box
    folder = root / "posetrack_data" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return folder / f"{name}.json"


def _white_boxes_image(height, width, boxes_xyxy):
    image = np.zeros((height, width, 3), np.uint8)
    for x1, y1, x2, y2 in boxes_xyxy:
        image[y1:y2, x1:x2] = 255
    return image


def _item(tmp_path, image, boxes_xyxy, name="x"):
    path = tmp_path / f"{name}.png"
    cv2.imwrite(str(path), image)
    return DetectionItem(image_path=str(path), boxes=np.asarray(boxes_xyxy, np.float32).reshape(-1, 4),
                         ignore=[], width=image.shape[1], height=image.shape[0], image_id=name, sequence="s")


def _white_bbox(image):
    ys, xs = np.nonzero(image.max(axis=2) > WHITE)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _targets_xyxy(batch, i):
    rows = batch["targets"][i, :int(batch["num_boxes"][i])].numpy()
    return np.concatenate([rows[:, 1:3] - rows[:, 3:5] / 2, rows[:, 1:3] + rows[:, 3:5] / 2], axis=1)


# --- loading -----------------------------------------------------------------------------------


def test_posetrack18_real_frames_load_with_boxes_and_ignore_regions():
    root = shared_file("data/posetrack18/annotations/val").parent.parent
    items = load_detection_items(root, split="val", annotations_dir="annotations")
    assert [it.sequence for it in items] == ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"]
    for it in items:
        assert (it.width, it.height) == (1920, 1080)
        assert it.boxes.dtype == np.float32 and it.boxes.shape[1] == 4 and len(it.boxes)
        assert (it.boxes[:, 2:] > it.boxes[:, :2]).all()
        assert (it.boxes[:, 0::2] <= it.width).all() and (it.boxes[:, 1::2] <= it.height).all()
        assert it.ignore and all(p.shape[1] == 2 and p.dtype == np.float32 for p in it.ignore)
        assert not centres_in_regions(it.boxes, it.ignore).any()
    image, boxes = read_item(items[2])
    assert image.shape == (1080, 1920, 3) and image.dtype == np.uint8
    assert np.array_equal(boxes, items[2].boxes) and boxes is not items[2].boxes
    assert pickle.loads(pickle.dumps(items))[2].image_path == items[2].image_path


def test_demo_boxes_are_xyxy_and_unlabelled_frames_are_skipped(demo_root):
    labelled = load_detection_items(demo_root, split="val")
    every = load_detection_items(demo_root, split="val", labeled_only=False)
    data = json.loads(next((demo_root / "posetrack_data" / "val").glob("*.json")).read_text())
    assert len(every) == len(data["images"]) > len(labelled) == sum(im["is_labeled"] for im in data["images"])
    first = labelled[0]
    x, y, w, h = next(a["bbox"] for a in data["annotations"] if a["image_id"] == first.image_id)
    assert np.allclose(first.boxes[0], [x, y, x + w, y + h])
    assert (first.width, first.height) == (320, 192)
    only = load_detection_items(demo_root, split="val", sequences=[first.sequence])
    assert len(only) == len(labelled)
    with pytest.raises(InputError, match="unknown sequence"):
        load_detection_items(demo_root, split="val", sequences=["nope"])


def test_ignore_regions_drop_people_inside_and_are_painted_gray(tmp_path):
    image = np.full((60, 80, 3), 30, np.uint8)
    region = np.array([[40, 0], [80, 0], [80, 60], [40, 60]], np.float32)  # right half
    _write_root(tmp_path, [{"image": image, "boxes": [[5, 10, 20, 30], [50, 10, 20, 30], [30, 5, 1, 40]],
                            "ignore": [region]}])
    [item] = load_detection_items(tmp_path)  # sizes come from the PNG header (not in the JSON)
    assert (item.width, item.height) == (80, 60)
    assert np.allclose(item.boxes, [[5, 10, 25, 40]])  # centre in the region, and 1 px wide: dropped
    painted, _ = read_item(item)
    assert (painted[:, 41:] == 114).all() and (painted[:, :39] == 30).all()
    assert (image == 30).all() and paint_ignore(image, []) is image  # input untouched


def test_bad_inputs_are_input_errors_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="annotation folder not found"):
        load_detection_items(tmp_path)
    json_path = _write_root(tmp_path, [{"image": None, "boxes": [[0, 0, 5, 5]]}], sizes_in_json=False)
    with pytest.raises(InputError) as err:
        load_detection_items(tmp_path)
    assert str(tmp_path / "images/train/000001_test/000000.png") in str(err.value)
    assert str(json_path) in str(err.value)
    json_path.write_text("{not json")
    with pytest.raises(InputError, match="malformed") as err:
        load_detection_items(tmp_path)
    assert str(json_path) in str(err.value)
    _write_root(tmp_path, [{"image": np.zeros((8, 8, 3), np.uint8), "labeled": False}])
    with pytest.raises(InputError, match="no labelled images"):
        load_detection_items(tmp_path)
    with pytest.raises(InputError, match="mosaic_scale"):
        AugmentConfig(mosaic_scale=(0.0, 1.0))
    with pytest.raises(InputError, match="mixup_scale"):
        AugmentConfig(mixup_scale=[1.0])
    with pytest.raises(InputError, match="input_size"):
        DetectionCollate([], (100, 64), seed=0, mosaic=False)


# --- geometry ----------------------------------------------------------------------------------


def test_flip_moves_boxes_with_pixels():
    image = _white_boxes_image(40, 64, [(5, 8, 20, 30)])
    flipped, boxes = hflip(image, np.array([[5, 8, 20, 30]], np.float32))
    assert np.array_equal(boxes[0], _white_bbox(flipped)) and np.array_equal(boxes[0], [44, 8, 59, 30])


@pytest.mark.parametrize("seed", range(6))
def test_random_affine_boxes_cover_the_warped_pixels(seed):
    image = _white_boxes_image(128, 128, [(30, 40, 70, 100)])
    config = AugmentConfig(mosaic_scale=(0.6, 1.0))  # keeps the box in frame: nothing to filter
    warped, boxes = random_affine(image, np.array([[30, 40, 70, 100]], np.float32),
                                  np.random.default_rng(seed), (64, 96), config)
    assert warped.shape == (64, 96, 3) and len(boxes) == 1
    assert np.abs(boxes[0] - _white_bbox(warped)).max() <= 2.0


def test_random_affine_drops_boxes_pushed_out_of_frame():
    image = _white_boxes_image(128, 128, [(0, 0, 6, 6)])
    config = AugmentConfig(mosaic_scale=(1.0, 1.0), degrees=0.0, shear=0.0, translate=0.0)
    # centred, scale 1 into a 64x64 output: the corner box lands outside and is dropped
    _, boxes = random_affine(image, np.array([[0, 0, 6, 6]], np.float32), np.random.default_rng(0), (64, 64), config)
    assert len(boxes) == 0


def test_mosaic_places_four_tiles_on_a_double_canvas():
    rng = np.random.default_rng(3)
    tiles = [(_white_boxes_image(48, 64, [(10, 10, 30, 40)]), np.array([[10, 10, 30, 40]], np.float32))
             for _ in range(4)]
    canvas, boxes = mosaic(tiles, rng, (64, 96))
    assert canvas.shape == (128, 192, 3) and len(boxes) == 4
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 192).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 128).all()
    for box in boxes.round().astype(int):
        patch = canvas[box[1]:box[3], box[0]:box[2]]
        assert patch.size and (patch > WHITE).mean() > 0.9


@pytest.mark.parametrize("seed", range(4))
def test_mixup_blends_and_keeps_both_images_boxes(seed):
    base = _white_boxes_image(64, 64, [(4, 4, 20, 40)])
    other = _white_boxes_image(64, 64, [(30, 10, 60, 60)])
    config = AugmentConfig(mixup_scale=(1.0, 1.0))
    image, boxes = mixup(base, np.array([[4, 4, 20, 40]], np.float32), other,
                         np.array([[30, 10, 60, 60]], np.float32), np.random.default_rng(seed), config)
    assert len(boxes) == 2 and np.allclose(boxes[0], [4, 4, 20, 40])
    # same size and jitter 1: the other image lands as it is or mirrored, blended half and half
    placed = other if boxes[1, 0] == 30 else other[:, ::-1]
    assert np.allclose(boxes[1], _white_bbox(placed))
    assert np.array_equal(image, (0.5 * base + 0.5 * placed).astype(np.uint8))


def test_collate_batches_match_their_pixels(tmp_path):
    items = [_item(tmp_path, _white_boxes_image(96, 128, [(10, 20, 40, 80), (70, 10, 110, 60)]),
                   [(10, 20, 40, 80), (70, 10, 110, 60)], name=f"im{i}") for i in range(3)]
    config = AugmentConfig(mixup_prob=0.0, hsv_prob=0.0)
    batch = DetectionCollate(items, (96, 128), seed=5, mosaic=True, config=config)(items)
    assert batch["images"].shape == (3, 3, 96, 128) and batch["images"].dtype.is_floating_point
    assert batch["targets"].shape == (3, 120, 5) and str(batch["num_boxes"].dtype) == "torch.int64"
    assert batch["num_boxes"].min() > 0
    for i in range(3):
        image = batch["images"][i].numpy().transpose(1, 2, 0)
        boxes = _targets_xyxy(batch, i)
        assert (batch["targets"][i, int(batch["num_boxes"][i]):] == 0).all()
        assert (boxes >= -1e-3).all() and (boxes[:, 0::2] <= 128 + 1e-3).all() and (boxes[:, 1::2] <= 96 + 1e-3).all()
        for box in boxes.round().astype(int):  # a target is a (rotated, sheared) white box
            assert (image[box[1]:box[3], box[0]:box[2]] > WHITE).mean() > 0.5


def test_no_aug_phase_is_letterbox_with_flip(tmp_path):
    region = np.array([[0, 0], [8, 0], [8, 8]], np.float32)
    item = _item(tmp_path, _white_boxes_image(48, 80, [(10, 5, 30, 40)]), [(10, 5, 30, 40)])
    item.ignore = [region]
    for flip in (0.0, 1.0):
        config = AugmentConfig(hsv_prob=0.0, flip_prob=flip)
        batch = DetectionCollate([item], (64, 64), seed=0, mosaic=False, config=config)([item])
        image, boxes = read_item(item)
        if flip:
            image, boxes = hflip(image, boxes)
        expected, expected_boxes = preproc(image, boxes, (64, 64))
        assert np.array_equal(batch["images"][0].numpy(), expected)  # ignore region painted, pad 114
        assert np.allclose(_targets_xyxy(batch, 0), expected_boxes)
    assert expected[:, 40:].min() == 114  # 48x80 letterboxed into 64x64: bottom rows are padding


def test_same_seed_same_batches_other_seed_other_batches(tmp_path, demo_root):
    items = load_detection_items(demo_root, split="val")[:6]
    collate = DetectionCollate(items, (64, 96), seed=11, mosaic=True, config=AugmentConfig())
    first = collate(items[:2])
    again = pickle.loads(pickle.dumps(collate))(items[:2])
    other = DetectionCollate(items, (64, 96), seed=12, mosaic=True, config=AugmentConfig())(items[:2])
    for key in first:
        assert np.array_equal(first[key].numpy(), again[key].numpy())
    assert not np.array_equal(first["images"].numpy(), other["images"].numpy())
    assert first["num_boxes"].min() > 0


def test_images_without_people_and_the_label_cap(tmp_path):
    empty = _item(tmp_path, np.zeros((32, 32, 3), np.uint8), np.zeros((0, 4)), name="empty")
    crowd = _item(tmp_path, _white_boxes_image(32, 32, [(0, 0, 32, 32)]), [(i, i, 20 + i, 20 + i) for i in range(5)],
                  name="crowd")
    for mosaic_on in (True, False):
        config = AugmentConfig(max_labels=3)
        batch = DetectionCollate([empty], (32, 32), seed=0, mosaic=mosaic_on, config=config)([empty])
        assert int(batch["num_boxes"][0]) == 0 and not batch["targets"].any()
        config = AugmentConfig(max_labels=3, mosaic_prob=0.0)
        batch = DetectionCollate([crowd], (32, 32), seed=0, mosaic=mosaic_on, config=config)([crowd])
        assert batch["targets"].shape == (1, 3, 5) and int(batch["num_boxes"][0]) == 3


def test_multiscale_resizes_images_and_targets_together():
    import torch

    from kprtrack.train.detector.augment import AugmentConfig, DetectionCollate, rescale_batch

    image = torch.zeros(1, 3, 64, 128)
    image[..., 16:48, 32:64] = 255.0  # a white box: cx 48, cy 32, w 32, h 32
    targets = torch.zeros(1, 120, 5)
    targets[0, 0] = torch.tensor([0.0, 48.0, 32.0, 32.0, 32.0])
    out = rescale_batch({"images": image, "targets": targets, "num_boxes": torch.tensor([1])}, (96, 160))
    assert out["images"].shape == (1, 3, 96, 160)
    cls, cx, cy, w, h = out["targets"][0, 0].tolist()
    assert (cx, cy, w, h) == pytest.approx((60.0, 48.0, 40.0, 48.0))
    white = (out["images"][0, 0] > 127).nonzero()
    assert white[:, 1].min() >= cx - w / 2 - 1 and white[:, 1].max() <= cx + w / 2 + 1
    assert white[:, 0].min() >= cy - h / 2 - 1 and white[:, 0].max() <= cy + h / 2 + 1

    collate = DetectionCollate([], (320, 640), seed=0, mosaic=False, config=AugmentConfig(multiscale_range=5))
    sizes = {collate.random_size(np.random.default_rng(s)) for s in range(60)}
    assert all(h % 32 == 0 and w % 32 == 0 and 160 <= h <= 480 and w == 2 * h for h, w in sizes)
    assert len(sizes) > 5  # sizes really vary
