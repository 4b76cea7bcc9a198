"""Write tests/fixtures/numpy1/*: small checkpoints laid out as upstream writes them, pickled by numpy 1.x.

Run it in a throwaway environment with numpy < 2 (never the project's own):

    python3.11 -m venv /tmp/np1 && /tmp/np1/bin/pip install torch 'numpy<2' yacs deepdiff
    git clone https://github.com/VlSomers/keypoint_promptable_reidentification /tmp/kpr_src  # 8db8263
    /tmp/np1/bin/python tools/make_numpy1_fixtures.py --kpr-repo /tmp/kpr_src

The torchreid files' configs are the KPR repository's own: ``get_default_config()`` merged with
configs/kpr/{imagenet,solider}/kpr_occ_posetrack_test.yaml, as its main.py builds them (without a
checkout: only the KPR_IN file, with a small hand-written CfgNode of the keys kprtrack reads).

Published KPR (torchreid), mmpose and YOLOX/ByteTrack checkpoints were saved under numpy 1.x, so
their numpy values are pickled as ``numpy.core.multiarray.scalar`` / ``_reconstruct``. The files
here keep each upstream top-level structure (training state, optimizer/scheduler state, configs
and metadata with numpy scalars and arrays) with a handful of tiny tensors instead of a network:
tests check that kprtrack's loaders read them under numpy 2 with ``weights_only=True``.
Structures (from the upstream saving code):
- torchreid ``Engine.save_model``: state_dict (DataParallel ``module.`` keys), epoch, rank1, mAP,
  ssmd, config (yacs CfgNode), optimizer and scheduler state dicts;
- mmengine ``Runner.save_checkpoint`` + mmpose ``publish_model`` (mmpose 1.x): meta (cfg text,
  seed, time, mmengine version, epoch, iter, dataset_meta with numpy arrays) and state_dict;
- mmcv runner (mmpose 0.x): meta (mmcv version, config text, epoch, iter, hook_msgs with a numpy
  best score) and state_dict;
- YOLOX / ByteTrack trainers: start_epoch, model, optimizer (and YOLOX's best_ap).
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "numpy1"
POSETRACK = ("nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle")
COCO = ("nose", "left_eye", "right_eye") + POSETRACK[3:]


def tensors(keys: dict[str, tuple[int, ...]], seed: int) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(shape, generator=g)) for k, shape in keys.items())


def trained_optimizer_and_scheduler(kind: str):
    """Real optimizer/scheduler state after one step (their state dicts are what trainers save)."""
    layer = torch.nn.Linear(3, 2)
    opt = (torch.optim.Adam(layer.parameters(), lr=8e-3) if kind == "adam"
           else torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9, nesterov=True))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=120)
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    return opt.state_dict(), sched.state_dict()


def torchreid_config():
    from yacs.config import CfgNode  # only this file needs yacs (tests import the others)

    cfg = CfgNode()
    cfg.project = CfgNode({"name": "KPR", "job_id": 42323828, "start_time": "2024_03_01"})
    cfg.model = CfgNode()
    cfg.model.name = "kpr"
    cfg.model.kpr = CfgNode({"backbone": "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k",
                             "dim_reduce": "after_pooling", "dim_reduce_output": 512, "enable_msf": True,
                             "test_embeddings": ["bn_foreg", "parts"]})
    cfg.model.kpr.keypoints = CfgNode({"prompt_masks": "keypoints_gaussian", "prompt_preprocess": "cck8",
                                       "use_negative_keypoints": True, "vis_thresh": 0.3})
    cfg.model.kpr.masks = CfgNode({"preprocess": "eight", "parts_num": 8})
    cfg.data = CfgNode({"height": 256, "width": 128, "norm_mean": [0.485, 0.456, 0.406],
                        "norm_std": [0.229, 0.224, 0.225], "sources": ["occ_PoseTrack21"]})
    # yacs refuses numpy values in a CfgNode: the numpy scalars of a torchreid file are top-level.
    cfg.train = CfgNode({"lr": 0.008, "batch_size": 64, "max_epoch": 120})
    return cfg


def upstream_torchreid_config(repo: Path, test_config: str):
    """The KPR repository's default config tree + one of its test configs, as main.py merges them."""
    import types

    for name in ("torchreid", "torchreid.utils", "torchreid.scripts"):  # skip the packages' heavy __init__
        module = types.ModuleType(name)
        module.__path__ = [str(repo / name.replace(".", "/"))]
        sys.modules[name] = module
    sys.path.insert(0, str(repo))
    from torchreid.scripts.default_config import get_default_config  # yacs, deepdiff and constants only

    cfg = get_default_config()
    cfg.merge_from_file(str(repo / "configs" / "kpr" / test_config))
    # What torchreid.data.compute_parts_num_and_names sets at start-up, before any checkpoint is
    # saved (it needs the whole data stack to import): K from masks.preprocess, prompt parts from
    # keypoints.prompt_preprocess. Both test configs use 'eight' and 'cck8'.
    assert cfg.model.kpr.masks.preprocess == "eight" and cfg.model.kpr.keypoints.prompt_preprocess == "cck8"
    cfg.model.kpr.masks.parts_num = 8
    cfg.model.kpr.masks.prompt_parts_num = 8
    return cfg


def torchreid_checkpoint(config=None) -> dict:
    optimizer, scheduler = trained_optimizer_and_scheduler("adam")
    state = tensors({"module.backbone_appearance_feature_extractor.parts_embed": (10, 1, 4),
                     "module.pixel_classifier.classifier.weight": (9, 4, 1, 1),
                     "module.parts_after_pooling_dim_reduce.layers.0.weight": (6, 4)}, seed=1)
    cmc = np.array([0.9233, 0.95, 0.97], dtype=np.float32)
    return {"state_dict": state, "epoch": 120, "rank1": cmc[0], "mAP": np.float64(0.8234),
            "ssmd": np.float64(1.25), "config": config if config is not None else torchreid_config(),
            "optimizer": optimizer, "scheduler": scheduler}


def dataset_meta(names: tuple[str, ...], dataset: str) -> dict:
    """The parts of mmpose's parsed dataset meta that hold numpy arrays and id maps."""
    n = len(names)
    return {"dataset_name": dataset, "num_keypoints": n, "keypoint_id2name": dict(enumerate(names)),
            "keypoint_name2id": {name: i for i, name in enumerate(names)},
            "upper_body_ids": list(range(11)), "lower_body_ids": list(range(11, n)),
            "flip_indices": [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15],
            "flip_pairs": [[1, 2], [3, 4], [5, 6]], "keypoint_colors": np.full((n, 3), 51, np.uint8),
            "num_skeleton_links": 2, "skeleton_links": [(15, 13), (13, 11)],
            "skeleton_link_colors": np.zeros((2, 3), np.uint8),
            "dataset_keypoint_weights": np.ones(n, np.float32),
            "sigmas": np.linspace(0.026, 0.089, n).astype(np.float32)}


def mmpose1_checkpoint(names, dataset: str) -> dict:
    state = tensors({"backbone.conv1.weight": (2, 3, 3, 3), "head.final_layer.weight": (17, 2, 1, 1),
                     "head.final_layer.bias": (17,)}, seed=2)
    meta = {"cfg": f"dataset_type = 'CocoDataset'\ndata_root = 'data/{dataset}/'\n", "seed": 0,
            "experiment_name": "td-hm_hrnet-w32_8xb64-210e_coco-256x192_20220909", "time": "20220909_120000",
            "mmengine_version": "0.1.0", "epoch": 210, "iter": np.int64(366660),
            "dataset_meta": dataset_meta(names, dataset)}
    return {"meta": meta, "state_dict": state}


def mmpose0_checkpoint() -> dict:
    state = tensors({"backbone.conv1.weight": (2, 3, 3, 3), "keypoint_head.final_layer.weight": (17, 2, 1, 1),
                     "keypoint_head.final_layer.bias": (17,)}, seed=3)
    config = ("dataset_type = 'TopDownPoseTrack18Dataset'\n"
              "data = dict(train=dict(type='TopDownPoseTrack18Dataset', ann_file='data/posetrack18/"
              "annotations/posetrack18_train.json'))\n")
    meta = {"mmcv_version": "1.1.1", "time": "Wed Oct 28 10:00:00 2020", "env_info": "sys.platform: linux",
            "seed": 0, "config": config, "epoch": 20, "iter": 9940,
            "hook_msgs": {"last_ckpt": "work_dirs/epoch_20.pth", "best_score": np.float64(0.774),
                          "best_ckpt": "work_dirs/best_AP_epoch_20.pth"}}
    return {"meta": meta, "state_dict": state}


def yolox_checkpoint(bytetrack: bool) -> dict:
    optimizer, _ = trained_optimizer_and_scheduler("sgd")
    classes = 1 if bytetrack else 80
    state = tensors({"backbone.backbone.stem.conv.conv.weight": (2, 12, 3, 3),
                     "head.cls_preds.0.weight": (classes, 2, 1, 1)}, seed=4)
    checkpoint = {"start_epoch": 80 if bytetrack else 300, "model": state, "optimizer": optimizer}
    if not bytetrack:
        checkpoint["best_ap"] = np.float64(25.8)  # COCOeval's stats are numpy floats
    return checkpoint


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kpr-repo", type=Path, help="checkout of the KPR repository, for its real config tree")
    args = parser.parse_args()
    if int(np.__version__.split(".")[0]) >= 2:
        print(f"run this under numpy < 2 (found {np.__version__}): the point is numpy 1.x pickles", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "torchreid_kpr.pth.tar": torchreid_checkpoint(
            upstream_torchreid_config(args.kpr_repo, "imagenet/kpr_occ_posetrack_test.yaml") if args.kpr_repo else None),
        "mmpose1_hrnet_coco.pth": mmpose1_checkpoint(COCO, "coco"),
        "mmpose1_hrnet_posetrack18.pth": mmpose1_checkpoint(POSETRACK, "posetrack18"),
        "mmpose0_hrnet_posetrack18.pth": mmpose0_checkpoint(),
        "yolox_coco.pth": yolox_checkpoint(bytetrack=False),
        "bytetrack_mot17.pth.tar": yolox_checkpoint(bytetrack=True),
    }
    if args.kpr_repo:  # KPR_SOL's file: the same layout, SOLIDER's test config
        files["torchreid_kpr_sol.pth.tar"] = torchreid_checkpoint(
            upstream_torchreid_config(args.kpr_repo, "solider/kpr_occ_posetrack_test.yaml"))
    for name, payload in files.items():
        torch.save(payload, OUT / name)
        print(f"{OUT / name}: {(OUT / name).stat().st_size} bytes (numpy {np.__version__}, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
