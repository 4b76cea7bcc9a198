"""pose=mmpose: the "not installed" message, our glue around mmpose's API, and (where mmpose is
installed) a cross-check of mmpose against our own HRNet on the same weights."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from kprtrack.errors import InputError, MissingModelError
from kprtrack.pose.hrnet_net import PoseHighResolutionNet
from kprtrack.pose.layouts import COCO_KEYPOINTS
from kprtrack.record import POSETRACK_KEYPOINTS, Detections, Frame


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mmpose_checkpoint(path: Path, names=COCO_KEYPOINTS) -> Path:
    torch.manual_seed(0)
    state = PoseHighResolutionNet("w32").state_dict()
    upstream = {("head." if k.startswith("final_layer") else "backbone.") + k: v for k, v in state.items()}
    meta = {"dataset_meta": {"keypoint_id2name": dict(enumerate(names)),
                             "sigmas": np.ones(17, np.float32)}}
    torch.save({"meta": meta, "state_dict": upstream}, path)
    return path


def test_not_installed_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mmpose", None)
    monkeypatch.setitem(sys.modules, "mmpose.apis", None)
    from kprtrack.pose.mmpose_topdown import MMPoseTopDown

    with pytest.raises(MissingModelError, match=r"pip install 'kprtrack\[mmpose\]'"):
        MMPoseTopDown(config="x.py", checkpoint="y.pth")


class _FakeModel(torch.nn.Module):
    """Stands in for an mmpose estimator: only what our glue touches (load_state_dict, dataset_meta)."""

    def __init__(self):
        super().__init__()
        self.net = PoseHighResolutionNet("w32")
        self.dataset_meta = {"keypoint_id2name": dict(enumerate(POSETRACK_KEYPOINTS))}

    def load_state_dict(self, state, strict=True):
        return super().load_state_dict({"net." + k.split(".", 1)[1]: v for k, v in state.items()},
                                       strict=strict)


@pytest.fixture
def fake_mmpose(monkeypatch):
    calls = []

    def init_model(config, checkpoint=None, device="cpu"):
        assert checkpoint is None  # we load the weights ourselves (torch >= 2.6 weights_only)
        return _FakeModel()

    def inference_topdown(model, img, bboxes=None, bbox_format="xyxy"):
        calls.append(np.array(bboxes))
        samples = []
        for box in bboxes:  # keypoint k at the box's top-left + k px, score k / 17
            kpts = np.stack([box[0] + np.arange(17), box[1] + np.arange(17)], axis=1)[None]
            pred = types.SimpleNamespace(keypoints=kpts, keypoint_scores=(np.arange(17) / 17)[None])
            samples.append(types.SimpleNamespace(pred_instances=pred))
        return samples

    apis = types.ModuleType("mmpose.apis")
    apis.init_model, apis.inference_topdown = init_model, inference_topdown
    monkeypatch.setitem(sys.modules, "mmpose", types.ModuleType("mmpose"))
    monkeypatch.setitem(sys.modules, "mmpose.apis", apis)
    return calls


def test_glue_filters_boxes_and_reads_meta(fake_mmpose, tmp_path, monkeypatch):
    from kprtrack.pose import layouts
    from kprtrack.pose.mmpose_topdown import MMPoseTopDown

    monkeypatch.setattr(layouts, "_warned", set())

    ckpt = _mmpose_checkpoint(tmp_path / "m.pth")  # meta says COCO, overriding the config's
    est = MMPoseTopDown(config="cfg.py", checkpoint=str(ckpt))
    assert est.layout == "coco"
    frame = Frame("s", 0, np.zeros((100, 100, 3), np.uint8))
    with pytest.warns(UserWarning, match="head_bottom"):  # COCO model: warned once
        assert est.estimate(frame, Detections.empty()).keypoints.shape == (0, 17, 3)
    assert fake_mmpose == []  # mmpose would treat "no boxes" as one whole-image person
    boxes = np.array([[np.nan, 0, 5, 5], [10, 20, 40, 90], [300, 300, 400, 400]], np.float32)
    out = est.estimate(frame, Detections(boxes, np.ones(3))).keypoints
    assert len(fake_mmpose) == 1 and fake_mmpose[0].shape == (1, 4)
    assert (out[[0, 2]] == 0).all()
    assert out[1, 5].tolist() == pytest.approx([15, 25, 5 / 17])
    assert out[1, 0].tolist() == pytest.approx([10, 20, 0])


def test_glue_rejects_other_skeletons_and_bad_weights(fake_mmpose, tmp_path):
    from kprtrack.pose.mmpose_topdown import MMPoseTopDown

    hand = _mmpose_checkpoint(tmp_path / "hand.pth", names=[f"joint{i}" for i in range(17)])
    with pytest.raises(InputError, match="COCO-17 or PoseTrack-17"):
        MMPoseTopDown(config="cfg.py", checkpoint=str(hand))
    partial = tmp_path / "partial.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(64, 3, 3, 3)}}, partial)
    with pytest.raises(InputError, match="missing keys"):
        MMPoseTopDown(config="cfg.py", checkpoint=str(partial))


def _mmpose_config(name: str) -> Path:
    import mmpose

    root = Path(mmpose.__file__).parent
    for base in (root / ".mim" / "configs", root.parent / "configs"):
        found = list(base.rglob(name)) if base.is_dir() else []
        if found:
            return found[0]
    pytest.skip(f"mmpose config {name} not found in the mmpose installation")


@pytest.mark.slow
def test_real_mmpose_matches_our_hrnet(tmp_path):
    pytest.importorskip("mmpose.apis", reason="mmpose is not installed (optional extra kprtrack[mmpose])")
    from kprtrack.pose.hrnet import HRNetPose
    from kprtrack.pose.mmpose_topdown import MMPoseTopDown

    ckpt = _mmpose_checkpoint(tmp_path / "w32.pth")
    config = _mmpose_config("td-hm_hrnet-w32_8xb64-210e_coco-256x192.py")
    theirs = MMPoseTopDown(config=str(config), checkpoint=str(ckpt))
    ours = HRNetPose(weights=str(ckpt), flip_test=True, device="cpu")
    rng = np.random.default_rng(0)
    frame = Frame("s", 0, rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    dets = Detections(np.array([[20, 10, 120, 230], [150, 40, 300, 200]], np.float32), np.ones(2))
    a = theirs.estimate(frame, dets).keypoints
    b = ours.estimate(frame, dets).keypoints
    np.testing.assert_allclose(a[..., 2], b[..., 2], atol=1e-3)
    assert np.median(np.abs(a[..., :2] - b[..., :2])) < 1.0
