"""The TrackLab column mapping and stage configs: numpy/pandas only, runs without TrackLab."""
from __future__ import annotations

import numpy as np
import pytest

# TrackLab's detections are pandas frames; pandas comes with kprtrack[tracklab] (CI runs this file
# in the TrackLab environment, see .ci/tracklab_env.sh).
pd = pytest.importorskip("pandas", reason="pandas comes with kprtrack[tracklab]; not installed here")

from kprtrack.errors import InputError
from kprtrack.tracklab.columns import detections_from_rows, reid_columns, track_columns
from kprtrack.tracklab.stage_config import build_kprtrack_stage, stage_node


def _rows(n=3, parts=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "bbox_ltwh": [np.array([10.0 * i, 5.0, 20.0, 40.0 + i]) for i in range(n)],
        "bbox_conf": rng.uniform(0.2, 1.0, n),
        "keypoints_xyc": [rng.uniform(0, 50, (17, 3)) for _ in range(n)],
        "embeddings": [rng.normal(size=(parts, dim)).astype(np.float32) for _ in range(n)],
        "visibility_scores": [rng.uniform(0, 1, parts) for _ in range(n)],
        "image_id": 7,
    }, index=[101, 55, 9])


def test_rows_to_record_keeps_order_and_converts_boxes():
    rows = _rows()
    dets = detections_from_rows(rows)
    assert len(dets) == 3
    np.testing.assert_allclose(dets.boxes[1], [10.0, 5.0, 30.0, 46.0])
    np.testing.assert_allclose(dets.scores, rows.bbox_conf.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(dets.keypoints[2], rows.keypoints_xyc.iloc[2], rtol=1e-6)
    assert dets.embeddings.shape == (3, 3, 4) and dets.visibility.shape == (3, 3)
    np.testing.assert_array_equal(dets.embeddings[0], rows.embeddings.iloc[0])


def test_ground_truth_rows_without_confidence_or_reid():
    rows = _rows()[["bbox_ltwh", "keypoints_xyc"]]
    dets = detections_from_rows(rows)
    np.testing.assert_array_equal(dets.scores, np.ones(3, np.float32))
    assert dets.embeddings is None and dets.visibility is None


def test_missing_cells_become_unusable_rows_not_errors():
    rows = _rows()
    rows["embeddings"] = rows["embeddings"].astype(object)
    rows.at[55, "embeddings"] = np.nan  # a module left this person without an embedding
    rows.at[9, "keypoints_xyc"] = np.nan
    dets = detections_from_rows(rows)
    assert np.isnan(dets.embeddings[1]).all() and np.isfinite(dets.embeddings[[0, 2]]).all()
    np.testing.assert_array_equal(dets.keypoints[2], np.zeros((17, 3)))


def test_wrong_shape_names_the_column():
    rows = _rows()
    rows.at[9, "bbox_ltwh"] = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="bbox_ltwh"):
        detections_from_rows(rows)


def test_empty_rows():
    assert len(detections_from_rows(pd.DataFrame(columns=["bbox_ltwh"]))) == 0


def test_record_back_to_rows():
    rows = _rows()
    dets = detections_from_rows(rows).with_(track_ids=np.array([4, -1, 2]))
    out = track_columns(dets, rows.index)
    assert out.index.tolist() == [101, 9] and out.track_id.tolist() == [4, 2]
    reid = reid_columns(dets, rows.index)
    assert reid.index.tolist() == [101, 55, 9]
    np.testing.assert_array_equal(reid.embeddings.loc[9], rows.embeddings.loc[9])


def test_stage_configs_are_ours_with_overrides():
    tracker = build_kprtrack_stage("tracker", "kprtrack", {"match_thresh": 0.3})
    assert type(tracker).__name__ == "KPRTracker" and tracker.match_thresh == 0.3
    assert tracker.track_buffer == 300  # the rest comes from configs/tracker/kprtrack.yaml
    node = stage_node("reid", {"_target_": "kprtrack.reid.part_colors.PartColorsReID", "hue_bins": 6})
    assert build_kprtrack_stage("reid", node).hue_bins == 6


def test_stage_config_errors_name_the_choices():
    with pytest.raises(InputError, match="part_colors"):
        stage_node("reid", "no_such_reid")
    with pytest.raises(InputError, match="_target_"):
        stage_node("reid", {"hue_bins": 6})


def test_package_imports_without_tracklab():
    import kprtrack.tracklab as plugin

    assert plugin.config_package == "pkg://kprtrack.tracklab.configs"
    with pytest.raises(AttributeError):
        plugin.NotAThing  # noqa: B018


def _state_and_run(tmp_path, their_ids, our_ids):
    import json
    import pickle
    import zipfile

    boxes = [[10.0, 10.0, 20.0, 40.0], [50.0, 10.0, 20.0, 40.0]]
    frame = pd.DataFrame({"image_id": [5, 5], "bbox_ltwh": [np.array(b) for b in boxes],
                          "track_id": [float(t) if t >= 0 else np.nan for t in their_ids]})
    tmp_path.mkdir(parents=True)
    state = tmp_path / "state.pklz"
    with zipfile.ZipFile(state, "w") as zf:
        zf.writestr("900001.pkl", pickle.dumps(frame))
        zf.writestr("900001_image.pkl", pickle.dumps(pd.DataFrame({"video_id": [900001]})))
    (tmp_path / "run" / "posetrack21" / "sequences").mkdir(parents=True, exist_ok=True)
    anns = [{"image_id": 5, "bbox": b, "track_id": t} for b, t in zip(boxes, our_ids) if t >= 0]
    (tmp_path / "run" / "posetrack21" / "sequences" / "seq.json").write_text(json.dumps({"annotations": anns}))
    return str(state), str(tmp_path / "run")


def test_compare_tool_accepts_equal_tracks_only(tmp_path, capsys):
    from kprtrack.tracklab.compare import main

    assert main(list(_state_and_run(tmp_path / "a", [1, 2], [1, 2]))) == 0
    assert "2 same track id, 0 different" in capsys.readouterr().out
    assert main(list(_state_and_run(tmp_path / "b", [1, 2], [2, 1]))) == 1
    assert main(list(_state_and_run(tmp_path / "c", [1, -1], [1, 2]))) == 1  # a track TrackLab did not report
    (tmp_path / "junk.pklz").write_text("not a zip")
    assert main([str(tmp_path / "junk.pklz"), str(tmp_path / "a" / "run")]) == 2
