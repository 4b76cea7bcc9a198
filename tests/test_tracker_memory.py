"""Long videos: stored tracks stay bounded, identities stay right, the config builds the tracker."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from kprtrack.record import Detections
from kprtrack.tracker import KPRTracker

PARTS, DIM = 3, 64


def people_coming_and_going(frames: int, seed: int = 0):
    """A new person every 10 frames, each visible 50 frames, every 4th one returning 60 frames later."""
    rng = np.random.default_rng(seed)
    identities = frames // 10 + 1
    prototypes = rng.normal(size=(identities, PARTS, DIM)).astype(np.float32)
    for f in range(frames):
        present = [k for k in range(identities)
                   if 10 * k <= f < 10 * k + 50 or (k % 4 == 0 and 10 * k + 110 <= f < 10 * k + 140)]
        noise = 0.05 * rng.normal(size=(len(present), PARTS, DIM)).astype(np.float32)
        vis = rng.random((len(present), PARTS)) > 0.2
        vis[:, 0] = True
        boxes = np.array([[60 * (k % 20), 0, 60 * (k % 20) + 50, 100] for k in present], np.float32).reshape(-1, 4)
        yield present, Detections(boxes, np.full(len(present), 0.9), embeddings=prototypes[present] + noise,
                                  visibility=vis)


@pytest.mark.slow
def test_stored_tracks_stay_bounded_over_5000_frames_and_identities_hold():
    tracker = KPRTracker(track_buffer=100)
    peak_size = peak_capacity = 0
    ids_of_person = defaultdict(set)
    for present, detections in people_coming_and_going(5000):
        out = tracker.update(detections)
        for person, track_id in zip(present, out.track_ids):
            if track_id >= 0:
                ids_of_person[person].add(int(track_id))
        peak_size = max(peak_size, tracker.tracks.size)
        peak_capacity = max(peak_capacity, tracker.tracks.capacity)
    # ~5 people visible + ~10 lost within the buffer at any time; removed tracks are freed.
    assert peak_size <= 25, peak_size
    assert peak_capacity <= 64, peak_capacity
    assert tracker.tracks.column("feats").base.shape[1] == tracker.tracks.capacity
    # 500 people, each with exactly one id, never shared; returning people got their old id back.
    assert len(ids_of_person) == 500
    assert all(len(ids) == 1 for ids in ids_of_person.values())
    all_ids = [next(iter(ids)) for ids in ids_of_person.values()]
    assert len(set(all_ids)) == 500 and min(all_ids) == 1 and max(all_ids) == 500


def test_config_file_builds_the_tracker():
    from kprtrack.config import compose, instantiate

    cfg = compose("run", ["tracker=kprtrack", "tracker.track_buffer=123"])
    assert cfg.tracker._target_ == "kprtrack.tracker.KPRTracker"
    tracker = instantiate(cfg.tracker)
    assert isinstance(tracker, KPRTracker)
    assert tracker.track_buffer == 123
    assert tracker.appearance_weight == 1.0 and tracker.iou_weight == 0.0  # appearance only by default
    assert tracker.det_low_thresh < tracker.det_high_thresh <= tracker.new_track_thresh
    assert max(tracker.match_thresh, tracker.second_match_thresh, tracker.unconfirmed_match_thresh) < 1.0


def test_tracker_package_imports_without_heavy_dependencies():
    import subprocess
    import sys

    code = (
        "import sys; import kprtrack.tracker; "
        "heavy = [m for m in ('torch', 'hydra', 'cv2', 'omegaconf') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
