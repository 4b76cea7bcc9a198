"""ONNX export (`python -m kprtrack export`) and the ONNX Runtime backend on our own exports."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kprtrack.cli import main as cli_main
from kprtrack.detector.yolox import YOLOXDetector
from kprtrack.detector.yolox_onnx import YOLOXOnnxDetector
from kprtrack.errors import InputError
from kprtrack.export import compare_with_onnxruntime, export_onnx
from kprtrack.record import Frame

pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore:detector.weights is null", "ignore::DeprecationWarning")


def trained_looking(model):
    """Random weights with non-trivial BatchNorm statistics and biased heads, so that outputs
    vary over a wide range (a freshly initialised net gives near-constant rows)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
        for preds in (model.head.cls_preds, model.head.obj_preds, model.head.reg_preds):
            for conv in preds:
                conv.weight.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def nano_detector():
    torch.manual_seed(0)  # the random init too, so the test does not depend on other tests' RNG use
    detector = YOLOXDetector(weights=None, model_size="nano", num_classes=1, input_size=[160, 224],
                             score_thresh=0.05)
    trained_looking(detector.model)
    return detector


@pytest.mark.slow
def test_exported_onnx_matches_pytorch(tmp_path, nano_detector):
    path = export_onnx(nano_detector.model, nano_detector.input_hw, tmp_path / "nano.onnx")
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 160, 224)).astype(np.float32)
    torch_rows = nano_detector.raw_outputs(batch)
    onnx_detector = YOLOXOnnxDetector(weights=str(path), input_size=[160, 224], score_thresh=0.05,
                                      batch_size=2)
    onnx_rows = onnx_detector.raw_outputs(batch)
    assert onnx_rows.shape == torch_rows.shape == (2, 735, 6)
    assert np.abs(onnx_rows - torch_rows).max() < 1e-4
    # the comparison is not between near-constants
    assert np.ptp(torch_rows[..., 4]) > 0.3 and np.ptp(torch_rows[..., :4]) > 1.0
    assert compare_with_onnxruntime(nano_detector.model, path, batch) < 1e-4
    # (end-to-end detections of both backends are compared on real weights in test_detector_real.py;
    # untrained scores tie too often for NMS output to be comparable)


@pytest.mark.slow
def test_fixed_batch_export_is_fed_frame_by_frame(tmp_path, nano_detector):
    path = export_onnx(nano_detector.model, nano_detector.input_hw, tmp_path / "fixed.onnx",
                       dynamic_batch=False)
    with pytest.warns(UserWarning, match="person-only YOLOX, read as a ByteTrack detector"):
        detector = YOLOXOnnxDetector(weights=str(path), batch_size=8)  # 1 class in the output rows
    assert detector.batch_size == 1 and detector.input_hw == (160, 224)
    assert detector.preprocess == "bytetrack" and detector.post.nms_thresh == 0.7
    frames = [Frame("s", i, np.full((100, 100, 3), 40 * i, np.uint8)) for i in range(3)]
    assert len(detector.detect(frames)) == 3
    with pytest.raises(InputError, match=r"fixed.onnx.*input_size=\[320, 320\] but the model's input is fixed"):
        YOLOXOnnxDetector(weights=str(path), input_size=[320, 320])


@pytest.mark.slow
def test_dynamic_input_needs_a_size(tmp_path):
    model = YOLOXDetector(weights=None, model_size="nano", input_size=[64, 64]).model
    import io

    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), buffer, dynamo=False, input_names=["images"],
                      output_names=["output"], dynamic_axes={"images": {0: "b", 2: "h", 3: "w"},
                                                             "output": {0: "b", 1: "a"}})
    path = tmp_path / "dynamic.onnx"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(InputError, match="dynamic.onnx.*set detector.input_size"):
        YOLOXOnnxDetector(weights=str(path))
    detector = YOLOXOnnxDetector(weights=str(path), input_size=[96, 128])
    assert detector.raw_outputs(np.zeros((1, 3, 96, 128), np.float32)).shape == (1, 252, 85)


def test_unexpected_onnx_output_shape_is_one_clear_error(tmp_path):
    class Decoded(torch.nn.Module):  # e.g. an export with only 4 box columns
        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 8).flatten(2).permute(0, 2, 1)[..., :3].repeat(1, 1, 2)

    buffer = __import__("io").BytesIO()
    torch.onnx.export(Decoded(), (torch.zeros(1, 3, 64, 64),), buffer, dynamo=False,
                      input_names=["images"], output_names=["output"])
    path = tmp_path / "wrong.onnx"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(InputError, match=r"wrong.onnx: unexpected output shape \[1, 64, 6\]: expected \[B, 84,"):
        YOLOXOnnxDetector(weights=str(path))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    with pytest.raises(InputError, match="corrupt.onnx: cannot load ONNX model"):
        YOLOXOnnxDetector(weights=str(corrupt))
    with pytest.raises(InputError, match="needs detector.weights"):
        YOLOXOnnxDetector(weights=None)


@pytest.mark.slow
def test_export_command(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code = cli_main(["export", "detector.weights=null", "detector.model_size=nano",
                     "detector.input_size=[96,96]", f"onnx_file={out}"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.is_file() and "YOLOX-nano, 80 classes, input 96x96" in text
    assert "max abs difference PyTorch vs ONNX Runtime" in text
    detector = YOLOXOnnxDetector(weights=str(out))
    assert detector.input_hw == (96, 96)
    assert cli_main(["export", "detector=yolox_onnx"]) == 2
    assert "export works on the PyTorch detector" in capsys.readouterr().err
