"""Reference outputs of the OFFICIAL mmpose 0.x HRNet top-down path (the PoseTrack18 registry files' code).

mmpose 0.x (branch 0.x) with mmcv 1.7: its ``HRNet`` backbone, ``TopDownGetBboxCenterScale`` and
``TopDownAffine`` (PoseTrack18 flip pairs, which have no eye pair), ``flip_back`` + the head's
one-pixel shift, and ``keypoints_from_heatmaps`` (post_process 'default': quarter shift of both
axes only when the maximum is inside on both; and 'unbiased', i.e. DARK). ``keypoint_head.final_layer``
is the head's 1x1 convolution, written here with its name. Seeded weights are keyed by mmpose 0.x's
parameter names; the tests map them with kprtrack's mmpose 0.x key adapter. Nothing here is
imported by kprtrack.

Throwaway environment: mmcv 1.x cannot share one with mmcv-lite 2, so a second venv that reuses
tools/kpr_reference.py's for torch/torchvision:

    python3.11 -m venv /tmp/mm0 && echo /tmp/kprref/lib/python3.11/site-packages > \\
        /tmp/mm0/lib/python3.11/site-packages/zz_kprref.pth
    /tmp/mm0/bin/pip install "setuptools<70" wheel && MMCV_WITH_OPS=0 /tmp/mm0/bin/pip install \\
        --no-build-isolation mmcv==1.7.2
    git clone -b 0.x https://github.com/open-mmlab/mmpose /tmp/mmpose0_src     # 3b81734
    /tmp/mm0/bin/python tools/mmpose0_reference.py --mmpose-repo /tmp/mmpose0_src
"""
from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hrnet_reference import HEATMAP_STRIDE, frame_digest, load_people  # noqa: E402
from mmpose_reference import seeded_hrnet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "reference"
IMAGE_SIZE = np.array([192, 256])  # mmpose order: (w, h)
POSETRACK_FLIP_PAIRS = [[3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


def _registry():
    class Registry:
        def register_module(self, *args, **kwargs):
            return (lambda cls: cls) if not args or not isinstance(args[0], type) else args[0]

    return Registry()


def _mmpose0(repo: Path):
    """mmpose 0.x's modules without its package __init__ files, registries replaced by no-ops."""
    for name in ("mmpose", "mmpose.models", "mmpose.models.backbones", "mmpose.core", "mmpose.datasets",
                 "mmpose.datasets.pipelines"):
        module = types.ModuleType(name)
        module.__path__ = [str(repo / name.replace(".", "/"))]
        sys.modules[name] = module
    builders = {"mmpose.models.builder": "BACKBONES", "mmpose.datasets.builder": "PIPELINES"}
    for name, attr in builders.items():
        module = types.ModuleType(name)
        setattr(module, attr, _registry())
        sys.modules[name] = module
    utils = types.ModuleType("mmpose.models.backbones.utils")
    utils.load_checkpoint = None  # pretrained loading only
    sys.modules["mmpose.models.backbones.utils"] = utils
    mmpose_utils = types.ModuleType("mmpose.utils")
    mmpose_utils.get_root_logger = lambda *a, **k: None
    sys.modules["mmpose.utils"] = mmpose_utils
    sys.path.insert(0, str(repo))
    get = importlib.import_module
    return types.SimpleNamespace(
        HRNet=get("mmpose.models.backbones.hrnet").HRNet,
        transforms=get("mmpose.datasets.pipelines.top_down_transform"),
        post=get("mmpose.core.post_processing.post_transforms"),
        evaluation=get("mmpose.core.evaluation.top_down_eval"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmpose-repo", type=Path, required=True, help="checkout of open-mmlab/mmpose, branch 0.x")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import cv2
    import torch

    mm = _mmpose0(args.mmpose_repo)
    model, state = seeded_hrnet(mm.HRNet, "keypoint_head")

    image, boxes = load_people()
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # LoadImageFromFile, channel_order='rgb'
    ann_info = {"image_size": IMAGE_SIZE, "num_joints": 17, "flip_pairs": POSETRACK_FLIP_PAIRS}
    centers, scales, matrices, crops = [], [], [], []
    for box in boxes:
        results = {"img": rgb, "bbox": np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]]),
                   "ann_info": ann_info, "rotation": 0, "joints_3d": np.zeros((17, 3)),
                   "joints_3d_visible": np.zeros((17, 3))}
        results = mm.transforms.TopDownGetBboxCenterScale(padding=1.25)(results)
        results = mm.transforms.TopDownAffine()(results)
        centers.append(results["center"])
        scales.append(results["scale"])
        matrices.append(mm.post.get_affine_transform(results["center"], results["scale"], 0, IMAGE_SIZE))
        crops.append(results["img"])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ToTensor + NormalizeTensor
    batch = torch.from_numpy(np.stack([((c / 255.0 - mean) / std).transpose(2, 0, 1) for c in crops]).astype(np.float32))

    def forward(x):
        return model.keypoint_head.final_layer(model.backbone(x)[0])

    with torch.no_grad():
        heatmaps = forward(batch).numpy()
        flipped = mm.post.flip_back(forward(batch.flip(3)).numpy(), POSETRACK_FLIP_PAIRS, target_type="GaussianHeatmap")
        flipped[:, :, :, 1:] = flipped[:, :, :, :-1]  # test_cfg shift_heatmap=True
        heatmaps = (heatmaps + flipped) * 0.5
    results = {}
    for name, post_process in (("argmax", "default"), ("dark", "unbiased")):
        keypoints, scores = mm.evaluation.keypoints_from_heatmaps(
            heatmaps.copy(), np.stack(centers), np.stack(scales), post_process=post_process, kernel=11)
        results[f"keypoints_{name}"], results[f"scores_{name}"] = keypoints, scores[..., 0]
    keys = sorted(f"{k} {list(v.shape)}" for k, v in state.items() if not k.endswith("num_batches_tracked"))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "hrnet_w32_mmpose0.npz", frame_sha256=frame_digest(image), state_keys="\n".join(keys),
                        warp_matrices=np.stack(matrices), heatmaps_sample=heatmaps[:, :, ::HEATMAP_STRIDE, ::HEATMAP_STRIDE],
                        **results)
    print(f"hrnet_w32_mmpose0: {len(boxes)} people, {len(keys)} mmpose 0.x keys -> {args.out / 'hrnet_w32_mmpose0.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
