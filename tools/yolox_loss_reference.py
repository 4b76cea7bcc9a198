"""Reference values of the OFFICIAL YOLOX training loss for tests/fixtures/reference/yolox_loss.npz.

Runs Megvii's ``YOLOXHead`` (tag 0.3.0: the SimOTA of the 0.1.1rc0-0.3.0 releases, the one the
official COCO checkpoints were trained with) in training mode on seeded YOLOX-nano features, with
the head weights of our own module copied in, and records what its ``get_losses`` receives (the
decoded boxes, objectness and class logits, the raw box regressions, the labels) and returns (iou
x 5, obj, cls, l1). ``tests/test_train_detector_loss.py`` feeds the same tensors to
``kprtrack.train.detector.loss.YoloxLoss``. Nothing here is imported by kprtrack.

Only the head's files are needed (no torchvision, no build): they are copied into a temporary
``yolox`` package with stand-ins for ``loguru`` and ``torchvision`` (imported, never called here).

    git clone https://github.com/Megvii-BaseDetection/YOLOX /tmp/yolox_src && git -C /tmp/yolox_src checkout 0.3.0
    python tools/yolox_loss_reference.py --yolox-repo /tmp/yolox_src
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "reference" / "yolox_loss.npz"
INPUT_HW = (96, 128)
# (seed, classes, boxes in image 0): random boxes; image 1 always holds three overlapping people
CASES = [(0, 80, 5), (1, 1, 0), (2, 80, 3), (3, 1, 7), (4, 80, 2), (5, 1, 8)]


def upstream_head_class(repo: Path):
    work = Path(tempfile.mkdtemp(prefix="yolox_head_"))
    package = work / "yolox"
    (package / "models").mkdir(parents=True)
    (package / "utils").mkdir()
    for name in ("yolo_head.py", "losses.py", "network_blocks.py"):
        shutil.copy(repo / "yolox" / "models" / name, package / "models" / name)
    shutil.copy(repo / "yolox" / "utils" / "boxes.py", package / "utils" / "boxes.py")
    (package / "__init__.py").write_text("")
    (package / "models" / "__init__.py").write_text("")
    (package / "utils" / "__init__.py").write_text(
        "import torch\nfrom .boxes import bboxes_iou\n\n\ndef meshgrid(*tensors):\n"
        "    return torch.meshgrid(*tensors, indexing='ij')\n")
    import logging

    sys.modules.setdefault("loguru", types.SimpleNamespace(logger=logging.getLogger("yolox")))
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    sys.path.insert(0, str(work))
    from yolox.models.yolo_head import YOLOXHead

    return YOLOXHead


def labels_for(seed: int, num_classes: int, count: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + seed)
    labels = torch.zeros(2, 8, 5)
    for i in range(count):
        w, h = 8 + float(torch.rand(1, generator=g)) * 50, 16 + float(torch.rand(1, generator=g)) * 70
        cx = 10 + float(torch.rand(1, generator=g)) * (INPUT_HW[1] - 20)
        cy = 10 + float(torch.rand(1, generator=g)) * (INPUT_HW[0] - 20)
        labels[0, i] = torch.tensor([float(torch.randint(num_classes, (1,), generator=g)), cx, cy, w, h])
    for i in range(3):
        labels[1, i] = torch.tensor([0.0, 30.0 + 40 * i, 60.0, 30.0, 70.0])
    return labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--yolox-repo", type=Path, required=True)
    args = parser.parse_args()
    head_class = upstream_head_class(args.yolox_repo)
    from kprtrack.detector.yolox_arch import YOLOX

    arrays: dict[str, np.ndarray] = {}
    for case, (seed, num_classes, count) in enumerate(CASES):
        torch.manual_seed(seed)
        model = YOLOX("nano", num_classes).train()
        head = head_class(num_classes, width=0.25, depthwise=True).train()
        head.load_state_dict({k[5:]: v for k, v in model.state_dict().items() if k.startswith("head.")})
        images = torch.rand(2, 3, *INPUT_HW) * 255
        labels = labels_for(seed, num_classes, count)
        seen = {}
        get_losses = head.get_losses

        def spy(imgs, x_shifts, y_shifts, expanded_strides, labels_, outputs, origin_preds, dtype):
            seen.update(outputs=outputs.clone(), origin=[o.clone() for o in origin_preds],
                        grid=torch.cat([torch.cat(x_shifts, 1), torch.cat(y_shifts, 1)], 0).T,
                        strides=torch.cat(expanded_strides, 1)[0])
            return get_losses(imgs, x_shifts, y_shifts, expanded_strides, labels_, outputs, origin_preds, dtype)

        head.get_losses = spy
        for use_l1 in (False, True):
            head.use_l1 = use_l1
            with torch.no_grad():
                features = model.backbone(images)
                total, iou, obj, cls, l1, _ = head(features, labels=labels, imgs=images)
            key = f"case{case}_l1{int(use_l1)}"
            arrays[f"{key}_terms"] = np.array([float(total), float(iou), float(obj), float(cls), float(l1)])
        out = seen["outputs"]
        arrays[f"case{case}_boxes"] = out[..., :4].numpy()
        arrays[f"case{case}_obj"] = out[..., 4].numpy()
        arrays[f"case{case}_cls"] = out[..., 5:].numpy()
        arrays[f"case{case}_reg"] = torch.cat(seen["origin"], 1).numpy()
        arrays[f"case{case}_grids"] = seen["grid"].numpy()
        arrays[f"case{case}_strides"] = seen["strides"].numpy()
        arrays[f"case{case}_labels"] = labels.numpy()
        print(case, num_classes, count, arrays[f"case{case}_l10_terms"].round(5), arrays[f"case{case}_l11_terms"].round(5))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, num_cases=np.array(len(CASES)), **arrays)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
