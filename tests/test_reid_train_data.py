"""KPR training data: PK sampler, augmentation (random crop, random erasing, BIPO), both layouts."""
from __future__ import annotations

import numpy as np
import pytest

from kprtrack.reid.train import augment
from kprtrack.reid.train.data import PKSampler, ReidTrainSet, make_batch

SOCCER = "/work/shared/data/media/kpr_soccer_players"


def _view(h=64, w=32, value=1.0):
    kps = np.zeros((17, 3), np.float32)
    kps[0] = (16, 8, 1.0)
    kps[11] = (12, 40, 1.0)
    kps[15] = (10, 60, 0.9)
    labels = np.zeros((h, w), np.uint8)
    labels[30:50, 8:24] = 4
    image = np.full((h, w, 3), value, np.float32)
    image[..., 0] = np.arange(w)[None, :]
    image[..., 1] = np.arange(h)[:, None]
    return {"image": image, "keypoints": kps, "negatives": np.zeros((0, 17, 3), np.float32), "labels": labels}


# ---------------------------------------------------------------- PK sampler

def test_pk_sampler_batches_every_id_once_and_deterministic():
    labels = [i for i in range(10) for _ in range(3 + i % 4)] + [10]  # id 10 has a single image
    sampler = PKSampler(labels, p=4, k=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    seen = []
    for batch in batches:
        assert len(batch) == 16
        ids = [labels[i] for i in batch]
        groups = [ids[j:j + 4] for j in range(0, 16, 4)]
        assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == 4
        seen += [g[0] for g in groups]
    assert set(seen) == set(range(11))  # every identity once (the last batch is filled with others)
    assert batches == list(PKSampler(labels, p=4, k=4, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(0)
    assert list(sampler) == batches
    # identities with >= K images: without replacement
    for batch in batches:
        for j in range(0, 16, 4):
            chunk = batch[j:j + 4]
            if labels.count(labels[chunk[0]]) >= 4:
                assert len(set(chunk)) == 4


def test_pk_sampler_ddp_ranks_disjoint_and_union_is_the_global_batch():
    labels = [i for i in range(12) for _ in range(5)]
    single = list(PKSampler(labels, p=4, k=4, seed=1))
    ranks = [list(PKSampler(labels, p=4, k=4, seed=1, rank=r, world_size=2)) for r in range(2)]
    for b, (r0, r1) in enumerate(zip(*ranks)):
        assert len(r0) == len(r1) == 8
        assert not set(r0) & set(r1)
        assert r0 + r1 == single[b]
    with pytest.raises(ValueError):
        PKSampler(labels, p=4, k=3, world_size=5)
    with pytest.raises(ValueError):
        PKSampler(labels, p=20, k=4)


# ---------------------------------------------------------------- augmentation

def test_random_crop_moves_keypoints_and_labels_with_pixels():
    view = _view()
    for seed in range(5):
        out = augment.random_crop(view, np.random.default_rng(seed), padding=10)
        dx, dy = out["crop_offset"]
        assert out["image"].shape == view["image"].shape
        # a pixel of the original at (x, y) is now at (x + dx, y + dy)
        x, y = 16, 32
        if 0 <= x + dx < 32 and 0 <= y + dy < 64:
            assert out["image"][y + dy, x + dx, 0] == x and out["image"][y + dy, x + dx, 1] == y
        ys, xs = np.nonzero(out["labels"] == 4)
        assert ys.min() == max(0, 30 + dy) and xs.min() == max(0, 8 + dx)
        np.testing.assert_allclose(out["keypoints"][11, :2], view["keypoints"][11, :2] + (dx, dy))
        if 8 + dy < 0:  # the nose left the crop: no longer a keypoint
            assert out["keypoints"][0, 2] == 0
        assert out["keypoints"][1, 2] == 0  # absent stays absent
    offsets = {augment.random_crop(view, np.random.default_rng(s))["crop_offset"] for s in range(20)}
    assert len(offsets) > 5


def test_random_erasing_probability():
    view = _view()
    assert all(augment.random_erasing(view, np.random.default_rng(s), p=1.0)["erased"] for s in range(20))
    assert not any(augment.random_erasing(view, np.random.default_rng(s), p=0.0)["erased"] for s in range(20))
    rng = np.random.default_rng(0)
    hits = sum(augment.random_erasing(view, rng, p=0.5)["erased"] is not None for _ in range(400))
    assert 150 < hits < 250
    out = augment.random_erasing(view, np.random.default_rng(1), p=1.0)
    x, y, w, h = out["erased"]
    assert np.all(out["image"][y:y + h, x:x + w] == 0) and 0.02 * 64 * 32 * 0.8 <= w * h <= 0.4 * 64 * 32 * 1.2
    np.testing.assert_array_equal(out["keypoints"], view["keypoints"])
    np.testing.assert_array_equal(out["labels"], view["labels"])


def _occluder():
    occ = _view(value=-5.0)
    occ["image"][..., :2] = -5.0
    occ["keypoints"][:, :2] += 0.0
    occ["labels"][:] = 0
    occ["labels"][:, :] = 4  # the whole crop is the occluder's body
    return occ


def test_bipo_pastes_the_other_person_and_adds_negatives():
    view, occ = _view(), _occluder()
    acted = 0
    for seed in range(10):
        out = augment.bipo(view, occ, np.random.default_rng(seed), p=1.0)
        pasted = out["bipo"]
        assert pasted is not None and pasted.any()
        acted += 1
        assert np.all(out["image"][pasted] == -5.0)  # pixels from the occluder crop
        assert np.all(out["image"][~pasted] == view["image"][~pasted])
        assert np.all(out["labels"][pasted] == 0)  # the occluder is not the target
        assert np.all(out["labels"][~pasted] == view["labels"][~pasted])
        dx, dy = out["bipo_shift"]
        assert 0.55 * 64 - 1 <= dy + 32 <= 0.75 * 64 + 1
        negatives = out["negatives"]
        assert len(negatives) == 1
        moved = occ["keypoints"][:, :2] + (dx, dy)
        inside = (moved[:, 0] >= 0) & (moved[:, 0] <= 31) & (moved[:, 1] >= 0) & (moved[:, 1] <= 63)
        keep = (occ["keypoints"][:, 2] > 0) & inside
        np.testing.assert_allclose(negatives[0][keep, :2], moved[keep])
        for j in range(17):  # own keypoints under the occluder lose their confidence
            x, y, c = view["keypoints"][j]
            if c > 0 and pasted[int(round(y)), int(round(x))]:
                assert out["keypoints"][j, 2] == 0
    assert acted == 10
    for seed in range(10):
        out = augment.bipo(view, occ, np.random.default_rng(seed), p=0.0)
        assert out["bipo"] is None
        for key in ("image", "keypoints", "labels"):
            np.testing.assert_array_equal(out[key], view[key])
        assert len(out["negatives"]) == 0


def test_horizontal_flip_swaps_sides():
    view = _view()
    view["keypoints"][5] = (5, 20, 1.0)  # left shoulder
    view["labels"][:] = 0
    view["labels"][0:5, 0:3] = 2  # left_arm on the image's left
    out = augment.horizontal_flip(view)
    assert out["keypoints"][6, 0] == 31 - 5 and out["keypoints"][5, 2] == 0
    assert np.all(out["labels"][0:5, 29:32] == 3)


# ---------------------------------------------------------------- layouts and batches

@pytest.mark.slow
def test_soccer_folder_layout_and_batch():
    ds = ReidTrainSet(f"{SOCCER}/group1")
    assert ds.layout == "market" and len(ds) == 3 and ds.identities == ["1470", "1475", "1479"]
    first = ds[0]
    assert first["image"].ndim == 3 and first["keypoints"].shape == (17, 3)
    assert first["negatives"].shape == (2, 17, 3)  # 1470_..._051.json holds 3 people, one target
    assert first["labels"].shape == first["image"].shape[:2] and first["labels"].max() > 0
    batch = make_batch([ds[i] for i in range(3)], {"height": 128, "width": 64, "bipo_p": 1.0},
                       np.random.default_rng(0))
    assert batch["images"].shape == (3, 3, 128, 64) and batch["prompts"].shape == (3, 10, 128, 64)
    assert batch["part_labels"].shape == (3, 128, 64) and batch["part_labels"].dtype.is_floating_point is False
    assert batch["pids"].tolist() == [0, 1, 2] and bool(batch["bipo"].all())
    assert all(len(n) >= len(ds[i]["negatives"]) for i, n in enumerate(batch["negatives"]))
    off = make_batch([ds[0]], {"prompts": False, "train": False})
    assert off["prompts"] is None and not bool(off["bipo"].any())


@pytest.mark.slow
def test_reid_dataset_layout(tmp_path):
    from test_reid_dataset import build_fixture_dataset

    out = build_fixture_dataset(tmp_path)
    ds = ReidTrainSet(out, split="gallery")
    assert ds.layout == "reid-dataset" and ds.num_classes >= 2
    assert sorted(set(ds.labels)) == list(range(ds.num_classes))
    item = ds[0]
    assert item["labels"] is not None and item["image"].shape[:2] == item["labels"].shape
    sampler = PKSampler(ds.labels, p=2, k=4)
    batch = make_batch([ds[i] for i in next(iter(sampler))], {"height": 64, "width": 32}, np.random.default_rng(0))
    assert batch["images"].shape == (8, 3, 64, 32) and batch["pids"].shape == (8,)
