"""reid-labels method=sam_pifpaf: SAM + PifPaf glue, exercised with fake ``segment_anything`` and
``openpifpaf`` modules that implement the public API surface reid/labels.py calls."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from kprtrack.cli import main as cli_main
from kprtrack.errors import InputError
from kprtrack.reid import labels as L

HIP = L.PIFPAF_FIELDS.index("left_hip")  # a torso field in the "eight" scheme


# ------------------------------------------------------------------ fakes

class FakeSamPredictor:
    """SamPredictor: the "person" SAM finds is the box around the positive points, padded by 4 px."""

    calls: list[dict] = []

    def __init__(self, model):
        self.model = model
        self.image = None

    def set_image(self, image, image_format="RGB"):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.image = image

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True,
                return_logits=False):
        assert self.image is not None, "set_image before predict"
        FakeSamPredictor.calls.append({"coords": np.asarray(point_coords), "labels": np.asarray(point_labels),
                                       "multimask": multimask_output})
        h, w = self.image.shape[:2]
        pos = np.asarray(point_coords)[np.asarray(point_labels) == 1]
        x0, y0 = np.floor(pos.min(axis=0) - 4).astype(int)
        x1, y1 = np.ceil(pos.max(axis=0) + 4).astype(int)
        mask = np.zeros((h, w), bool)
        mask[max(0, y0):y1 + 1, max(0, x0):x1 + 1] = True
        n = 3 if multimask_output else 1
        masks = np.stack([np.zeros_like(mask)] * (n - 1) + [mask]) if n > 1 else mask[None]
        scores = np.arange(1, n + 1, dtype=np.float32) / n  # the real mask scores best
        return masks, scores, np.zeros((n, 256, 256), np.float32)


def fake_segment_anything(loaded: list) -> types.ModuleType:
    module = types.ModuleType("segment_anything")

    def builder(name):
        def build(checkpoint=None):
            loaded.append((name, checkpoint))
            return types.SimpleNamespace(name=name, to=lambda device: types.SimpleNamespace(name=name, device=device))
        return build

    module.sam_model_registry = {"default": builder("vit_h"), "vit_h": builder("vit_h"),
                                 "vit_l": builder("vit_l"), "vit_b": builder("vit_b")}
    module.SamPredictor = FakeSamPredictor
    return module


STRIDE = 8


class FakeProcessor:
    @staticmethod
    def fields_batch(model, image_batch, *, device=None):
        """Per image [cif [17, 5, h, w], caf [19, 9, h, w]]: confidence (channel 1) of left_hip = 1 and
        of the nose = 0.2 everywhere, on the stride-8 grid of the padded image."""
        out = []
        for image in image_batch:
            hp, wp = image.shape[-2:]
            h, w = (hp - 1) // STRIDE + 1, (wp - 1) // STRIDE + 1
            cif = np.zeros((17, 5, h, w), np.float32)
            cif[:, 0] = 7.0  # not the confidence channel
            cif[HIP, 1] = 1.0
            cif[0, 1] = 0.2
            caf = np.zeros((19, 9, h, w), np.float32)
            out.append([cif, caf])
        return out


class FakeNumpyImageList:
    def __init__(self, images, preprocess=None, with_raw_image=False):
        self.images, self.preprocess, self.with_raw_image = images, preprocess, with_raw_image

    def __getitem__(self, index):
        image = self.images[index]
        processed, meta = self.preprocess(image)
        return (image, processed, [], meta) if self.with_raw_image else (processed, [], meta)


class FakePifPafPredictor:
    created: list = []

    def __init__(self, checkpoint=None, head_metas=None, **kwargs):
        FakePifPafPredictor.created.append(checkpoint)
        self.model, self.device, self.processor = object(), "cpu", FakeProcessor()

    @staticmethod
    def preprocess(image):
        """CenterPadTight(16)-like: pad to 16 k + 1 at the bottom/right, valid_area = the image."""
        h, w = image.shape[:2]
        hp, wp = (h + 15) // 16 * 16 + 1, (w + 15) // 16 * 16 + 1
        processed = np.zeros((3, hp, wp), np.float32)
        processed[:, :h, :w] = np.moveaxis(image, -1, 0) / 255.0
        return processed, {"valid_area": np.array([0.0, 0.0, w, h])}


def fake_openpifpaf() -> types.ModuleType:
    module = types.ModuleType("openpifpaf")
    module.Predictor = FakePifPafPredictor
    module.datasets = types.SimpleNamespace(NumpyImageList=FakeNumpyImageList)
    return module


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    loaded: list = []
    monkeypatch.setitem(sys.modules, "segment_anything", fake_segment_anything(loaded))
    monkeypatch.setitem(sys.modules, "openpifpaf", fake_openpifpaf())
    monkeypatch.setenv("KPRTRACK_HOME", str(tmp_path / "home"))
    FakeSamPredictor.calls = []
    FakePifPafPredictor.created = []
    # the official checkpoint name resolves through SAM_WEIGHTS to the cache; never downloaded here
    cached = tmp_path / "home" / "weights" / L.SAM_WEIGHTS["vit_h"].file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"fake")
    return loaded


def _person(x0, y0, x1, y1, conf=0.9):
    """Keypoints [17, 3] spread over the box (x0, y0)-(x1, y1)."""
    kps = np.zeros((17, 3), np.float32)
    ys = np.linspace(y0, y1, 17)
    kps[:, 0] = np.where(np.arange(17) % 2, x0, x1)
    kps[:, 1] = ys
    kps[:, 2] = conf
    return kps


# ------------------------------------------------------------------ units

def test_prompt_points_positive_above_threshold_and_negatives_zero():
    kps = _person(10, 10, 30, 60)
    kps[3, 2] = 0.1  # below threshold
    kps[4] = (500, 20, 0.9)  # outside the image
    others = _person(40, 5, 60, 60)[None]
    others[0, :5, 2] = 0.0
    coords, labels = L.sam_prompt(kps, others, threshold=0.3, size=(64, 64))
    assert coords.dtype == np.float32 and labels.dtype == np.int32
    assert (labels == 1).sum() == 15 and (labels == 0).sum() == 12
    assert labels.tolist() == [1] * 15 + [0] * 12  # positives first
    np.testing.assert_array_equal(coords[:15], np.delete(kps, [3, 4], axis=0)[:, :2])
    np.testing.assert_array_equal(coords[15:], others[0, 5:, :2])
    coords, labels = L.sam_prompt(kps, None, size=(64, 64))
    assert labels.tolist() == [1] * 15


def test_sam_target_mask_passes_prompts_and_keeps_best(fakes):
    image = np.zeros((64, 48, 3), np.uint8)
    predictor = FakeSamPredictor(None)
    kps = _person(10, 10, 20, 50)
    negatives = _person(30, 10, 40, 50)[None]
    mask = L.sam_target_mask(predictor, image, kps, negatives, multimask=True)
    assert mask.dtype == bool and mask.shape == (64, 48)
    assert mask[30, 15] and not mask[30, 35]  # best-scoring of the 3 masks (the others are empty)
    call = FakeSamPredictor.calls[-1]
    assert call["multimask"] is True
    assert call["labels"].tolist() == [1] * 17 + [0] * 17
    np.testing.assert_array_equal(call["coords"][:17], kps[:, :2])
    none = np.zeros((17, 3), np.float32)
    assert L.sam_target_mask(predictor, image, none) is None  # nothing to prompt with
    assert len(FakeSamPredictor.calls) == 1


def test_masked_fields_remove_other_people_keep_target():
    fields = np.zeros((36, 16, 12), np.float32)
    fields[HIP, 2:14, 1:5] = 0.9   # target (left)
    fields[HIP, 2:14, 7:11] = 0.8  # someone else (right)
    fields[0, 1, 2] = 0.7
    mask = np.zeros((128, 96), bool)
    mask[:, :48] = True  # the target's half, at image resolution
    out = L.masked_fields(fields, mask)
    assert out.shape == fields.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, :6], fields[:, :, :6])  # target kept
    assert not out[:, :, 6:].any()  # other person removed
    labels = L.labels_from_fields(out)
    torso = L.PART_SCHEMES["eight"].index("torso") + 1
    assert (labels[2:14, 1:5] == torso).all() and (labels[:, 6:] == 0).all()
    np.testing.assert_array_equal(L.masked_fields(fields, None), fields)


def test_pifpaf_fields_confidence_channel_and_valid_area(fakes):
    import openpifpaf

    predictor = openpifpaf.Predictor(checkpoint="shufflenetv2k16")
    fields = L.pifpaf_fields(predictor, np.zeros((100, 40, 3), np.uint8))
    # padded 113 x 49 -> grid 15 x 7; valid 100 x 40 -> 13 x 5 cells
    assert fields.shape == (36, 13, 5) and fields.dtype == np.float32
    assert np.all(fields[HIP] == 1.0) and np.all(fields[0] == np.float32(0.2))  # channel 1, not 0
    assert fields.sum() == pytest.approx(fields[HIP].sum() + fields[0].sum())


def test_labeller_is_lazy_and_resolves_registry_weights(fakes, tmp_path):
    labeller = L.sam_pifpaf_labeller("eight", negatives=True)
    assert fakes == [] and FakePifPafPredictor.created == []  # nothing loaded yet
    image = np.zeros((64, 32, 3), np.uint8)
    kps, others = _person(4, 4, 14, 60), _person(20, 4, 28, 60)[None]
    fields = labeller(image, kps, others)
    assert fakes == [("vit_h", str(tmp_path / "home" / "weights" / "sam_vit_h_4b8939.pth"))]
    assert FakePifPafPredictor.created == ["shufflenetv2k16"]
    assert FakeSamPredictor.calls[-1]["labels"].tolist() == [1] * 17 + [0] * 17
    assert fields.shape == (36, 8, 4)
    labels = L.labels_from_fields(fields, size=(64, 32))
    assert labels[30, 8] == 4 and labels[30, 26] == 0  # target torso kept, neighbour removed
    labeller(image, kps, others)
    assert len(fakes) == 1 and len(FakePifPafPredictor.created) == 1  # loaded once
    with pytest.raises(InputError, match="unknown SAM model"):
        L.SamPifPafLabeller(sam_model="vit_x", sam_weights=str(tmp_path / "home/weights/sam_vit_h_4b8939.pth")).sam
    with pytest.raises(InputError, match="not in the cache"):
        L.SamPifPafLabeller(sam_model="vit_b", download=False).sam


def test_missing_packages_one_line_error(monkeypatch):
    import importlib.util

    monkeypatch.delitem(sys.modules, "segment_anything", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(InputError) as err:
        L.sam_pifpaf_labeller()
    message = str(err.value)
    assert "segment-anything" in message and "openpifpaf" in message and "kprtrack[labels]" in message
    assert "torchvision" in message and "\n" not in message


# ------------------------------------------------------------------ command end to end

@pytest.mark.slow
def test_reid_labels_sam_pifpaf_command_writes_fields_read_back_as_parts(fakes, tmp_path, capsys):
    from test_reid_dataset import build_fixture_dataset

    from kprtrack.reid.train.data import ReidTrainSet

    out = build_fixture_dataset(tmp_path)
    assert cli_main(["reid-labels", f"dataset_dir={out}", "method=sam_pifpaf", "sam_pifpaf.negatives=true"]) == 0
    assert "sam_pifpaf labels" in capsys.readouterr().out
    meta = json.loads((out / "labels/labels.json").read_text())
    assert meta["method"] == "sam_pifpaf" and meta["sam_model"] == "vit_h" and meta["negatives"] is True
    assert meta["pifpaf_checkpoint"] == "shufflenetv2k16" and "36" in meta["format"]
    assert len(fakes) == 1 and len(FakePifPafPredictor.created) == 1
    torso = L.PART_SCHEMES["eight"].index("torso") + 1
    records = json.loads((out / "splits/gallery.json").read_text())
    assert records and len(FakeSamPredictor.calls) >= len(records)
    for record in records:
        fields = np.load(out / "labels" / Path(record["file"]).with_suffix(".npy"))
        assert fields.dtype == np.float32 and fields.ndim == 3 and fields.shape[0] == 36
        labels = L.read_label_file(out / "labels" / Path(record["file"]).with_suffix(".npy"),
                                   (record["height"], record["width"]))
        assert labels.shape == (record["height"], record["width"])
        assert set(np.unique(labels)) <= {0, torso}
        kps = np.asarray(record["keypoints"], np.float32).reshape(17, 3)
        good = kps[:, 2] > 0.3
        if good.sum() >= 2:
            assert (labels == torso).any()
    ds = ReidTrainSet(out, split="gallery", keypoint_labels=False)
    assert all(r.label_file is not None for r in ds.records)
    sample = ds[0]
    assert sample["labels"] is not None and set(np.unique(sample["labels"])) <= {0, torso}
