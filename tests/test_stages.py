"""The stage contracts (kprtrack/stages.py): every shipped backend declares what the pipeline reads,
and a composition that cannot work is refused before any frame is decoded, with one message."""
from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from kprtrack.stages import (GROUND_TRUTH, IMAGE, Dataset, Detector, PoseEstimator, ReID, Tracker, Writer,
                             check_composition, needs_images, protocol_members)

REPO = Path(__file__).resolve().parent.parent
HERE = "test_stages"
PROTOCOL_OF_GROUP = {"detector": Detector, "pose": PoseEstimator, "reid": ReID, "tracker": Tracker}


def _targets():
    """(choice, protocol, _target_) of every shipped stage, data set and writer config, as composed."""
    from kprtrack.config import compose

    for group, protocol in [*PROTOCOL_OF_GROUP.items(), ("dataset", Dataset)]:
        for path in sorted((REPO / "configs" / group).glob("*.yaml")):
            cfg = compose("run", [f"{group}={path.stem}"], require_values=False)
            yield f"{group}={path.stem}", protocol, cfg[group]["_target_"]
    for name, node in compose("run", [], require_values=False).output.writers.items():
        yield f"output.writers.{name}", Writer, node["_target_"]


def _declares(cls: type, name: str) -> bool:
    """A class attribute or property, or ``self.<name> =`` in the constructor of the class or a base."""
    if hasattr(cls, name):
        return True
    pattern = re.compile(rf"self\.{name}\s*(:[^=]*)?=[^=]")
    for base in cls.__mro__:
        init = vars(base).get("__init__")
        if init is not None and pattern.search(inspect.getsource(init)):
            return True
    return False


@pytest.mark.parametrize("where,protocol,target", list(_targets()), ids=lambda v: str(v).split(".")[-1].split("=")[-1])
def test_every_shipped_backend_declares_its_contract(where, protocol, target):
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:  # an optional extra (mmpose, LiteRT) that is not installed
        pytest.skip(f"{where}: {err}")
    cls = getattr(module, attr)
    if not inspect.isclass(cls):  # a factory (demo_dataset): it returns a declared class, checked by its run
        cls = inspect.signature(cls).return_annotation
        cls = getattr(module, cls) if isinstance(cls, str) else cls
    missing = [name for name in protocol_members(protocol) if not _declares(cls, name)]
    assert not missing, f"{where}: {target} lacks {missing} of {protocol.__name__}"


# --------------------------------------------------------------------------- check_composition
class _Stage:
    weights_path = None

    def __init__(self, requires=(), provides=()):
        self.requires, self.provides = frozenset(requires), frozenset(provides)

    def detect(self, frames): ...
    def estimate(self, frame, detections): ...
    def embed(self, frame, detections): ...


def _dataset(gt: bool):
    return SimpleNamespace(has_ground_truth=gt, gt_dir=None, path=None, files=None, sequences=lambda: iter(()))


def _tracker(appearance: bool):
    from kprtrack.tracker import KPRTracker

    return KPRTracker(appearance_weight=1.0 if appearance else 0.0, iou_weight=0.0 if appearance else 1.0)


def _chain(detector, pose, reid, tracker, writers=()):
    return [("detector", detector, Detector), ("pose", pose, PoseEstimator), ("reid", reid, ReID),
            ("tracker", tracker, Tracker), *((f"writer {i}", w, Writer) for i, w in enumerate(writers))]


DETECTOR = _Stage({IMAGE}, {"boxes", "scores"})
POSE = _Stage({IMAGE, "boxes"}, {"keypoints"})
REID = _Stage({IMAGE, "boxes", "keypoints"}, {"embeddings", "visibility"})


def test_a_working_composition_passes():
    from kprtrack.render import VideoRenderWriter
    from kprtrack.writers import MotWriter, PoseTrackWriter

    writers = [PoseTrackWriter("/nowhere"), MotWriter("/nowhere"), VideoRenderWriter("/nowhere")]
    check_composition(_dataset(False), _chain(DETECTOR, POSE, REID, _tracker(True), writers))


def test_tracker_without_embeddings_is_refused_naming_the_need():
    no_embeddings = _Stage({IMAGE, "boxes"}, {"visibility"})
    with pytest.raises(InputError) as caught:
        check_composition(_dataset(False), _chain(DETECTOR, POSE, no_embeddings, _tracker(True)))
    assert "tracker (KPRTracker) needs embeddings, which no stage before it provides" in str(caught.value)
    # the same stages with the appearance cue off (boxes only) are fine
    check_composition(_dataset(False), _chain(DETECTOR, POSE, no_embeddings, _tracker(False)))


def test_every_problem_is_listed_at_once():
    with pytest.raises(InputError) as caught:
        check_composition(_dataset(False), _chain(_Stage({GROUND_TRUTH}, {"boxes", "scores"}), _Stage({"boxes"}),
                                                  REID, _tracker(True)))
    message = str(caught.value)
    assert "detector (_Stage) needs ground truth, which the data set (SimpleNamespace) does not have" in message
    assert "reid (_Stage) needs keypoints" in message
    assert "tracker (KPRTracker) needs embeddings" not in message  # the reid stage does provide them
    # with ground truth, only the pose stage's gap remains
    with pytest.raises(InputError, match="keypoints") as caught:
        check_composition(_dataset(True), _chain(_Stage({GROUND_TRUTH}, {"boxes", "scores"}), _Stage({"boxes"}),
                                                 REID, _tracker(True)))
    assert GROUND_TRUTH not in str(caught.value)


def test_a_stage_that_breaks_its_protocol_is_named_with_what_it_lacks():
    class PoseInTheDetectorSlot:
        requires, provides, weights_path = frozenset({"boxes"}), frozenset({"keypoints"}), None

        def estimate(self, frame, detections): ...

    class OldWriter:  # written before the contracts: no requires / filtered / abort
        def begin_sequence(self, name, meta): ...
        def write(self, frame, detections): ...
        def end_sequence(self): return []

    with pytest.raises(InputError) as caught:
        check_composition(_dataset(False), _chain(PoseInTheDetectorSlot(), POSE, REID, _tracker(True), [OldWriter()]))
    message = str(caught.value)
    assert "detector: PoseInTheDetectorSlot is not a Detector (it lacks detect)" in message
    assert "writer 0: OldWriter is not a Writer (it lacks abort, filtered, requires)" in message


def test_kpr_needs_keypoints_only_when_prompted():
    from kprtrack.reid.kpr import KPRReID

    prompted, plain = (SimpleNamespace(supports_prompts=flag, settings={"prompts": flag}) for flag in (True, False))
    assert "keypoints" in KPRReID.requires.fget(prompted)
    assert "keypoints" not in KPRReID.requires.fget(plain)


def test_pixels_are_needed_only_by_stages_that_read_them():
    from kprtrack.render import VideoRenderWriter

    assert needs_images([POSE])
    assert not needs_images([_Stage({GROUND_TRUTH}), _Stage({"boxes"})])
    assert needs_images([VideoRenderWriter("/x")]) and not needs_images([VideoRenderWriter("/x", enabled=False)])


# --------------------------------------------------------------------------- through the CLI, before decoding
class NeverDecodedSource:
    """A sequence whose frames must not be read: the composition is checked first."""

    name, meta = "never", {"fps": 10.0}

    def __len__(self):
        return 3

    def fingerprint(self):
        return "never"

    def frames(self, decode=True):
        raise AssertionError("frames were read before the composition was checked")


class NeverDecodedDataset:
    has_ground_truth = False
    gt_dir = path = files = None

    def __init__(self, **_):
        pass

    def sequences(self):
        yield NeverDecodedSource()


class BoxesOnlyReID:
    """Claims to be a ReID but fills nothing the tracker can use."""

    requires, provides, weights_path = frozenset({"boxes"}), frozenset(), None

    def __init__(self, **_):
        pass

    def embed(self, frame, detections):
        return detections


@pytest.mark.slow
def test_cli_refuses_a_tracker_without_embeddings_before_reading_a_frame(tmp_path):
    env_path = f"{REPO / 'tests'}"
    result = subprocess.run(
        [sys.executable, "-m", "kprtrack", "run", "dataset=demo", f"dataset._target_={HERE}.NeverDecodedDataset",
         f"reid._target_={HERE}.BoxesOnlyReID", "detector=groundtruth", "pose=groundtruth",
         f"output.dir={tmp_path / 'out'}", "run.progress=false"],
        capture_output=True, text=True, cwd=REPO, env={**_env(), "PYTHONPATH": env_path}, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "frames were read" not in result.stderr
    assert "detector (GroundTruthDetector) needs ground truth" in result.stderr
    assert "tracker (KPRTracker) needs embeddings, which no stage before it provides" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing was written


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_frames_are_not_decoded_when_no_running_stage_reads_pixels():
    """The oracle stack (GT boxes and keypoints) with a ReID that needs no pixels and no video:
    frames are read undecoded. Checked on the pipeline's own track_sequence."""
    from kprtrack.cache import StageCache
    from kprtrack.config import compose
    from kprtrack.pipeline import Stages, track_sequence
    from kprtrack.tracker import KPRTracker

    decoded = []

    class Source(NeverDecodedSource):
        def frames(self, decode=True):
            decoded.append(decode)
            for i in range(3):
                gt = Detections(np.array([[0, 0, 10, 20]], np.float32), np.ones(1, np.float32),
                                keypoints=np.ones((1, 17, 3), np.float32), person_ids=np.zeros(1, np.int64))
                yield Frame("never", i, None, gt=gt, width=32, height=32)

    class UnitReID(BoxesOnlyReID):
        provides = frozenset({"embeddings", "visibility"})

        def embed(self, frame, detections):
            n = len(detections)
            return detections.with_(embeddings=np.ones((n, 2, 4), np.float32), visibility=np.ones((n, 2), np.float32))

    from kprtrack.detector.groundtruth import GroundTruthDetector
    from kprtrack.pose.groundtruth import GroundTruthPose

    cfg = compose("run", ["dataset=demo", "run.progress=false", "run.cache=false"])
    stages = Stages(GroundTruthDetector(), GroundTruthPose(), UnitReID(), KPRTracker(), writers=[])
    track_sequence(Source(), stages, cfg, StageCache(enabled=False))
    assert decoded == [False]
