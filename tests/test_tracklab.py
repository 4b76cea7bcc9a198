"""KPRTrack inside a real TrackLab pipeline. Needs ``tracklab`` (the kprtrack[tracklab] extra),
which the main environment does not have: every test here skips with the reason otherwise.
See docs/tracklab.md for the environment and the manual check."""
from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

pytest.importorskip("tracklab", reason="tracklab not installed (pip install kprtrack[tracklab], "
                    "see docs/tracklab.md); the TrackLab adapter is checked in its own environment")

SEARCH_PATH = "pkg://kprtrack.tracklab.configs"
DEMO = dict(num_sequences=2, num_frames=30, seed=3)


def _entry_point_registered() -> bool:
    return any(ep.value == "kprtrack.tracklab" for ep in metadata.entry_points(group="tracklab_plugin"))


def _tracklab_config(overrides):
    """TrackLab's own config.yaml composed as its CLI does; our configs come from the plugin's
    entry point when kprtrack is installed, else from an explicit search path."""
    from hydra import compose, initialize_config_module

    extra = [] if _entry_point_registered() else [f"hydra.searchpath=[{SEARCH_PATH}]"]
    with initialize_config_module("tracklab.configs", version_base=None):
        return compose("config", overrides=extra + list(overrides))


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from kprtrack.data.demo import ensure_demo

    return ensure_demo(tmp_path_factory.mktemp("demo") / "demo", **DEMO)


def _tracklab_tracks(demo_root, reid_backend="part_colors"):
    """TrackLab: ground-truth detections of the demo -> our ReID module -> our tracker module."""
    from hydra.utils import instantiate
    from tracklab.datastruct import TrackerState
    from tracklab.engine import OfflineTrackingEngine
    from tracklab.pipeline import Pipeline

    cfg = _tracklab_config([
        "modules/track=kprtrack", "modules/reid=kprtrack_kpr", f"modules.reid.backend={reid_backend}",
        "dataset=kprtrack_demo", f"dataset.dataset_path={demo_root}",
        *(f"dataset.{k}={v}" for k, v in DEMO.items()),
    ])
    dataset = instantiate(cfg.dataset)
    modules = [instantiate(cfg.modules[name], device="cpu", tracking_dataset=dataset) for name in ("reid", "track")]
    pipeline = Pipeline(models=modules)
    state = TrackerState(dataset.sets["val"], pipeline=pipeline, load_from_groundtruth=True)
    OfflineTrackingEngine(modules=pipeline, tracker_state=state, num_workers=0, callbacks={}).track_dataset()
    return state.detections_pred


class _Collector:
    requires, filtered = frozenset({"track_ids"}), False

    def __init__(self):
        self.rows = []

    def begin_sequence(self, name, meta):
        pass

    def write(self, frame, detections):
        self.rows += [(frame.image_id, box, tid) for box, tid in zip(detections.boxes, detections.track_ids)]

    def end_sequence(self):
        return []

    def abort(self):
        pass


def _kprtrack_tracks(demo_root):
    """Our own engine (the code of ``python -m kprtrack run``) on the same demo."""
    from kprtrack.cache import StageCache
    from kprtrack.config import compose
    from kprtrack.pipeline import Stages, build_stage, track_sequence

    cfg = compose("run", [f"dataset.root={demo_root}", "run.progress=false", "run.cache=false",
                          *(f"dataset.{k}={v}" for k, v in DEMO.items())])
    collector = _Collector()
    stages = Stages(detector=build_stage(cfg.detector), pose=build_stage(cfg.pose), reid=build_stage(cfg.reid),
                    tracker=build_stage(cfg.tracker), writers=[collector])
    for source in build_stage(cfg.dataset).sequences():
        track_sequence(source, stages, cfg, StageCache(enabled=False))
    return collector.rows


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_our_configs_are_found_by_tracklab():
    cfg = _tracklab_config(["modules/track=kprtrack", "modules/reid=kprtrack_kpr", "dataset=kprtrack_demo"])
    assert cfg.modules.track._target_ == "kprtrack.tracklab.KPRTrackModule"
    assert cfg.modules.reid._target_ == "kprtrack.tracklab.KPRReIDModule" and cfg.modules.reid.backend == "kpr"
    assert cfg.dataset.nframes == -1  # TrackLab's dataset defaults are inherited


def test_entry_point_makes_configs_visible():
    if not _entry_point_registered():
        pytest.skip("kprtrack is not installed with its 'tracklab_plugin' entry point (source checkout); "
                    "the configs were found through hydra.searchpath instead")
    import kprtrack.tracklab

    ep = next(ep for ep in metadata.entry_points(group="tracklab_plugin") if ep.value == "kprtrack.tracklab")
    assert ep.load() is kprtrack.tracklab


@pytest.mark.slow
def test_tracklab_pipeline_gives_the_same_tracks_as_our_engine(demo_root):
    predicted = _tracklab_tracks(demo_root)
    ours = _kprtrack_tracks(demo_root)
    assert len(predicted) and len(ours)
    by_image = {}
    for image_id, box, tid in ours:
        by_image.setdefault(int(image_id), []).append((box, int(tid)))
    compared = tracked = 0
    for _, row in predicted.iterrows():
        l, t, w, h = row.bbox_ltwh
        box = np.array([l, t, l + w, t + h])
        candidates = by_image.get(int(row.image_id), [])
        best = max(candidates, key=lambda c: _iou(c[0], box), default=None)
        if best is None or _iou(best[0], box) < 0.9:
            continue  # our GT detector drops people entirely outside the frame
        ours_id = best[1]
        theirs = row.track_id
        theirs = -1 if theirs is None or np.isnan(theirs) else int(theirs)
        assert theirs == ours_id, f"image {row.image_id}: TrackLab track {theirs}, kprtrack {ours_id}"
        compared += 1
        tracked += ours_id >= 0
    assert compared >= 0.95 * len(ours) and tracked > 0.5 * compared
    assert len({int(t) for t in predicted.track_id.dropna()}) >= 3  # several people, not one blob


def test_reid_module_prompts_with_everyone_in_the_frame(demo_root, monkeypatch):
    """Each person is embedded with all the frame's keypoints (KPR's negative prompts), even when
    TrackLab's batches cut an image in two; every image is embedded once."""
    import pandas as pd
    from kprtrack.tracklab import KPRReIDModule
    from tracklab.wrappers.dataset.posetrack.posetrack21 import load_tracking_set

    tracking_set = load_tracking_set(demo_root / "posetrack_data" / "val", demo_root, 21)
    detections = tracking_set.detections_gt
    first = detections.image_id.iloc[0]
    people = detections[detections.image_id == first]
    assert len(people) >= 2
    module = KPRReIDModule(backend="part_colors", batch_size=1)
    calls = []
    real_embed = module.backend.embed

    def recording_embed(frame, dets):
        calls.append((frame.image_id, dets.keypoints.copy()))
        return real_embed(frame, dets)

    monkeypatch.setattr(module.backend, "embed", recording_embed)
    module.datapipe.update({}, tracking_set.image_metadatas, detections)
    metadatas = tracking_set.image_metadatas.loc[[first]]
    outputs = [module.process(None, people.iloc[[i]], metadatas) for i in range(len(people))]
    assert len(calls) == 1 and calls[0][0] == first
    np.testing.assert_allclose(calls[0][1], np.stack(people.keypoints_xyc.tolist()), rtol=1e-6)
    out = pd.concat(outputs)
    assert out.index.tolist() == people.index.tolist()
    assert all(e.shape == out.embeddings.iloc[0].shape for e in out.embeddings)
