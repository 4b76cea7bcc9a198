"""Smoke tests of benchmarks/tracker.py: the synthetic scene, the scoring, and a short run of both trackers."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from kprtrack.tracker import part_distance

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "tracker.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_tracker", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def scene(bench):
    return bench.simulate_scene(frames=400, people=20, parts=8, dim=64, seed=3)


def test_scene_has_what_the_benchmark_needs(bench, scene):
    assert scene.frames == 400 and scene.offsets[0] == 0 and np.all(np.diff(scene.offsets) >= 0)
    rows = scene.offsets[-1]
    assert scene.boxes.shape == (rows, 4) and scene.visibility.shape == (rows, 9)
    assert np.all(scene.boxes[:, :2] >= 0) and np.all(scene.boxes[:, 2] <= 1920) and np.all(scene.boxes[:, 3] <= 1080)
    assert np.all(scene.boxes[:, 2:] > scene.boxes[:, :2])
    assert np.all(scene.visibility[:, 0] == 1) and 0.15 < (scene.visibility[:, 1:] == 0).mean() < 0.35
    person = scene.truth >= 0
    assert 0.1 < (scene.scores[person] < 0.5).mean() < 0.2  # round 2 has work
    assert 0.03 < (~person).mean() < 0.15  # false positives
    # Nobody appears twice in a frame; somebody leaves for >= 30 frames and comes back.
    longest_gap = 0
    for k in range(20):
        frames_seen = [f for f in range(scene.frames) if k in scene.truth[scene.offsets[f]:scene.offsets[f + 1]]]
        longest_gap = max(longest_gap, int(np.diff(frames_seen).max()))
    for f in range(scene.frames):
        who = scene.truth[scene.offsets[f]:scene.offsets[f + 1]]
        who = who[who >= 0]
        assert len(np.unique(who)) == len(who)
    assert longest_gap >= 30
    # Smooth motion: a person's box moves a few pixels between consecutive frames, not across the frame.
    first = [scene.boxes[scene.offsets[f]:scene.offsets[f + 1]][scene.truth[scene.offsets[f]:scene.offsets[f + 1]] == 0]
             for f in range(20)]
    steps = [np.abs(b[0, :2] - a[0, :2]).max() for a, b in zip(first, first[1:]) if len(a) and len(b)]
    assert steps and max(steps) < 15


def test_embeddings_identify_people_and_chunks_are_reproducible(bench, scene):
    emb = bench.chunk_embeddings(scene, 0, 50)
    assert emb.dtype == np.float32 and emb.shape == (scene.offsets[50], 9, 64)
    assert np.array_equal(emb, bench.chunk_embeddings(scene, 0, 50))
    truth = scene.truth[: scene.offsets[50]]
    people = np.flatnonzero(truth >= 0)
    d = part_distance(emb[people], scene.visibility[people], emb[people], scene.visibility[people])
    same = truth[people][:, None] == truth[people][None, :]
    off_diagonal = ~np.eye(len(people), dtype=bool)
    # Two noisy samples of one person are within the tracker's first-round threshold (0.4), others far.
    assert d[same & off_diagonal].max() < 0.4 < 0.55 < d[~same].min()


def test_identity_score_counts_switches_coverage_and_false_positives(bench):
    score = bench.IdentityScore(people=3)
    score.add(np.array([0, 1, -1]), np.array([5, 6, -1]))
    score.add(np.array([0, 1, -1]), np.array([5, -1, 9]))  # person 1 untracked: no switch
    score.add(np.array([1, 0]), np.array([6, 7]))  # person 0 switches 5 -> 7
    score.add(np.array([0, 2]), np.array([5, 8]))  # back to 5: a second switch; person 2 new
    assert score.switches == 2
    assert score.covered == 7 and score.person_rows == 8
    assert score.fp_with_id == 1


def test_numpy_bytes_counts_each_buffer_once(bench):
    class Holder:
        pass

    holder = Holder()
    holder.array = np.zeros(1000, np.float32)
    holder.views = [holder.array[:10], holder.array[5:]]
    holder.other = {"x": np.zeros((10, 10), np.float64), "name": "text"}
    assert bench.numpy_bytes(holder) == 4000 + 800


def test_windows_are_1k_and_10k_for_10000_frames(bench):
    assert bench.windows_for(10000) == ((900, 1100), (9900, 10000))
    (e0, e1), (l0, l1) = bench.windows_for(120)
    assert 0 < e0 < e1 <= l0 < l1 == 120


@pytest.mark.slow
def test_kprtrack_alone_tracks_the_scene_and_is_timed(bench, scene):
    runner = bench.KPRTrackRunner(bench.kprtrack_config())
    result = bench.run_benchmark(scene, [runner], chunk=64, progress=False)
    times = result.times["KPRTrack"]
    assert np.isnan(times).sum() == 2  # the two memory-probe frames
    assert np.all(times[np.isfinite(times)] > 0) and np.all(np.isfinite(result.cpu_times["KPRTrack"]) == np.isfinite(times))
    ids = result.identity["KPRTrack"]
    assert ids.coverage > 0.95 and ids.switches <= 2 and ids.fp_with_id <= 5
    assert [p.frame for p in result.memory] == [36, 396]
    assert all(p.state_bytes > 20 * 9 * 64 * 4 and p.update_peak_bytes > 0 for p in result.memory)
    text = "\n".join(bench.report(result, scene))
    assert "KPRTrack  wall" in text and "KPRTrack  cpu" in text and "ratio" not in text


def test_config_overrides_reach_the_tracker(bench):
    config = bench.kprtrack_config(["kalman=true", "iou_weight=0.5"])
    runner = bench.KPRTrackRunner(config)
    assert runner.tracker.iou_weight == 0.5 and runner.tracker.tracks.use_kalman
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        bench.kprtrack_config(["no_such_key=1"])


def test_missing_reference_package_says_how_to_install(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "trackers", None)  # import fails as if not installed
    with pytest.raises(SystemExit, match="pip install trackers"):
        bench.ByteTrackRunner(bench.kprtrack_config())


@pytest.mark.slow
def test_both_trackers_side_by_side(bench, scene):
    pytest.importorskip("trackers", reason="reference ByteTrack is Roboflow's `trackers` (pip install trackers)")
    config = bench.kprtrack_config()
    runners = [bench.KPRTrackRunner(config), bench.ByteTrackRunner(config)]
    result = bench.run_benchmark(scene, runners, chunk=100, progress=False)
    kpr, ref = result.times["KPRTrack"], result.times["ByteTrack(trackers)"]
    assert np.array_equal(np.isnan(kpr), np.isnan(ref))  # same frames counted for both
    reference_ids = result.identity["ByteTrack(trackers)"]
    assert reference_ids.coverage > 0.9  # its reordered output was mapped back to the input rows
    assert result.identity["KPRTrack"].switches <= reference_ids.switches
    text = "\n".join(bench.report(result, scene))
    assert "ratio KPRTrack / ByteTrack(trackers) frames/s" in text and "trackers 2." in text


def test_command_line_runs_kprtrack_alone(bench, capsys):
    assert bench.main(["--frames", "60", "--dim", "16", "--parts", "3", "--reference", "none", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "60 frames, 20 people, 4 parts (1 global + 3) x 16-D" in out and "ms/frame [5,7)" in out


def test_missing_tracklab_reference_says_what_to_install(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "byte_track", None)
    monkeypatch.setitem(sys.modules, "byte_track.byte_tracker", None)
    with pytest.raises(SystemExit, match="needs TrackLab's byte_track"):
        bench.TrackLabByteTrackRunner(bench.kprtrack_config())


def test_unknown_reference_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(["--frames", "60", "--reference", "trackers,bogus", "--quiet"])
    assert stop.value.code == 2 and "unknown bogus" in capsys.readouterr().err


@pytest.mark.slow
def test_every_reference_gets_its_ratio_and_tracklab_rows_map_back(bench, scene, monkeypatch):
    """TrackLab's BYTETracker takes a [l, t, r, b, score, class, row] tensor and returns rows
    [l, t, r, b, track_id, class, score, row]; a stand-in with that interface (track id = 100 + the
    person's box x rounded to 400 px, enough to check the mapping) goes through the real runner."""
    torch = pytest.importorskip("torch")
    import types

    class FakeBYTETracker:
        def __init__(self, **kwargs):
            self.kwargs, self.tracked_stracks, self.lost_stracks = kwargs, [], []

        def update(self, table, _):
            assert isinstance(table, torch.Tensor) and table.shape[1] == 7
            keep = table[:, 4] > self.kwargs["track_thresh"]
            return [[*row[:4].tolist(), 100 + int(row[0]) // 400, 0, float(row[4]), int(row[6])] for row in table[keep]]

    package = types.ModuleType("byte_track")
    module = types.ModuleType("byte_track.byte_tracker")
    module.BYTETracker = FakeBYTETracker
    monkeypatch.setitem(sys.modules, "byte_track", package)
    monkeypatch.setitem(sys.modules, "byte_track.byte_tracker", module)
    monkeypatch.setattr(bench, "package_version", lambda name: "0.test")
    config = bench.kprtrack_config()
    reference = bench.TrackLabByteTrackRunner(config)
    assert reference.kwargs["track_thresh"] == config["det_high_thresh"]
    frame = slice(scene.offsets[5], scene.offsets[6])
    prepared = reference.prepare(scene.boxes[frame], scene.scores[frame], None, None)
    ids = reference.ids(prepared, reference.update(prepared))
    confident = scene.scores[frame] > config["det_high_thresh"]
    assert np.array_equal(ids[~confident], np.full((~confident).sum(), -1))
    assert np.array_equal(ids[confident], 100 + scene.boxes[frame][confident, 0].astype(np.int64) // 400)

    result = bench.run_benchmark(scene, [bench.KPRTrackRunner(config), reference], chunk=100, progress=False)
    text = "\n".join(bench.report(result, scene))
    assert "ratio KPRTrack / ByteTrack(tracklab) frames/s" in text and "tracklab 0.test byte_track" in text
    assert "OpenBLAS kernels:" in text


def test_auto_reference_runs_what_is_installed_and_says_what_is_not(bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "byte_track", None)
    monkeypatch.setitem(sys.modules, "byte_track.byte_tracker", None)
    if importlib.util.find_spec("trackers") is None:
        with pytest.raises(SystemExit, match="no reference ByteTrack is installed"):
            bench.main(["--frames", "40", "--dim", "16", "--parts", "2", "--quiet"])
        return
    assert bench.main(["--frames", "40", "--dim", "16", "--parts", "2", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "reference tracklab skipped" in captured.err and "pip install tracklab" in captured.err
    assert "ratio KPRTrack / ByteTrack(trackers)" in captured.out and "ByteTrack(tracklab)" not in captured.out


@pytest.mark.slow
def test_tracklab_reference_side_by_side(bench, scene):
    """The real TrackLab byte_track (runs in the TrackLab environment, see .ci/tracklab_env.sh)."""
    pytest.importorskip("byte_track.byte_tracker", reason="TrackLab's byte_track comes with tracklab")
    config = bench.kprtrack_config()
    runners = [bench.KPRTrackRunner(config), bench.TrackLabByteTrackRunner(config)]
    result = bench.run_benchmark(scene, runners, chunk=100, progress=False)
    reference_ids = result.identity["ByteTrack(tracklab)"]
    assert reference_ids.coverage > 0.9  # its rows came back through "tracklab_id"
    assert result.identity["KPRTrack"].switches <= reference_ids.switches
    text = "\n".join(bench.report(result, scene))
    assert "ratio KPRTrack / ByteTrack(tracklab) frames/s" in text and "byte_track: track_thresh=0.5" in text
