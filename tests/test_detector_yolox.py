"""YOLOX PyTorch backend with random weights: shapes, batching, checkpoints and bad input."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore:detector.weights is null")

from kprtrack.detector import yolox_weights
from kprtrack.detector.yolox import YOLOXDetector
from kprtrack.detector.yolox_arch import MODEL_SIZES, YOLOX
from kprtrack.detector.yolox_weights import YOLOX_WEIGHTS, describe_state_dict, load_state_dict
from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from kprtrack.stages import Detector
from kprtrack.weights import WeightSpec, sha256_of
from numpy1_pickle import save_numpy1

# Key names as they appear in official checkpoints (Megvii-BaseDetection/YOLOX module names).
OFFICIAL_KEYS = [
    "backbone.backbone.stem.conv.conv.weight", "backbone.backbone.stem.conv.bn.running_var",
    "backbone.backbone.dark2.1.m.0.conv2.conv.weight", "backbone.backbone.dark5.1.conv2.conv.weight",
    "backbone.lateral_conv0.conv.weight", "backbone.C3_n4.conv3.bn.bias", "backbone.bu_conv1.conv.weight",
    "head.stems.2.conv.weight", "head.cls_convs.0.1.conv.weight", "head.reg_convs.1.0.bn.weight",
    "head.cls_preds.0.weight", "head.reg_preds.2.bias", "head.obj_preds.1.weight",
]


def fake_checkpoint(tmp_path, size: str, num_classes: int, name: str = "ckpt.pth", **extra):
    """An official-style checkpoint: {'model': state dict, ...} with non-trivial BN statistics."""
    torch.manual_seed(0)
    model = YOLOX(size, num_classes)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / name
    save_numpy1({"model": model.state_dict(), "start_epoch": 300, **extra}, path)  # as numpy 1.x pickled it
    return path, model


def frames(count=3, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(120, 200), (200, 90), (64, 64), (333, 500)]
    return [Frame("seq", i, rng.integers(0, 255, (*shapes[i % 4], 3), dtype=np.uint8)) for i in range(count)]


def test_official_key_names_and_parameter_counts():
    model = YOLOX("s", 80)
    keys = set(model.state_dict())
    assert set(OFFICIAL_KEYS) <= keys
    # parameter counts in millions from the YOLOX README: nano 0.91, tiny 5.06, s 9.0, m 25.3
    # (rounded to the digits given there)
    for size, millions, half_digit in [("nano", 0.91, 0.005), ("tiny", 5.06, 0.005), ("s", 9.0, 0.05),
                                       ("m", 25.3, 0.05)]:
        count = sum(p.numel() for p in YOLOX(size, 80).parameters()) / 1e6
        assert count == pytest.approx(millions, abs=half_digit), size


# Measured from the official architecture (pixeltable-yolox 0.4.3, the maintained fork of
# Megvii-BaseDetection/YOLOX with the same module names; YoloxConfig.get_named_config("yolox_<size>")
# .get_model() with 80 classes): state-dict entry count (num_batches_tracked included), how many
# of those are BatchNorm num_batches_tracked buffers, exact parameter count, sha256 of the sorted
# "key:shape" lines ("head.stems.0.conv.weight:128x128x1x1" for s: shapes joined by "x", lines joined by
# "\n", no trailing newline), and a few keys with their shapes.
OFFICIAL_STATE_DICTS = {
    "nano": (642, 104, 912159, "aa44ad80c96641a729e37debc31bb642fd0064ff9ccb94da6b15790fee024829", {
        "backbone.backbone.stem.conv.conv.weight": (16, 12, 3, 3),
        "backbone.backbone.dark3.1.m.2.conv2.dconv.conv.weight": (32, 1, 3, 3),
        "backbone.backbone.dark5.1.conv2.conv.weight": (256, 512, 1, 1),
        "backbone.C3_n4.conv3.conv.weight": (256, 256, 1, 1),
        "head.stems.2.conv.weight": (64, 256, 1, 1), "head.cls_preds.0.weight": (80, 64, 1, 1)}),
    "tiny": (462, 74, 5055855, "9e38fd772085661c04b4f89d45d8fb4a1be06bd63f5c85d4737ca025cf108a76", {
        "backbone.backbone.stem.conv.conv.weight": (24, 12, 3, 3),
        "backbone.backbone.dark3.1.m.2.conv2.conv.weight": (48, 48, 3, 3),
        "backbone.backbone.dark5.1.conv2.conv.weight": (384, 768, 1, 1),
        "backbone.C3_n4.conv3.conv.weight": (384, 384, 1, 1),
        "head.stems.2.conv.weight": (96, 384, 1, 1), "head.cls_preds.0.weight": (80, 96, 1, 1)}),
    "s": (462, 74, 8968255, "68e757b714fcbd37d2ddd0ac7ffc9becc6f31afe3c5402e3c1227ba63bc3eb1b", {
        "backbone.backbone.stem.conv.conv.weight": (32, 12, 3, 3),
        "backbone.backbone.dark3.1.m.2.conv2.conv.weight": (64, 64, 3, 3),
        "backbone.backbone.dark5.1.conv2.conv.weight": (512, 1024, 1, 1),
        "backbone.C3_n4.conv3.conv.weight": (512, 512, 1, 1),
        "head.stems.2.conv.weight": (128, 512, 1, 1), "head.cls_preds.0.weight": (80, 128, 1, 1)}),
    "m": (606, 98, 25326495, "b1fb45a02db4320529b8eafa10bb37c601966cce7417655eeed2ec6e80eed0ef", {
        "backbone.backbone.stem.conv.conv.weight": (48, 12, 3, 3),
        "backbone.backbone.dark3.1.m.5.conv2.conv.weight": (96, 96, 3, 3),
        "backbone.backbone.dark5.1.conv2.conv.weight": (768, 1536, 1, 1),
        "backbone.C3_n4.conv3.conv.weight": (768, 768, 1, 1),
        "head.stems.2.conv.weight": (192, 768, 1, 1), "head.cls_preds.0.weight": (80, 192, 1, 1)}),
    "l": (750, 122, 54208895, "da0f458e9592e6b17e8c39ad6d9ff8858d2cbf35457f18fb61303ea80922190c", {
        "backbone.backbone.stem.conv.conv.weight": (64, 12, 3, 3),
        "backbone.backbone.dark3.1.m.8.conv2.conv.weight": (128, 128, 3, 3),
        "backbone.backbone.dark5.1.conv2.conv.weight": (1024, 2048, 1, 1),
        "backbone.C3_n4.conv3.conv.weight": (1024, 1024, 1, 1),
        "head.stems.2.conv.weight": (256, 1024, 1, 1), "head.cls_preds.0.weight": (80, 256, 1, 1)}),
    "x": (894, 146, 99071455, "1737a9ba3dbf2ab84390423866066990745820753e2af27c733292730b7181c5", {
        "backbone.backbone.stem.conv.conv.weight": (80, 12, 3, 3),
        "backbone.backbone.dark3.1.m.11.conv2.conv.weight": (160, 160, 3, 3),
        "backbone.backbone.dark5.1.conv2.conv.weight": (1280, 2560, 1, 1),
        "backbone.C3_n4.conv3.conv.weight": (1280, 1280, 1, 1),
        "head.stems.2.conv.weight": (320, 1280, 1, 1), "head.cls_preds.0.weight": (80, 320, 1, 1)}),
}


@pytest.mark.parametrize("size", [pytest.param(size, marks=pytest.mark.slow) if size == "x" else size
                                  for size in OFFICIAL_STATE_DICTS])
def test_state_dict_matches_the_official_architecture_exactly(size):
    count, tracked, params, digest, spots = OFFICIAL_STATE_DICTS[size]
    model = YOLOX(size, 80)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == count
    assert sum(k.endswith(".num_batches_tracked") for k in shapes) == tracked
    assert sum(p.numel() for p in model.parameters()) == params
    for key, shape in {**spots, "head.obj_preds.2.bias": (1,)}.items():
        assert shapes.get(key) == shape, key
    listing = "\n".join(f"{k}:{'x'.join(map(str, shapes[k]))}" for k in sorted(shapes))
    assert hashlib.sha256(listing.encode()).hexdigest() == digest


@pytest.mark.parametrize("size", [pytest.param(size, marks=pytest.mark.slow) if size == "x" else size
                                  for size in MODEL_SIZES])
def test_size_and_classes_are_read_from_the_state_dict(size):
    for classes in (80, 1):
        state = YOLOX(size, classes).state_dict()
        assert describe_state_dict(state, "x.pth") == (size, classes)


@pytest.mark.slow
def test_random_init_shapes_and_batching():
    # One class: an untrained 80-class model rarely makes person its top class, so would keep no box.
    detector = YOLOXDetector(weights=None, model_size="nano", num_classes=1, input_size=[128, 160], batch_size=2,
                             score_thresh=0.0)
    assert isinstance(detector, Detector) and detector.preprocess == "yolox"  # random init: no recipe
    batch = np.zeros((3, 3, 128, 160), np.float32)
    raw = detector.raw_outputs(batch)
    assert raw.shape == (3, 16 * 20 + 8 * 10 + 4 * 5, 6)
    assert ((raw[..., 4:] >= 0) & (raw[..., 4:] <= 1)).all()  # objectness/classes are probabilities
    # a batch gives each image the rows it gets alone (untrained scores tie too often to
    # compare NMS output across batchings, so compare the network rows)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (3, 3, 128, 160)).astype(np.float32)
    together = detector.raw_outputs(images)
    for i in range(3):
        np.testing.assert_allclose(together[i], detector.raw_outputs(images[i:i + 1])[0], atol=1e-4)
    inputs = frames(5)
    results = detector.detect(inputs)  # batches of 2, 2, 1
    assert len(results) == 5
    for dets, frame in zip(results, inputs):
        assert isinstance(dets, Detections) and dets.keypoints is None and len(dets) > 0
        assert (dets.boxes[:, 2] <= frame.width).all() and (dets.boxes[:, 3] <= frame.height).all()
        assert (dets.boxes >= 0).all() and (dets.boxes[:, 2:] > dets.boxes[:, :2]).all()
        assert (np.diff(dets.scores) <= 0).all()
    assert detector.detect([]) == []


@pytest.mark.parametrize("num_classes", [80, 1])
@pytest.mark.slow
def test_fake_official_checkpoint_loads_strictly(tmp_path, num_classes):
    path, reference = fake_checkpoint(tmp_path, "nano", num_classes, best_ap=np.float64(25.8))
    detector = YOLOXDetector(weights=str(path), input_size=[96, 96])
    assert detector.model.size_name == "nano" and detector.model.head.num_classes == num_classes
    assert detector.source == path
    x = torch.rand(2, 3, 96, 96) * 255
    with torch.no_grad():
        torch.testing.assert_close(detector.model(x), reference.eval()(x))
    assert detector.input_hw == (96, 96)
    if num_classes == 80:
        default = YOLOXDetector(weights=str(path), model_size="nano", num_classes=num_classes)
        assert default.input_hw == (416, 416) and default.preprocess == "yolox"  # nano's native size
        assert default.post.nms_thresh == 0.45
    else:  # a person-only YOLOX given as a path is ByteTrack's: its pre-processing, test size and NMS
        with pytest.warns(UserWarning, match="read as a ByteTrack detector.*detector.preprocess=yolox"):
            default = YOLOXDetector(weights=str(path), model_size="nano", num_classes=num_classes)
        assert default.input_hw == (608, 1088) and default.preprocess == "bytetrack"
        assert default.post.nms_thresh == 0.7


def test_bytetrack_recipe_from_a_path_and_refusal_for_unknown_class_counts(tmp_path):
    path, _ = fake_checkpoint(tmp_path, "nano", 1, name="bytetrack_x_mot20.pth.tar")
    with pytest.warns(UserWarning, match="ByteTrack"):
        detector = YOLOXDetector(weights=str(path))
    assert detector.input_hw == (896, 1600)  # ByteTrack's MOT20 test size, from the official file name
    own = YOLOXDetector(weights=str(path), preprocess="yolox", input_size=[96, 96])  # the user's word wins
    assert own.preprocess == "yolox" and own.post.nms_thresh == 0.45
    five, _ = fake_checkpoint(tmp_path, "nano", 5, name="five.pth")
    with pytest.raises(InputError, match="5-class YOLOX.*set detector.preprocess=yolox .* or detector.preprocess=bytetrack"):
        YOLOXDetector(weights=str(five))
    assert YOLOXDetector(weights=str(five), preprocess="yolox", nms_thresh=0.6).post.nms_thresh == 0.6


def test_bare_state_dict_and_ddp_prefix(tmp_path):
    state = {f"module.{k}": v for k, v in YOLOX("nano", 1).state_dict().items()}
    torch.save(state, tmp_path / "bare.pth")
    assert describe_state_dict(load_state_dict(tmp_path / "bare.pth"), "bare") == ("nano", 1)


def test_wrong_size_or_class_count_is_one_clear_error(tmp_path):
    path, _ = fake_checkpoint(tmp_path, "nano", 1)
    with pytest.raises(InputError, match=r"ckpt.pth.*YOLOX-nano but model_size=s"):
        YOLOXDetector(weights=str(path), model_size="s")
    with pytest.raises(InputError, match=r"ckpt.pth.*1 classes but num_classes=80"):
        YOLOXDetector(weights=str(path), num_classes=80)
    with pytest.raises(InputError, match="person_class=3 but the model has 1 classes"):
        YOLOXDetector(weights=str(path), person_class=3)
    with pytest.raises(InputError, match="unknown model_size"):
        YOLOXDetector(weights=None, model_size="huge")


def test_corrupt_and_foreign_files(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(InputError, match="corrupt.pth.*cannot load checkpoint"):
        YOLOXDetector(weights=str(corrupt))
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    with pytest.raises(InputError, match="foreign.pth.*not a YOLOX checkpoint: missing key"):
        YOLOXDetector(weights=str(foreign))
    not_tensors = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_tensors)
    with pytest.raises(InputError, match="list.pth.*not a YOLOX checkpoint"):
        YOLOXDetector(weights=str(not_tensors))
    # same shapes at the keys we read, but a missing layer: strict loading names the file
    path, model = fake_checkpoint(tmp_path, "nano", 80, name="broken.pth")
    state = torch.load(path, weights_only=True)
    del state["model"]["head.obj_preds.2.bias"]
    torch.save(state, path)
    with pytest.raises(InputError, match="broken.pth.*does not fit YOLOX-nano.*obj_preds.2.bias"):
        YOLOXDetector(weights=str(path))
    with pytest.raises(InputError, match="weights file not found"):
        YOLOXDetector(weights=str(tmp_path / "missing.pth"))


def test_registry_name_download_and_checksum(tmp_path, monkeypatch):
    path, _ = fake_checkpoint(tmp_path, "nano", 80, name="yolox_nano.pth")
    good = WeightSpec(url=path.as_uri(), sha256=sha256_of(path), meta={"input_size": [64, 64]})
    bad = WeightSpec(url=path.as_uri(), sha256="0" * 64, filename="other.pth")
    monkeypatch.setitem(YOLOX_WEIGHTS, "test_nano", good)
    monkeypatch.setitem(YOLOX_WEIGHTS, "test_bad", bad)
    detector = YOLOXDetector(weights="test_nano")
    assert detector.input_hw == (64, 64)  # from the registry meta
    assert detector.source.parent.name == "weights" and detector.source.is_file()
    with pytest.raises(InputError, match="checksum mismatch"):
        YOLOXDetector(weights="test_bad")


def test_registry_contents():
    for size in MODEL_SIZES:
        spec = YOLOX_WEIGHTS[f"yolox_{size}"]
        assert spec.url.endswith(f"/0.1.1rc0/yolox_{size}.pth") and len(spec.sha256) == 64
        assert spec.meta["num_classes"] == 80 and spec.meta["preprocess"] == "yolox"
    bytetrack = YOLOX_WEIGHTS["bytetrack_x_mot17"]
    assert bytetrack.meta == {"model_size": "x", "num_classes": 1, "input_size": [800, 1440],
                              "preprocess": "bytetrack", "nms_thresh": 0.7, "manual_download": True}
    assert yolox_weights.YOLOX_ONNX_WEIGHTS["yolox_nano"].meta["input_size"] == [416, 416]


def test_manual_download_weights_say_where_to_put_them():
    with pytest.raises(InputError, match=r"bytetrack_x_mot17.pth.tar: not in the cache; fetch "
                                         r"https://drive.google.com/.*1P4mY0Yyd3PPTybgZkjMYhFri88nTmJX5"):
        YOLOXDetector(weights="bytetrack_x_mot17")


def test_bad_frames_and_devices():
    detector = YOLOXDetector(weights=None, model_size="nano", input_size=[64, 64])
    with pytest.raises(InputError, match="no decoded image"):
        detector.detect([Frame("seq", 0, None, file_name="a.jpg")])
    with pytest.raises(InputError, match="HxWx3 uint8"):
        detector.detect([Frame("seq", 0, np.zeros((8, 8), np.uint8))])
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            YOLOXDetector(weights=None, model_size="nano", device="cuda")
    with pytest.raises(InputError, match="multiples of 32"):
        YOLOXDetector(weights=None, model_size="nano", input_size=[100, 100])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_matches_float32_cpu():
    cpu = YOLOXDetector(weights=None, model_size="nano", input_size=[128, 128], score_thresh=0.0)
    gpu = YOLOXDetector(weights=None, model_size="nano", input_size=[128, 128], score_thresh=0.0,
                        device="cuda", half=True)
    gpu.model.load_state_dict(cpu.model.state_dict())
    gpu.model.half()
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 128, 128)).astype(np.float32)
    np.testing.assert_allclose(gpu.raw_outputs(batch)[..., 4:], cpu.raw_outputs(batch)[..., 4:], atol=2e-2)
