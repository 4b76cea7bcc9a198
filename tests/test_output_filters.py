"""output.filters: the prediction filters of run's output stage (TrackLab's PoseTrack21 protocol)."""
import json
from collections import Counter

import numpy as np
import pytest

from kprtrack.cli import main as cli_main
from kprtrack.errors import InputError
from kprtrack.output_filters import FilterConfig, SequenceFilter, filter_sequence
from kprtrack.pipeline import main as run_main
from kprtrack.record import Detections, Frame

ON = FilterConfig(enabled=True)


def people(track_ids, score=0.9, keypoints=True):
    n = len(track_ids)
    kps = np.tile(np.array([[10, 20, score]], np.float32), (n, 17, 1)) if keypoints else None
    return Detections(np.array([[10, 20, 40, 100]] * n, np.float32), np.full(n, 0.8), keypoints=kps,
                      track_ids=np.array(track_ids, np.int64))


def test_weak_detections_and_short_tracklets_are_dropped():
    frames = [people([1, 2, 4]), people([1, 2, 40]), people([1, 2, 41]), people([1, 2, 42])]
    for frame in frames:
        frame.keypoints[frame.track_ids == 2, :, 2] = 0.2  # never above 0.3: fewer than 3 visible keypoints
    out, stats = filter_sequence(frames, ON)
    assert [p.track_ids.tolist() for p in out] == [[1]] * 4
    assert stats == {"detections_in": 12, "dropped_few_keypoints": 4, "dropped_short_tracklets": 4,
                     "zeroed_keypoints": 0, "detections_out": 4}


def test_tracklet_length_counts_the_detections_left_after_the_keypoint_filter():
    frames = [people([7]), people([7]), people([7])]
    frames[1].keypoints[:, :, 2] = 0.1  # the middle detection goes: track 7 keeps 2 of 3 frames
    out, stats = filter_sequence(frames, ON)
    assert sum(len(p) for p in out) == 0
    assert stats["dropped_few_keypoints"] == 1 and stats["dropped_short_tracklets"] == 2


def test_low_keypoints_are_zeroed_and_the_threshold_itself_is_kept():
    frames = [people([3]) for _ in range(3)]
    for frame in frames:
        frame.keypoints[0, 0] = [5, 6, 0.1]  # below: zeroed
        frame.keypoints[0, 1] = [7, 8, 0.3]  # at the threshold: neither visible nor zeroed
        frame.keypoints[0, 2] = [0, 0, 0]  # already zero: not counted
    out, stats = filter_sequence(frames, ON)
    kps = out[0].keypoints[0]
    assert kps[0].tolist() == [0, 0, 0] and kps[1].tolist() == pytest.approx([7, 8, 0.3])
    assert stats["zeroed_keypoints"] == 3 and stats["detections_out"] == 3
    assert frames[0].keypoints[0, 0, 2] == pytest.approx(0.1)  # the input is not modified


def test_settings_and_disabled_filters():
    frames = [people([1, 2]), people([1])]
    same, stats = filter_sequence(frames, FilterConfig(enabled=False))
    assert same == frames and stats["detections_in"] == stats["detections_out"] == 3
    assert sum(stats[k] for k in ("dropped_few_keypoints", "dropped_short_tracklets", "zeroed_keypoints")) == 0
    out, _ = filter_sequence(frames, FilterConfig(min_tracklet_length=2, min_visible_keypoints=17))
    assert [p.track_ids.tolist() for p in out] == [[1], [1]]
    out, stats = filter_sequence([people([1], keypoints=False)] * 3, ON)  # no pose: nothing visible
    assert stats["dropped_few_keypoints"] == 3
    assert FilterConfig.from_node({"enabled": False, "min_tracklet_length": 5, "other": 1}) == FilterConfig(
        enabled=False, min_tracklet_length=5)
    for bad in ({"enabled": "auto"}, {"keypoint_threshold": "high"}, {"min_tracklet_length": -1},
                {"min_visible_keypoints": 2.5}):
        with pytest.raises(InputError, match=f"output.filters.{next(iter(bad))} must be"):
            FilterConfig.from_node(bad)


def test_sequence_filter_keeps_tracked_people_without_features():
    seq = SequenceFilter(FilterConfig(enabled=True, min_tracklet_length=1))
    seq.begin()
    dets = people([5, -1]).with_(embeddings=np.ones((2, 3, 4), np.float32), visibility=np.ones((2, 3)))
    seq.add(Frame("s", 0, None, image_id=10), dets)
    seq.add(Frame("s", 1, None, image_id=11), people([9]).with_(track_ids=None))  # not tracked at all
    tracks, stats = seq.finish()
    assert [(f.image_id, p.track_ids.tolist()) for f, p in tracks] == [(10, [5]), (11, [])]
    assert tracks[0][1].embeddings is None and stats["detections_in"] == 1
    assert seq.finish() == ([], filter_sequence([], seq.cfg)[1])  # ready for the next sequence


class _Collector:
    requires = frozenset({"track_ids"})

    def __init__(self, filtered):
        self.filtered, self.ids = filtered, Counter()

    def begin_sequence(self, name, meta):
        pass

    def write(self, frame, detections):
        self.ids.update(detections.track_ids[detections.track_ids >= 0].tolist())

    def end_sequence(self):
        return []

    def abort(self):
        pass


@pytest.mark.slow
def test_track_files_get_the_filtered_tracks_the_video_sees_all():
    from kprtrack.cache import StageCache
    from kprtrack.config import compose
    from kprtrack.pipeline import Stages, build_stage, filter_config, track_sequence

    cfg = compose("run", ["run.progress=false", "output.filters.enabled=true", "output.filters.min_tracklet_length=40",
                          "detector.drop_rate=0.3", "dataset.num_sequences=1", "dataset.num_frames=40"])
    files, streaming = _Collector(filtered=True), _Collector(filtered=False)
    stages = Stages(detector=build_stage(cfg.detector), pose=build_stage(cfg.pose), reid=build_stage(cfg.reid),
                    tracker=build_stage(cfg.tracker), writers=[files, streaming],
                    output_filter=SequenceFilter(filter_config(cfg)))
    [source] = build_stage(cfg.dataset).sequences()
    paths, stats = track_sequence(source, stages, cfg, StageCache(enabled=False))
    assert paths == [] and stats["dropped_short_tracklets"] > 0
    assert sum(streaming.ids.values()) == stats["detections_in"] > sum(files.ids.values()) == stats["detections_out"]
    assert all(count >= 40 for count in files.ids.values())
    assert any(count < 40 for count in streaming.ids.values())


@pytest.mark.slow
def test_a_filtered_run_writes_filtered_files_and_eval_reproduces_its_numbers(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["run.progress=false", "output.render=false", f"run.cache_dir={tmp_path / 'cache'}", f"output.dir={run_dir}",
            "output.filters.enabled=true", "output.filters.min_tracklet_length=10", "pose.score_jitter=0.5",
            "detector.drop_rate=0.3", "dataset.num_sequences=2", "dataset.num_frames=30"]
    assert run_main(args) == 0
    printed = capsys.readouterr().out
    state = json.loads((run_dir / "state.json").read_text())
    summary = state["output_filters"]
    total = summary["total"]
    assert summary["enabled"] and summary["min_tracklet_length"] == 10
    assert all(total[k] > 0 for k in ("dropped_few_keypoints", "dropped_short_tracklets", "zeroed_keypoints"))
    assert f"{total['detections_out']} of {total['detections_in']} tracked detections written" in printed
    assert "min_tracklet_length: 10" in (run_dir / "config.yaml").read_text()

    written = 0
    for path in sorted((run_dir / "posetrack21/sequences").glob("*.json")):
        anns = json.loads(path.read_text())["annotations"]
        assert summary["per_sequence"][path.stem]["detections_out"] == len(anns)
        written += len(anns)
        assert min(Counter(a["track_id"] for a in anns).values()) >= 10
        for ann in anns:
            kps = np.array(ann["keypoints"]).reshape(17, 3)
            assert (np.array(ann["scores"]) > 0.3).sum() >= 3
            assert np.all(kps[kps[:, 2] < 0.3] == 0)
        frame_of = {im["id"]: i + 1 for i, im in enumerate(json.loads(path.read_text())["images"])}
        mot = [tuple(int(float(v)) for v in row.split(",")[:2])
               for row in (run_dir / "mot" / f"{path.stem}.txt").read_text().splitlines()]
        assert sorted(mot) == sorted((frame_of[a["image_id"]], a["track_id"]) for a in anns)
    assert written == total["detections_out"] < total["detections_in"]

    # `eval` on the run's folder gives the run's own numbers
    ours = json.loads((run_dir / "eval/metrics.json").read_text())
    assert cli_main(["eval", "format=posetrack", f"gt={ours['gt']}", f"pred={run_dir / 'posetrack21/sequences'}",
                     f"out={tmp_path / 'again'}", "progress=false"]) == 0
    again = json.loads((tmp_path / "again/metrics.json").read_text())
    for section in ("box", "keypoints"):
        assert again[section]["combined"] == ours[section]["combined"]
        assert again[section]["per_sequence"] == ours[section]["per_sequence"]
