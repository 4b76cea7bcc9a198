"""train-pose task: loss, model start weights, a few Adam steps on real and demo data."""
from __future__ import annotations

import pickle

import pytest
import torch
from omegaconf import OmegaConf

from kprtrack.errors import InputError
from kprtrack.train.pose.loss import KeypointMSELoss
from kprtrack.train.pose.task import PoseTask
from tests.conftest import shared_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from kprtrack.data.demo import generate_demo

    root = tmp_path_factory.mktemp("pose_task_demo")
    generate_demo(root, num_sequences=1, num_frames=30, width=320, height=192)
    return root


def _cfg(root=None, **model):
    return OmegaConf.create({
        "model": {"weights": None, "arch": "w32", **model},
        "data": {"root": None if root is None else str(root), "split": "val", "annotations_dir": "posetrack_data",
                 "input_size": [64, 64], "codec": "msra", "sigma": 2.0},
        "aug": {}, "eval": {}})


def test_keypoint_mse_loss_is_mmpose_1x():
    g = torch.Generator().manual_seed(0)
    out, target = torch.rand(2, 3, 4, 5, generator=g), torch.rand(2, 3, 4, 5, generator=g)
    weights = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    loss = KeypointMSELoss(use_target_weight=True)(out, target, weights)
    expected = (((out - target) ** 2) * weights[:, :, None, None]).mean()  # no 0.5, mean over all joints
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(KeypointMSELoss(False)(out, target, weights)) == pytest.approx(float(((out - target) ** 2).mean()))
    # a joint with weight 0 contributes nothing, whatever its output
    moved = out.clone()
    moved[0, 1] += 5
    assert float(KeypointMSELoss()(moved, target, weights)) == pytest.approx(float(loss), rel=1e-6)
    assert KeypointMSELoss()(out.half(), target, weights).dtype == torch.float32


def test_config_errors_are_input_errors(demo_root):
    with pytest.raises(InputError, match="codec"):
        PoseTask(OmegaConf.merge(_cfg(demo_root), {"data": {"codec": "dark"}}))
    with pytest.raises(InputError, match="multiples of 32"):
        PoseTask(OmegaConf.merge(_cfg(demo_root), {"data": {"input_size": [64, 48]}}))
    with pytest.raises(InputError, match="data.root"):
        PoseTask(_cfg()).build_dataset()
    with pytest.raises(InputError, match="head_init"):
        PoseTask(_cfg(demo_root, head_init="zero")).build_model()


def _steps(task, items, steps=6, lr=1e-3):
    torch.manual_seed(0)
    model = task.build_model()
    groups = task.param_groups(model)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0
    assert sum(p.numel() for p in groups[0]["params"]) == sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(groups, lr=lr)
    collate = pickle.loads(pickle.dumps(task.make_collate(items, seed=3, epoch=0)))
    batch = collate(items)  # one augmented batch, fitted for a few steps
    losses = []
    for _ in range(steps):
        total, terms = task.loss(model, batch, 0)
        assert set(terms) == {"mse"} and not terms["mse"].requires_grad
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(float(total.detach()))
    return losses


@pytest.mark.slow
def test_adam_steps_lower_the_loss_on_demo_data(demo_root):
    task = PoseTask(_cfg(demo_root))
    assert task.name == "train-pose"
    items = task.build_dataset()
    losses = _steps(task, list(items[::37])[:4])
    assert losses[-1] < 0.75 * losses[0], losses


@pytest.mark.slow
def test_adam_steps_lower_the_loss_on_posetrack18():
    root = shared_file("data/posetrack18/annotations/val").parent.parent
    cfg = _cfg(root)
    cfg.data.annotations_dir = "annotations"
    cfg.data.codec = "udp"
    task = PoseTask(cfg)
    items = task.build_dataset()
    assert len(items) >= 3
    losses = _steps(task, list(items)[:3])
    assert losses[-1] < 0.75 * losses[0], losses


def _fake_coco_checkpoint(path):
    """A random W32 in mmpose 1.x's layout, saying it was trained on COCO."""
    from kprtrack.pose.hrnet_net import PoseHighResolutionNet

    torch.manual_seed(1)
    net = PoseHighResolutionNet("w32")
    state = {("head.final_layer." + k[len("final_layer."):] if k.startswith("final_layer.") else "backbone." + k): v
             for k, v in net.state_dict().items()}
    torch.save({"meta": {"dataset_meta": {"dataset_name": "coco"}}, "state_dict": state}, path)
    return net


@pytest.mark.slow
def test_coco_start_weights_and_head_rows(demo_root, tmp_path):
    path = tmp_path / "coco_w32.pth"
    source = _fake_coco_checkpoint(path)
    kept = PoseTask(_cfg(demo_root, weights=str(path), arch=None, download=False))
    model = kept.build_model()
    assert model.training and kept.arch == "w32" and kept.start_layout == "coco"
    # the 15 joints COCO and PoseTrack share sit at the same rows; eyes -> head_bottom/head_top as loaded
    torch.testing.assert_close(model.final_layer.weight, source.final_layer.weight)
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    reset = PoseTask(_cfg(demo_root, weights=str(path), arch=None, download=False, head_init="reset")).build_model()
    shared = [0] + list(range(3, 17))
    torch.testing.assert_close(reset.final_layer.weight[shared], source.final_layer.weight[shared])
    head = reset.final_layer.weight.detach()
    assert float(head[1:3].abs().max()) < 0.01 and not reset.final_layer.bias[1:3].any()
    assert not torch.equal(reset.final_layer.weight[1:3], source.final_layer.weight[1:3])
    with pytest.raises(InputError, match="model.arch=w48 but the checkpoint is HRNet-W32"):
        PoseTask(_cfg(demo_root, weights=str(path), arch="w48", download=False)).build_model()


@pytest.mark.slow
def test_checkpoint_round_trip_through_pose_eval(demo_root, tmp_path):
    pytest.importorskip("kprtrack.train.pose.checkpoint", reason="pose-eval's checkpoint module not there yet")
    from kprtrack.pose.hrnet import HRNetPose

    task = PoseTask(_cfg(demo_root))
    torch.manual_seed(0)
    model = task.build_model()
    path = tmp_path / "last.pth"
    task.save_checkpoint(path, model, {"epoch": 1, "note": "x"})
    state, training = task.read_checkpoint(path)
    assert training == {"epoch": 1, "note": "x"}
    assert set(state) == set(model.state_dict())  # what the engine's resume loads strictly
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key
    loaded = HRNetPose(weights=str(path), input_size=(64, 64), device="cpu", download=False)
    assert loaded.layout == "posetrack" and loaded.arch == "w32" and loaded.report.ok
