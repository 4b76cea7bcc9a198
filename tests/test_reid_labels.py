"""Human-parsing labels: keypoint labeller, PifPaf field grouping, label files, `reid-labels`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kprtrack.cli import main as cli_main
from kprtrack.errors import InputError
from kprtrack.reid import labels as L
from kprtrack.reid.train.data import read_market_folder

SOCCER = Path("/work/shared/data/media/kpr_soccer_players")


def _soccer_records():
    if not SOCCER.is_dir():
        pytest.skip("shared soccer crops not available")
    return read_market_folder(SOCCER / "group1") + read_market_folder(SOCCER / "group2")


def test_keypoint_labeller_puts_parts_on_their_skeleton_regions():
    import cv2

    names = L.PART_SCHEMES["eight"]
    checked = 0
    for record in _soccer_records():
        h, w = cv2.imread(str(record["image"])).shape[:2]
        kps = record["keypoints"]
        labels = L.keypoint_part_labels(kps, h, w)
        assert labels.shape == (h, w) and labels.dtype == np.uint8 and labels.max() <= 8
        assert (labels == 0).mean() > 0.3  # background stays background
        for part, joint in (("head", 0), ("torso", None), ("left_feet", 15), ("right_feet", 16)):
            value = names.index(part) + 1
            if joint is None:  # torso centre
                if np.all(kps[[5, 6, 11, 12], 2] > 0.3):
                    x, y = kps[[5, 6, 11, 12], :2].mean(axis=0)
                    assert labels[int(y), int(x)] == value
                    checked += 1
                continue
            x, y, c = kps[joint]
            if c > 0.3 and 0 <= x < w and 0 <= y < h:
                window = labels[max(0, int(y) - 3):int(y) + 4, max(0, int(x) - 3):int(x) + 4]
                assert (window == value).any(), (record["image"].name, part)
                checked += 1
    assert checked >= 8


def test_labeller_ignores_low_confidence_and_five_v():
    kps = np.zeros((17, 3), np.float32)
    kps[15] = (10, 50, 0.2)
    assert L.keypoint_part_labels(kps, 64, 32).max() == 0
    kps[15, 2] = 0.9
    kps[16] = (20, 50, 0.9)
    five = L.keypoint_part_labels(kps, 64, 32, scheme="five_v")
    assert set(np.unique(five)) == {0, 5}  # feet
    with pytest.raises(InputError):
        L.keypoint_part_labels(kps, 64, 32, scheme="nine")


def test_pifpaf_field_grouping_and_label_files(tmp_path):
    fields = np.zeros((36, 8, 4), np.float32)
    fields[L.PIFPAF_FIELDS.index("nose"), 0:2] = 0.9  # head
    fields[L.PIFPAF_FIELDS.index("left_hip_to_right_hip"), 3:4] = 0.8  # torso and left_leg in "eight"
    fields[L.PIFPAF_FIELDS.index("right_ankle"), 7] = 0.7  # right_feet
    grouped = L.group_pifpaf_fields(fields)
    assert grouped.shape == (9, 8, 4)
    np.testing.assert_allclose(grouped.sum(axis=0)[5], 1.0)  # background = 1 - parts where empty
    labels = L.labels_from_fields(fields)
    assert np.all(labels[0:2] == 1) and np.all(labels[7] == 8) and np.all(labels[5] == 0)
    assert np.all(np.isin(labels[3], (4, 5)))
    # channels-last and file reading, resized to the crop
    np.save(tmp_path / "f.npy", np.moveaxis(fields, 0, -1))
    read = L.read_label_file(tmp_path / "f.npy", size=(16, 8))
    assert read.shape == (16, 8) and read[0, 0] == 1 and read[15, 0] == 8
    np.save(tmp_path / "l.npy", labels)
    np.testing.assert_array_equal(L.read_label_file(tmp_path / "l.npy"), labels)
    np.save(tmp_path / "bad.npy", np.zeros((5, 4, 4), np.float32))
    with pytest.raises(InputError):
        L.read_label_file(tmp_path / "bad.npy")


def test_sam_pifpaf_needs_its_packages():
    if L.sam_pifpaf_available():
        pytest.skip("segment-anything and openpifpaf are installed")
    with pytest.raises(InputError, match="segment-anything.*openpifpaf"):
        L.sam_pifpaf_labeller()


@pytest.mark.slow
def test_reid_labels_command_end_to_end(tmp_path, capsys):
    from test_reid_dataset import build_fixture_dataset

    from kprtrack.reid.train.data import ReidTrainSet

    out = build_fixture_dataset(tmp_path)
    assert cli_main(["reid-labels", f"dataset_dir={out}"]) == 0
    assert "labels" in capsys.readouterr().out
    meta = json.loads((out / "labels/labels.json").read_text())
    assert meta["scheme"] == "eight" and meta["parts"][0] == "head"
    records = json.loads((out / "splits/gallery.json").read_text())
    for record in records:
        labels = np.load(out / "labels" / Path(record["file"]).with_suffix(".npy"))
        assert labels.dtype == np.uint8 and labels.shape == (record["height"], record["width"])
    assert sum(meta["crops"].values()) == len(records) + len(json.loads((out / "splits/query.json").read_text()))
    ds = ReidTrainSet(out, split="gallery", keypoint_labels=False)
    assert all(r.label_file is not None for r in ds.records) and ds[0]["labels"] is not None
    assert cli_main(["reid-labels", f"dataset_dir={out}", "method=sam_pifpaf"]) == 2 or L.sam_pifpaf_available()
    assert cli_main(["reid-labels", f"dataset_dir={tmp_path / 'nowhere'}"]) == 2
