"""Reference outputs of the OFFICIAL mmpose 1.x HRNet top-down path for tests/fixtures/reference/.

Uses mmpose's own code for everything but the 1x1 output convolution: the ``HRNet`` backbone
(config td-hm_hrnet-w32_8xb64-210e_coco-256x192), ``bbox_xyxy2cs`` (padding 1.25), TopdownAffine's
aspect fix and ``get_warp_matrix``, ``flip_heatmaps`` (heatmap mode, shift), the ``MSRAHeatmap``
codec's decode (argmax + quarter shift, and DARK) and the estimator's mapping back to the frame.
The head's ``final_layer`` is a plain 1x1 convolution there too, written here with its name. The
image normalisation is PoseDataPreprocessor's (RGB, mean/std on 0-255). Seeded weights come from
``reference_weights`` keyed by mmpose's parameter names; the tests map them with kprtrack's mmpose
key adapter, so the adapter is checked too. Nothing here is imported by kprtrack.

Throwaway environment: the one of tools/kpr_reference.py plus ``pip install mmengine==0.10.7
mmcv-lite==2.1.0`` and a checkout of mmpose:

    git clone https://github.com/open-mmlab/mmpose /tmp/mmpose_src        # 759b39c
    /tmp/kprref/bin/python tools/mmpose_reference.py --mmpose-repo /tmp/mmpose_src
"""
from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hrnet_reference import HEATMAP_STRIDE, frame_digest, hrnet_state, load_people  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "reference"
INPUT_SIZE = (192, 256)  # mmpose order: (w, h)
HEATMAP_SIZE = (48, 64)
COCO_FLIP_INDICES = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
W32_EXTRA = dict(
    stage1=dict(num_modules=1, num_branches=1, block="BOTTLENECK", num_blocks=(4,), num_channels=(64,)),
    stage2=dict(num_modules=1, num_branches=2, block="BASIC", num_blocks=(4, 4), num_channels=(32, 64)),
    stage3=dict(num_modules=4, num_branches=3, block="BASIC", num_blocks=(4, 4, 4), num_channels=(32, 64, 128)),
    stage4=dict(num_modules=3, num_branches=4, block="BASIC", num_blocks=(4, 4, 4, 4),
                num_channels=(32, 64, 128, 256)))


def _mmpose(repo: Path):
    """mmpose's modules without its package __init__ files (which import the whole library)."""
    for name in ("mmpose", "mmpose.models", "mmpose.models.backbones", "mmpose.models.utils", "mmpose.codecs",
                 "mmpose.codecs.utils", "mmpose.structures", "mmpose.datasets",
                 "mmpose.datasets.transforms"):
        module = types.ModuleType(name)
        module.__path__ = [str(repo / name.replace(".", "/"))]
        sys.modules[name] = module
    sys.path.insert(0, str(repo))
    get = importlib.import_module
    return types.SimpleNamespace(
        HRNet=get("mmpose.models.backbones.hrnet").HRNet,
        flip_heatmaps=get("mmpose.models.utils.tta").flip_heatmaps,
        MSRAHeatmap=get("mmpose.codecs.msra_heatmap").MSRAHeatmap,
        bbox=get("mmpose.structures.bbox.transforms"),
        TopdownAffine=get("mmpose.datasets.transforms.topdown_transforms").TopdownAffine)


def seeded_hrnet(hrnet_class, head: str):
    """mmpose's HRNet-W32 backbone plus the head's 1x1 ``final_layer`` under ``head``, seeded by name."""
    import torch

    model = torch.nn.Module()
    model.backbone = hrnet_class(extra=W32_EXTRA, in_channels=3)
    setattr(model, head, torch.nn.Module())
    getattr(model, head).final_layer = torch.nn.Conv2d(32, 17, 1)
    model.eval()
    state = model.state_dict()
    state.update(hrnet_state(state))
    model.load_state_dict(state)
    return model, state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmpose-repo", type=Path, required=True, help="checkout of open-mmlab/mmpose")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import cv2
    import torch

    mm = _mmpose(args.mmpose_repo)
    model, state = seeded_hrnet(mm.HRNet, "head")

    image, boxes = load_people()
    centers, scales = mm.bbox.bbox_xyxy2cs(boxes, padding=1.25)
    affine = mm.TopdownAffine(input_size=INPUT_SIZE)
    scales = affine._fix_aspect_ratio(scales, aspect_ratio=INPUT_SIZE[0] / INPUT_SIZE[1])
    matrices = [mm.bbox.get_warp_matrix(c, s, 0.0, output_size=INPUT_SIZE) for c, s in zip(centers, scales)]
    crops = [cv2.warpAffine(image, m, INPUT_SIZE, flags=cv2.INTER_LINEAR) for m in matrices]
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    batch = torch.from_numpy(np.stack([((c[..., ::-1] - mean) / std).transpose(2, 0, 1) for c in crops]).astype(np.float32))

    def forward(x):
        return model.head.final_layer(model.backbone(x)[0])

    with torch.no_grad():
        flipped = mm.flip_heatmaps(forward(batch.flip(-1)), flip_mode="heatmap", flip_indices=COCO_FLIP_INDICES,
                                   shift_heatmap=True)
        heatmaps = ((forward(batch) + flipped) * 0.5).numpy()
    results = {}
    for name, unbiased in (("argmax", False), ("dark", True)):
        codec = mm.MSRAHeatmap(input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE, sigma=2, unbiased=unbiased)
        keypoints, scores = zip(*(codec.decode(hm.copy()) for hm in heatmaps))
        keypoints = np.concatenate(keypoints)  # [N, 17, 2] input pixels
        frame = keypoints / np.array(INPUT_SIZE) * scales[:, None] + centers[:, None] - 0.5 * scales[:, None]
        results[f"keypoints_{name}"], results[f"scores_{name}"] = frame, np.concatenate(scores)
    keys = sorted(f"{k} {list(v.shape)}" for k, v in state.items() if not k.endswith("num_batches_tracked"))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "hrnet_w32_mmpose1.npz", frame_sha256=frame_digest(image), state_keys="\n".join(keys),
                        warp_matrices=np.stack(matrices), heatmaps_sample=heatmaps[:, :, ::HEATMAP_STRIDE, ::HEATMAP_STRIDE],
                        **results)
    print(f"hrnet_w32_mmpose1: {len(boxes)} people, {len(keys)} mmpose keys -> {args.out / 'hrnet_w32_mmpose1.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
