"""Fine-tuned HRNet checkpoints in mmpose 1.x's layout, which ``pose=hrnet`` (:class:`HRNetPose`) loads.

File (``torch.save``, written atomically)::

    {"state_dict": {"backbone.*": ..., "head.final_layer.*": ...},   # mmpose 1.x key names
     "meta": {"dataset_meta": {"dataset_name": "posetrack21", "keypoint_id2name": {0: "nose",
                               1: "head_bottom", ...}, ...},          # as mmpose 1.x stores it
              "kprtrack": {"arch": "w32", "input_size": [256, 192], "codec": "msra" | "udp",
                           "layout": "posetrack"}},
     "kprtrack_training": {...}}                                       # optimiser, epoch, EMA...

``HRNetPose`` reads the input size (h, w), the joint layout and, for ``codec: udp``, the UDP
decoding from ``meta["kprtrack"]`` (``kprtrack.pose.hrnet_checkpoint``); mmpose 1.x reads the
weights and ``dataset_meta``. Our model's keys are the original HRNet names
(:class:`kprtrack.pose.hrnet_net.PoseHighResolutionNet`); the mapping to mmpose's is
``hrnet_checkpoint.to_mmpose1_keys`` and back ``hrnet_checkpoint.adapt_keys``.
"""
from __future__ import annotations

from pathlib import Path

from kprtrack.errors import InputError
from kprtrack.pose.hrnet_checkpoint import (adapt_keys, kprtrack_meta, read_checkpoint, split_checkpoint,
                                            to_mmpose1_keys)
from kprtrack.pose.layouts import FLIP_PAIRS, flip_index
from kprtrack.record import POSETRACK_KEYPOINTS, POSETRACK_SKELETON
from kprtrack.train.pose.targets import CODECS

ARCHS = ("w32", "w48")
TRAINING_KEY = "kprtrack_training"


def posetrack_dataset_meta() -> dict:
    """mmpose 1.x ``dataset_meta`` for PoseTrack's 17 joints (plain Python values only)."""
    return {
        "dataset_name": "posetrack21",
        "num_keypoints": len(POSETRACK_KEYPOINTS),
        "keypoint_id2name": dict(enumerate(POSETRACK_KEYPOINTS)),
        "keypoint_name2id": {name: i for i, name in enumerate(POSETRACK_KEYPOINTS)},
        "flip_indices": [int(i) for i in flip_index("posetrack")],
        "flip_pairs": [list(pair) for pair in FLIP_PAIRS["posetrack"]],
        "skeleton_links": [[a - 1, b - 1] for a, b in POSETRACK_SKELETON],  # 0-based, as mmpose's
    }


def save_pose_checkpoint(path: str | Path, state_dict: dict, arch: str, input_size, codec: str,
                         training_state: dict | None = None) -> Path:
    """Write ``state_dict`` (our model's keys; a DDP ``module.`` prefix is dropped) as an mmpose 1.x
    checkpoint with kprtrack's meta and ``training_state`` under ``"kprtrack_training"``, atomically.
    ``input_size`` is (height, width)."""
    import torch

    from kprtrack.io import atomic_open

    if arch not in ARCHS:
        raise InputError(f"HRNet arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if codec not in CODECS:
        raise InputError(f"pose heatmap codec must be one of {', '.join(sorted(CODECS))}, got {codec!r}")
    size = [int(v) for v in input_size]
    if len(size) != 2:
        raise InputError(f"input_size must be [height, width], got {list(input_size)}")
    mmpose = {key: value.detach().cpu() if torch.is_tensor(value) else value
              for key, value in to_mmpose1_keys(state_dict).items()}
    back, fmt = adapt_keys(mmpose)
    ours = {k[len("module."):] if k.startswith("module.") else k for k in state_dict}
    if fmt != "mmpose1" or set(back) != ours:  # the two mappings must stay each other's inverse
        raise InputError(f"not an HRNet state dict (no final_layer.* keys, or keys that do not map back: "
                         f"{sorted(set(back) ^ ours)[:5]})", path)
    obj = {
        "state_dict": mmpose,
        "meta": {"dataset_meta": posetrack_dataset_meta(),
                 "kprtrack": {"arch": arch, "input_size": size, "codec": codec, "layout": "posetrack"}},
        TRAINING_KEY: dict(training_state or {}),
    }
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return path


def read_pose_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state dict in our model's keys, training_state) of a file written by :func:`save_pose_checkpoint`.

    Any HRNet checkpoint ``pose=hrnet`` reads is accepted (mmpose 1.x / 0.x, original release);
    its training_state is {} when it has none."""
    from kprtrack.weights import torch_load

    obj = torch_load(path)
    state, _ = split_checkpoint(obj, path)
    ours, fmt = adapt_keys(state)
    if fmt == "unknown":
        raise InputError("no HRNet head found (expected head.final_layer.*, keypoint_head.final_layer.* "
                         "or final_layer.* keys)", path)
    training = obj.get(TRAINING_KEY)
    return ours, dict(training) if isinstance(training, dict) else {}


def checkpoint_meta(path: str | Path) -> dict:
    """``meta["kprtrack"]`` of a fine-tuned checkpoint (arch, input_size, codec, layout); {} for other files."""
    return dict(kprtrack_meta(read_checkpoint(path)[1]))
