"""reid=onnx on a real OpenVINO person-ReID model and real player crops."""

import cv2
import numpy as np
import pytest

from conftest import shared_file
from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from kprtrack.reid.onnx_reid import OnnxReID

MODEL = "models/person-reidentification-retail-0287.onnx"


@pytest.fixture(scope="module")
def reid():
    return OnnxReID(str(shared_file(MODEL)))


def _group(name):
    folder = shared_file(f"data/media/kpr_soccer_players/{name}/images")
    paths = sorted(folder.glob("*.jpg"))
    return [p.name.split("_")[0] for p in paths], [cv2.imread(str(p)) for p in paths]


def test_reads_layout_and_size_from_model(reid):
    assert (reid.layout, reid.height, reid.width) == ("NHWC", 256, 128)


def test_same_identity_ranks_first_on_real_crops(reid):
    ids_a, crops_a = _group("group1")
    ids_b, crops_b = _group("group2")
    assert len(crops_a) == 3 and sorted(ids_a) == sorted(ids_b)
    emb_a, vis_a = reid.embed_crops(crops_a)
    emb_b, _ = reid.embed_crops(crops_b)
    assert emb_a.shape == (3, 1, 256) and emb_a.dtype == np.float32 and np.all(vis_a == 1)
    a = emb_a[:, 0] / np.linalg.norm(emb_a[:, 0], axis=1, keepdims=True)
    b = emb_b[:, 0] / np.linalg.norm(emb_b[:, 0], axis=1, keepdims=True)
    best = (a @ b.T).argmax(axis=1)
    assert [ids_b[j] for j in best] == ids_a  # rank-1 3/3


def test_embed_on_a_frame_matches_crops_and_handles_outside_boxes(reid):
    _, crops = _group("group1")
    crop = crops[0]
    h, w = crop.shape[:2]
    frame = np.zeros((h + 40, w + 400, 3), np.uint8)
    frame[20:20 + h, 30:30 + w] = crop
    dets = Detections(np.array([[30, 20, 30 + w, 20 + h], [-50, -50, -10, -10]], np.float32), np.ones(2))
    out = reid.embed(Frame("s", 0, frame), dets)
    assert out.embeddings.shape == (2, 1, 256) and out.visibility.tolist() == [[1.0], [0.0]]
    np.testing.assert_allclose(out.embeddings[0], reid.embed_crops([crop])[0][0], atol=1e-4)


def test_bad_model_paths(tmp_path):
    with pytest.raises(InputError, match="ONNX ReID model not found"):
        OnnxReID(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="cannot load ONNX model"):
        OnnxReID(str(junk))


def test_configured_size_conflicting_with_model_is_an_error():
    with pytest.raises(InputError, match="reid.height=384 but the model's input is fixed at 256"):
        OnnxReID(str(shared_file(MODEL)), height=384)


def test_zero_size_crop_is_rejected(reid):
    with pytest.raises(InputError, match="crop 0: expected a non-empty"):
        reid.embed_crops([np.zeros((0, 10, 3), np.uint8)])
