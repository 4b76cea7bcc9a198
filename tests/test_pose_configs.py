"""The pose config group composes and instantiates through Hydra (constructor kwargs = config keys)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from kprtrack.config import compose, instantiate
from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from tests.conftest import shared_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name, cls_path", [
    ("hrnet", "kprtrack.pose.hrnet.HRNetPose"),
    ("movenet", "kprtrack.pose.movenet.MoveNetPose"),
    ("mmpose", "kprtrack.pose.mmpose_topdown.MMPoseTopDown"),
])
def test_config_keys_are_constructor_kwargs(name, cls_path):
    import importlib

    # pose=mmpose has mandatory values (???): composing now requires them
    mandatory = ["pose.config=model.py", "pose.checkpoint=model.pth"] if name == "mmpose" else []
    cfg = compose(f"pose/{name}", mandatory)
    node = cfg.pose
    assert node._target_ == cls_path
    module, cls = cls_path.rsplit(".", 1)
    params = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
    keys = {k for k in node.keys() if k != "_target_"}
    assert keys == set(params), (keys ^ set(params))


def test_instantiate_hrnet_random_init_and_run():
    cfg = compose("pose/hrnet", ["pose.weights=null", "pose.flip_test=false", "pose.input_size=[128,96]"])
    est = instantiate(cfg.pose)
    frame = Frame("s", 0, np.zeros((120, 100, 3), np.uint8))
    out = est.estimate(frame, Detections(np.array([[10, 10, 60, 110]], np.float32), np.ones(1)))
    assert out.keypoints.shape == (1, 17, 3)


def test_instantiate_movenet_from_shared_model():
    pytest.importorskip("ai_edge_litert")
    model = shared_file("models/movenet_singlepose_lightning_int8.tflite")
    cfg = compose("pose/movenet", [f"pose.weights={model}"])
    est = instantiate(cfg.pose)
    assert est.input_size == (192, 192)


def test_bad_values_are_input_errors():
    with pytest.raises(InputError, match="layout"):
        instantiate(compose("pose/hrnet", ["pose.weights=null", "pose.layout=mpii"]).pose)
    with pytest.raises(InputError, match="decode"):
        instantiate(compose("pose/hrnet", ["pose.weights=null", "pose.decode=soft"]).pose)
