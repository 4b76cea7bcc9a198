"""Each stage YAML (configs/{detector,pose,reid,tracker}/*.yaml) and its class's constructor agree on
every default they both state, so that building a stage in Python gives what the YAML runs, except
where the YAML deliberately differs (ALLOWED below, with the reason)."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("detector", "pose", "reid", "tracker")

# (group/config, key): why the YAML deliberately sets another value than the constructor's default.
ALLOWED = {
    ("reid/kpr_multi", "weights"): "a variant of reid=kpr: names its own checkpoint",
    ("reid/kpr_multi", "parts"): "TrackLab's settings for the kpr_multi checkpoint (5 parts)",
    ("reid/kpr_multi", "prompt_parts"): "TrackLab's settings for the kpr_multi checkpoint (6 prompt groups)",
    ("reid/kpr_multi", "config_conflicts"): "kpr_multi takes the other settings from its stored config",
    ("reid/kpr_sol", "weights"): "a variant of reid=kpr: names its SOLIDER checkpoint",
    ("reid/kpr_sol", "backbone"): "the SOLIDER checkpoints' Swin-B backbone",
    ("reid/kpr_sol", "height"): "the SOLIDER checkpoints were trained at 384x128",
    ("reid/kpr_sol", "mean"): "the SOLIDER checkpoints' normalisation",
    ("reid/kpr_sol", "std"): "the SOLIDER checkpoints' normalisation",
    ("reid/osnet", "model"): "a variant of reid=onnx: names the OSNet export",
    ("reid/osnet", "color"): "OSNet (torchreid) is trained on RGB",
    ("reid/osnet", "scale"): "OSNet takes 0-1 pixels, then ImageNet mean/std",
    ("reid/osnet", "mean"): "OSNet's ImageNet normalisation",
    ("reid/osnet", "std"): "OSNet's ImageNet normalisation",
    ("detector/yolox_nano_onnx", "weights"): "a variant of detector=yolox_onnx: names YOLOX-nano (preset=fast)",
    ("tracker/kprtrack_video", "det_high_thresh"): "generic video variant, tuned on PETS09 (see its YAML)",
    ("tracker/kprtrack_video", "new_track_thresh"): "generic video variant, tuned on PETS09 (see its YAML)",
    ("tracker/kprtrack_video", "kalman"): "generic video variant: the motion cue is on",
    ("tracker/kprtrack_video", "motion_gate"): "generic video variant: the motion cue is on",
    ("tracker/kprtrack_video", "iou_weight"): "generic video variant: IoU tie-breaker",
    ("tracker/kprtrack_video", "track_buffer"): "generic video variant: ByteTrack's 30 frames",
}


def _load(group: str, name: str):
    """The group config as Hydra composes it: its `defaults` (same group) merged in order with _self_."""
    own = OmegaConf.load(CONFIGS / group / f"{name}.yaml")
    defaults = own.pop("defaults", None)
    if defaults is None:
        return own
    merged = OmegaConf.create()
    for entry in defaults:
        merged = OmegaConf.merge(merged, own if entry == "_self_" else _load(group, str(entry)))
    if "_self_" not in defaults:
        merged = OmegaConf.merge(merged, own)
    return merged


def _configs():
    return [(group, path.stem) for group in GROUPS for path in sorted((CONFIGS / group).glob("*.yaml"))]


def _resolve(target: str):
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as error:  # an optional extra that is not installed
        pytest.skip(f"{target} cannot be imported here ({error}); its extra is not installed")


def _same(yaml_value, default) -> bool:
    if isinstance(yaml_value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(yaml_value) == len(default) and all(_same(a, b) for a, b in zip(yaml_value, default))
    if isinstance(yaml_value, float) or isinstance(default, float):
        return isinstance(yaml_value, (int, float)) and isinstance(default, (int, float)) and \
            float(yaml_value) == float(default) and type(yaml_value) is not bool and type(default) is not bool
    return type(yaml_value) is type(default) and yaml_value == default


def test_every_stage_config_is_checked():
    configs = _configs()
    assert len(configs) >= 15 and all((group, name) in configs for group, name in
                                      [("detector", "yolox"), ("pose", "hrnet"), ("reid", "kpr"), ("tracker", "kprtrack")])


def test_allow_list_names_existing_keys_that_still_differ():
    """A stale entry (key gone, or the values agree again) must be removed from ALLOWED."""
    for (config, key), reason in ALLOWED.items():
        group, name = config.split("/")
        cfg = _load(group, name)
        assert key in cfg, f"ALLOWED names {config}.{key}, which the YAML does not set"
        assert reason.strip(), f"ALLOWED {config}.{key} needs a reason"


@pytest.mark.parametrize("group,name", _configs(), ids=lambda value: value)
def test_yaml_values_equal_the_constructor_defaults(group, name):
    cfg = _load(group, name)
    if "_target_" not in cfg:
        pytest.skip(f"{group}/{name}.yaml has no _target_")
    parameters = inspect.signature(_resolve(cfg._target_)).parameters
    container = OmegaConf.to_container(cfg, resolve=False)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [key for key in container if not key.startswith("_") and key not in parameters]
    assert takes_any or not unknown, f"{group}/{name}.yaml sets keys {cfg._target_} does not take: {unknown}"
    mismatches, allowed_but_equal = [], []
    for key, value in container.items():
        if key.startswith("_") or OmegaConf.is_missing(cfg, key):
            continue
        parameter = parameters.get(key)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            continue
        same = _same(value, parameter.default)
        if (f"{group}/{name}", key) in ALLOWED:
            if same:
                allowed_but_equal.append(key)
        elif not same:
            mismatches.append(f"{group}/{name}.yaml {key}: YAML {value!r} != constructor {parameter.default!r}")
    assert not mismatches, "YAML and constructor defaults differ (fix the constructor or add to ALLOWED " \
                           "with a reason):\n" + "\n".join(mismatches)
    assert not allowed_but_equal, f"{group}/{name}: ALLOWED but equal now, remove: {allowed_but_equal}"
