"""``python -m kprtrack export detector=yolox detector.weights=<name|path|url> [onnx_file=...]``.

Writes an ONNX file that ``detector=yolox_onnx`` runs with the same pre/post-processing: input
``images`` [B, 3, H, W] (BGR 0-255 letterbox), output ``output`` [B, A, 5 + C] raw rows. Needs
the ``onnx`` package (torch's exporter serialises through it).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.errors import InputError, MissingModelError
from kprtrack.io import write_bytes

INPUT_NAME, OUTPUT_NAME = "images", "output"


def export_onnx(model, input_hw: tuple[int, int], path: str | Path, opset: int = 11,
                dynamic_batch: bool = True) -> Path:
    """Export a YOLOX module (any device/dtype; exported as float32 on CPU), atomically."""
    import torch

    try:
        import onnx  # noqa: F401  (torch.onnx serialises through it)
    except ImportError:
        raise MissingModelError("ONNX export needs the onnx package: pip install onnx") from None
    model = model.float().cpu().eval()
    dummy = torch.zeros(1, 3, *input_hw)
    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter needs only `onnx`; the dynamo one would also need onnxscript.
        torch.onnx.export(model, (dummy,), buffer, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=int(opset))
    return write_bytes(path, buffer.getvalue())


def compare_with_onnxruntime(model, onnx_path: str | Path, batch: np.ndarray) -> float:
    """Max abs difference between PyTorch and ONNX Runtime outputs on ``batch``."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_out = session.run(None, {INPUT_NAME: batch.astype(np.float32)})[0]
    with torch.no_grad():
        torch_out = model.float().cpu().eval()(torch.from_numpy(batch.astype(np.float32))).numpy()
    if ort_out.shape != torch_out.shape:
        return float("inf")
    return float(np.abs(ort_out - torch_out).max())


def _default_name(weights, input_hw) -> str:
    stem = "yolox_random" if weights is None else Path(os.fspath(weights).split("?")[0]).name
    stem = stem.removesuffix(".tar").removesuffix(".pth").removesuffix(".pt")
    return f"{stem}_{input_hw[0]}x{input_hw[1]}.onnx"


def main(argv: Sequence[str]) -> int:
    from kprtrack.config import compose_command, instantiate
    from kprtrack.detector.yolox import YOLOXDetector

    cfg = compose_command("export", argv)
    if cfg is None:
        return 0
    target = cfg.detector.get("_target_", "")
    if not target.endswith("YOLOXDetector"):
        raise InputError(f"export works on the PyTorch detector (detector=yolox); got {target}")
    overrides = {"device": "cpu", "half": False}
    detector: YOLOXDetector = instantiate(cfg.detector, **overrides)
    out = Path(cfg.onnx_file or _default_name(cfg.detector.weights, detector.input_hw))
    export_onnx(detector.model, detector.input_hw, out, cfg.opset, cfg.dynamic_batch)
    print(f"wrote {out} (YOLOX-{detector.model.size_name}, {detector.model.head.num_classes} classes, "
          f"input {detector.input_hw[0]}x{detector.input_hw[1]}, weights {detector.source})")
    if cfg.check:
        rng = np.random.default_rng(0)
        batch = rng.uniform(0, 255, (2 if cfg.dynamic_batch else 1, 3, *detector.input_hw)).astype(np.float32)
        diff = compare_with_onnxruntime(detector.model, out, batch)
        print(f"check: max abs difference PyTorch vs ONNX Runtime = {diff:.3g}")
        if not diff <= float(cfg.tolerance):
            print(f"kprtrack export: the exported model differs from PyTorch by more than "
                  f"{cfg.tolerance}")
            return 1
    return 0
