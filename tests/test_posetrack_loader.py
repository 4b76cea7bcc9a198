import json

import numpy as np
import pytest

from kprtrack.data.posetrack import PoseTrackDataset, load_sequence_json, polygons
from kprtrack.errors import InputError


def test_reads_real_posetrack18(shared):
    ds = PoseTrackDataset(shared / "data/posetrack18", split="val", annotations_dir="annotations")
    assert [f.stem for f in ds.files] == ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"]
    frames = {s.name: list(s.frames()) for s in ds.sequences()}
    big = frames["012834_mpii_test"][0]
    assert big.image.shape == (1080, 1920, 3) and big.width == 1920
    assert big.image_id == 10128340000 and big.is_labeled
    assert len(big.gt) == 11 and big.gt.keypoints.shape == (11, 17, 3)
    assert sorted(big.gt.track_ids.tolist()) == list(range(11))
    # bbox [x, y, w, h] -> x1 y1 x2 y2
    raw = json.loads((shared / "data/posetrack18/annotations/val/003418_mpii_test.json").read_text())
    x, y, w, h = raw["annotations"][0]["bbox"]
    np.testing.assert_allclose(frames["003418_mpii_test"][0].gt.boxes[0], [x, y, x + w, y + h], rtol=1e-6)
    assert len(frames["003418_mpii_test"][0].ignore_regions) == 9
    assert frames["003418_mpii_test"][0].ignore_regions[0].shape[1] == 2


def test_sequence_filter_and_unknown(shared):
    ds = PoseTrackDataset(shared / "data/posetrack18", annotations_dir="annotations",
                          sequences=["009473_mpii_test"])
    assert len(ds) == 1
    with pytest.raises(InputError, match="unknown sequence"):
        PoseTrackDataset(shared / "data/posetrack18", annotations_dir="annotations", sequences=["nope"])


def test_missing_root_and_folder(tmp_path):
    with pytest.raises(InputError, match="data root not found"):
        PoseTrackDataset(tmp_path / "absent")
    with pytest.raises(InputError, match="annotations_dir"):
        PoseTrackDataset(tmp_path)
    (tmp_path / "posetrack_data/val").mkdir(parents=True)
    with pytest.raises(InputError, match="no sequence .json"):
        PoseTrackDataset(tmp_path)


@pytest.mark.parametrize("text, message", [
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annot', "malformed or truncated JSON"),
    ('[1, 2]', "expected an object with an 'images' list"),
    ('{"images": [{"file_name": "a.jpg"}]}', r"images\[0\] lacks id"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "bbox": [0,0,1,1],'
     ' "keypoints": []}]}', "unknown image_id 2"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "bbox": [0,0,1,1],'
     ' "keypoints": [1, 2]}]}', "2 keypoint values"),
])
def test_malformed_json_names_file(tmp_path, text, message):
    path = tmp_path / "seq.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_sequence_json(path)
    assert str(path) in str(info.value)


def test_polygons_skip_degenerate():
    image = {"ignore_regions_x": [[0, 10, 10], [1, 2]], "ignore_regions_y": [[0, 0, 10], [1, 2]]}
    polys = polygons(image)
    assert len(polys) == 1 and polys[0].shape == (3, 2)
