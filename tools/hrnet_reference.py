"""Reference outputs of the OFFICIAL HRNet code (deep-high-resolution-net.pytorch) for tests/fixtures/reference/.

Builds HRNet-W32 256x192 with the authors' ``get_pose_net`` and experiment file, sets seeded random
weights (``reference_weights``; the tests regenerate them by name in kprtrack's model, which
keeps the original names), and runs the authors' test path on real PoseTrack18 people: box to
center/scale (``_xywh2cs``: aspect fix then x1.25), ``get_affine_transform`` + ``cv2.warpAffine``,
RGB ToTensor + ImageNet Normalize, flip test (``flip_back`` + one-pixel shift, COCO flip pairs),
``get_final_preds`` (argmax + quarter offset, back through the inverse affine). Nothing here is
imported by kprtrack.

Throwaway environment: the one of tools/kpr_reference.py, and a checkout of the authors' code:

    git clone https://github.com/leoxiaobin/deep-high-resolution-net.pytorch /tmp/hrnet_src   # 6f69e46
    /tmp/kprref/bin/python tools/hrnet_reference.py --hrnet-repo /tmp/hrnet_src
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_weights import fan_in_scaled, seeded_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OUT = ROOT / "tests" / "fixtures" / "reference"
DATA = "data/posetrack18"
IMAGE = "images/val/012834_mpii_test/000000.jpg"
EXPERIMENT = "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"
PEOPLE = 3
HEATMAP_STRIDE = 4  # every 4th heatmap pixel is kept in the fixture (all of them would be megabytes)
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


BN_GAIN = 0.5


def hrnet_state(state: dict) -> dict:
    """Seeded weights, convolutions at a fan-in spread and BatchNorm scales halved: a deep random
    HRNet otherwise grows its activations through every residual sum and branch fusion until
    float32 rounding dominates the comparison."""
    out = fan_in_scaled(seeded_state(state))
    return {k: v * BN_GAIN if v.dim() == 1 and k.endswith(".weight") else v for k, v in out.items()}


def load_people():
    """The frame (BGR) and its annotated people's boxes as x1y1x2y2."""
    import cv2

    root = SHARED / DATA
    annotations = json.loads((root / "annotations" / "test_posetrack18_val.json").read_text())
    image = next(im for im in annotations["images"] if im["file_name"] == IMAGE)
    boxes = [a["bbox"] for a in annotations["annotations"] if a["image_id"] == image["id"]]
    xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float64)
    return cv2.imread(str(root / IMAGE)), xyxy[:PEOPLE]


def frame_digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def official_center_scale(box, image_size, pixel_std=200.0):
    """The authors' ``_xywh2cs`` (lib/dataset/coco.py), called with their arguments."""
    x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    aspect = image_size[0] / image_size[1]
    if w > aspect * h:
        h = w * 1.0 / aspect
    elif w < aspect * h:
        w = h * aspect
    scale = np.array([w / pixel_std, h / pixel_std], np.float32)
    return center, scale * 1.25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hrnet-repo", type=Path, required=True, help="checkout of leoxiaobin/deep-high-resolution-net.pytorch")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(args.hrnet_repo / "lib"))
    import cv2
    import torch
    from config.default import _C as cfg
    from core.inference import get_final_preds
    from models.pose_hrnet import get_pose_net
    from utils.transforms import flip_back, get_affine_transform

    cfg.defrost()
    cfg.merge_from_file(str(args.hrnet_repo / EXPERIMENT))
    model = get_pose_net(cfg, is_train=False).eval()
    state = model.state_dict()
    state.update(hrnet_state(state))
    model.load_state_dict(state)

    image, boxes = load_people()
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # cfg.DATASET.COLOR_RGB
    size = np.array(cfg.MODEL.IMAGE_SIZE)  # (w, h)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    centers, scales, crops, matrices = [], [], [], []
    for box in boxes:
        center, scale = official_center_scale(box, size)
        trans = get_affine_transform(center, scale, 0, size)
        matrices.append(trans)
        crop = cv2.warpAffine(rgb, trans, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR)
        crops.append(((crop.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))  # ToTensor + Normalize
        centers.append(center)
        scales.append(scale)
    batch = torch.from_numpy(np.stack(crops))
    with torch.no_grad():
        heatmaps = model(batch)
        flipped = flip_back(model(torch.flip(batch, [3])).numpy(), COCO_FLIP_PAIRS)
        flipped = torch.from_numpy(flipped.copy())
        flipped[:, :, :, 1:] = flipped.clone()[:, :, :, 0:-1]  # cfg.TEST.SHIFT_HEATMAP
        averaged = ((heatmaps + flipped) * 0.5).numpy()
    preds, maxvals = get_final_preds(cfg, averaged.copy(), np.stack(centers), np.stack(scales))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "hrnet_w32_original.npz", frame_sha256=frame_digest(image), boxes=boxes,
                        warp_matrices=np.stack(matrices), heatmaps_sample=averaged[:, :, ::HEATMAP_STRIDE, ::HEATMAP_STRIDE].astype(np.float32),
                        keypoints=preds.astype(np.float64),
                        scores=maxvals[..., 0].astype(np.float32))
    print(f"hrnet_w32_original: {len(boxes)} people, heatmaps {averaged.shape} -> {args.out / 'hrnet_w32_original.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
