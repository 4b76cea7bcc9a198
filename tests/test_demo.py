"""The synthetic demo data set: PoseTrack21 layout, the scripted hard cases, determinism, caching."""
from __future__ import annotations

import hashlib
import json
import re
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_file
from kprtrack.data import demo
from kprtrack.data.demo import ensure_demo, generate_demo, is_complete
from kprtrack.data.demo_render import random_appearances
from kprtrack.errors import InputError

SMALL = dict(num_sequences=1, num_frames=30, width=320, height=180)


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("demo") / "root")


def _sequences(root: Path) -> dict[str, dict]:
    files = sorted((root / "posetrack_data" / "val").glob("*.json"))
    return {f.stem: json.loads(f.read_text()) for f in files}


def _annotations_by_frame(data: dict) -> list[list[dict]]:
    index = {im["id"]: i for i, im in enumerate(data["images"])}
    frames: list[list[dict]] = [[] for _ in data["images"]]
    for ann in data["annotations"]:
        frames[index[ann["image_id"]]].append(ann)
    return frames


def _xyxy(ann: dict) -> np.ndarray:
    x, y, w, h = ann["bbox"]
    return np.array([x, y, x + w, y + h])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    return float(inter / union)


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def test_layout_and_keys_match_real_posetrack_files(default_demo):
    real = json.loads(shared_file("data/posetrack18/annotations/val/009473_mpii_test.json").read_text())
    sequences = _sequences(default_demo)
    assert len(sequences) == 3
    for name, data in sequences.items():
        assert re.fullmatch(r"\d{6}_demo_val", name)
        assert set(data) == set(real)
        assert data["categories"] == real["categories"]
        assert 60 <= len(data["images"]) <= 80
        # real PoseTrack18 keys (mask_file points at mask images only PoseTrack18 ships) plus
        # the PoseTrack21 additions, with the same value kinds
        for image in data["images"]:
            for key, value in real["images"][0].items():
                if key != "mask_file":
                    assert _kind(image[key]) == _kind(value), key
            assert image["has_labeled_person"] in (True, False)
            assert image["file_name"] == f"images/val/{name}/{image['id'] % 10000:06d}.jpg"
            assert (default_demo / image["file_name"]).is_file()
            assert image["vid_id"] == name[:6] and image["frame_id"] == image["id"]
            assert str(image["id"]) == f"1{image['vid_id']}{image['id'] % 10000:04d}"
            assert image["nframes"] == len(data["images"])
            assert (image["width"], image["height"]) == (640, 360)
        for ann in data["annotations"]:
            assert set(real["annotations"][0]) | {"person_id"} == set(ann)
            for key, value in real["annotations"][0].items():
                assert _kind(ann[key]) == _kind(value), key
            assert ann["category_id"] == 1 and ann["iscrowd"] is False
            assert len(ann["keypoints"]) == 51 and len(ann["bbox"]) == 4 and len(ann["bbox_head"]) == 4
            kp = np.array(ann["keypoints"]).reshape(17, 3)
            assert not kp[3:5].any(), "ears are unlabeled placeholders, as in the real data"
            assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
        ids = [a["id"] for a in data["annotations"]]
        assert len(ids) == len(set(ids))
        tracks = sorted({a["track_id"] for a in data["annotations"]})
        assert tracks == list(range(len(tracks))) and 3 <= len(tracks) <= 6
        mot = default_demo / "posetrack_mot" / "mot" / "val" / name
        info = json.loads((mot / "image_info.json").read_text())
        assert [i["frame_index"] for i in info] == list(range(1, len(data["images"]) + 1))
        rows = (mot / "gt" / "gt.txt").read_text().splitlines()
        assert len(rows) == len(data["annotations"])
    first = next(iter(sequences.values()))["images"][0]
    image = cv2.imread(str(default_demo / first["file_name"]))
    assert image.shape == (360, 640, 3)


def test_boxes_are_clipped_and_contain_the_keypoints(default_demo):
    for data in _sequences(default_demo).values():
        for ann in data["annotations"]:
            x1, y1, x2, y2 = _xyxy(ann)
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
            kp = np.array(ann["keypoints"]).reshape(17, 3)
            seen = kp[kp[:, 2] > 0]
            assert ((seen[:, 0] >= x1) & (seen[:, 0] <= x2) & (seen[:, 1] >= y1) & (seen[:, 1] <= y2)).all()
            hx, hy, hw, hh = ann["bbox_head"]
            assert hw > 2 and hh > 2
            if 0 < x1 and x2 < 640 and 0 < y1 and y2 < 360:  # not cut by the frame border
                assert hw * hh < (x2 - x1) * (y2 - y1) / 4
            if kp[2, 2] > 0:  # head top keypoint lies in the head box
                assert hx <= kp[2, 0] <= hx + hw and hy <= kp[2, 1] <= hy + hh


def _walker(track_id, look, x, ground_y, build=None, facing=1, phase=0.0, speed=0.0):
    if build is not None:
        look = look.__class__(**{**look.__dict__, "build": build})
    return demo._Walker(person_id=track_id, track_id=track_id, look=look, x=x, ground_y=ground_y,
                        speed=speed, facing=facing, drift=0.0, phase=phase, turn_after_out=None)


@pytest.mark.parametrize("x", [160.0, 20.0, 300.0])  # inside, cut by the left / right border
def test_box_is_tight_around_the_drawn_person(x):
    scene = demo._Scene(320, 180, horizon=60, ground_min=100, ground_max=175)
    looks = random_appearances(np.random.default_rng(1), 4)
    background = np.full((180, 320, 3), 128, np.uint8)
    for k, look in enumerate(looks):
        person = _walker(k, look, x, 120 + 15 * k, facing=1 - 2 * (k % 2), phase=1.3 * k, speed=0.035)
        image, truth = demo._render_frame(background, [person], scene, None)
        x1, y1, x2, y2 = np.round(_xyxy(truth[0])).astype(int)
        drawn = np.abs(image.astype(int) - 128).sum(axis=2) > 30
        assert not drawn[:, :max(0, x1 - 1)].any() and not drawn[:, x2 + 1:].any()
        assert not drawn[:max(0, y1 - 1)].any() and not drawn[y2 + 1:].any()
        inner = drawn[y1:y2, x1:x2]
        assert inner[:, :2].any() and inner[:, -2:].any() and inner[:2].any() and inner[-2:].any()


def test_crossing_people_occlude_each_other(default_demo):
    for data in _sequences(default_demo).values():
        best = max((_iou(_xyxy(a), _xyxy(b)) for anns in _annotations_by_frame(data)
                    for a, b in combinations(anns, 2)), default=0.0)
        assert best > 0.3


def test_fully_hidden_person_gets_no_annotation():
    scene = demo._Scene(320, 180, horizon=60, ground_min=100, ground_max=175)
    look_far, look_near = random_appearances(np.random.default_rng(0), 2)
    background = np.full((180, 320, 3), 128, np.uint8)
    far, near = _walker(0, look_far, 160, 110, 0.85), _walker(1, look_near, 160, 175, 1.2)
    _, truth = demo._render_frame(background, [far, near], scene, None)
    assert [t["track_id"] for t in truth] == [1]
    far.x = 60  # stepping aside makes the hidden person visible and annotated again
    _, truth = demo._render_frame(background, [far, near], scene, None)
    assert [t["track_id"] for t in truth] == [0, 1]
    # a person partly behind someone keeps all its keypoints (occluded joints are still labeled)
    far.x = 175
    _, truth = demo._render_frame(background, [far, near], scene, None)
    assert [t["num_keypoints"] for t in truth] == [15, 15]


def test_someone_leaves_and_comes_back_with_the_same_track_id(default_demo):
    for data in _sequences(default_demo).values():
        frames = _annotations_by_frame(data)
        annotated = [im["has_labeled_person"] for im in data["images"]]
        found = False
        for track in {a["track_id"] for a in data["annotations"]}:
            seen = [next((a for a in anns if a["track_id"] == track), None) for anns in frames]
            present = [i for i, a in enumerate(seen) if a is not None]
            for before, after in zip(present, present[1:]):
                missing = sum(annotated[before + 1:after])
                x1, _, x2, _ = _xyxy(seen[before])
                at_border = x1 <= 1 or x2 >= 639
                if missing >= 3 and at_border:
                    found = True
        assert found, "nobody walks out of the frame and back in"


def test_sparse_labels_like_posetrack(default_demo):
    unlabeled_with_boxes = 0
    for data in _sequences(default_demo).values():
        labeled = [im["is_labeled"] for im in data["images"]]
        assert 0.8 <= np.mean(labeled) < 1.0
        frames = _annotations_by_frame(data)
        for image, anns in zip(data["images"], frames):
            assert image["has_labeled_person"] == bool(anns)
            if not image["is_labeled"]:
                assert all(a["num_keypoints"] == 0 and not any(a["keypoints"]) for a in anns)
                unlabeled_with_boxes += bool(anns)
    assert unlabeled_with_boxes > 0, "PoseTrack21 also has box-only frames"


def test_ignore_regions_are_polygons_inside_the_frame(default_demo):
    for data in _sequences(default_demo).values():
        for image in data["images"]:
            xs, ys = image["ignore_regions_x"], image["ignore_regions_y"]
            assert len(xs) == len(ys) >= 1
            for px, py in zip(xs, ys):
                assert len(px) == len(py) >= 3
                assert all(isinstance(v, int) and 0 <= v < 640 for v in px)
                assert all(isinstance(v, int) and 0 <= v < 360 for v in py)


def test_identities_are_consistent_and_one_is_shared_between_sequences(default_demo):
    per_sequence = []
    for data in _sequences(default_demo).values():
        pairs = {(a["track_id"], a["person_id"]) for a in data["annotations"]}
        assert len(pairs) == len({t for t, _ in pairs}) == len({p for _, p in pairs})
        per_sequence.append({p for _, p in pairs})
    assert any(a & b for a, b in combinations(per_sequence, 2))


def test_people_wear_distinct_colours(default_demo):
    """Median torso colour per track: stable for one person, different between people."""
    data = next(iter(_sequences(default_demo).values()))
    colours: dict[int, list[np.ndarray]] = {}
    for image, anns in zip(data["images"], _annotations_by_frame(data)):
        if not image["is_labeled"] or len(anns) == 0:
            continue
        pixels = cv2.imread(str(default_demo / image["file_name"]))
        for ann in anns:
            kp = np.array(ann["keypoints"]).reshape(17, 3)
            if not (kp[[5, 6, 11, 12], 2] > 0).all():
                continue
            cx, cy = kp[[5, 6, 11, 12], :2].mean(axis=0)
            # skip the frames where someone nearer (box reaching lower) may cover the torso
            covered = any(other is not ann and _xyxy(other)[3] > _xyxy(ann)[3]
                          and _xyxy(other)[0] <= cx <= _xyxy(other)[2]
                          and _xyxy(other)[1] <= cy <= _xyxy(other)[3] for other in anns)
            if not covered:
                colours.setdefault(ann["track_id"], []).append(pixels[round(cy), round(cx)].astype(float))
    medians = {t: np.median(c, axis=0) for t, c in colours.items() if len(c) >= 3}
    assert len(medians) >= 3
    for a, b in combinations(medians.values(), 2):
        assert np.abs(a - b).sum() > 40


def _fingerprint(root: Path) -> tuple[dict[str, bytes], str]:
    jsons = {p.name: p.read_bytes() for p in sorted((root / "posetrack_data" / "val").glob("*.json"))}
    digest = hashlib.sha256()
    for path in sorted((root / "images").rglob("*.jpg")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return jsons, digest.hexdigest()


def test_same_seed_gives_identical_files_and_other_seeds_differ(tmp_path):
    one = _fingerprint(generate_demo(tmp_path / "a", seed=3, **SMALL))
    two = _fingerprint(generate_demo(tmp_path / "b", seed=3, **SMALL))
    other = _fingerprint(generate_demo(tmp_path / "c", seed=4, **SMALL))
    assert one == two
    assert one[0] != other[0] and one[1] != other[1]


def test_ensure_demo_generates_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KPRTRACK_HOME", str(tmp_path / "home"))
    calls = []
    real_generate = demo.generate_demo
    monkeypatch.setattr(demo, "generate_demo", lambda root, **kw: calls.append(kw) or real_generate(root, **kw))
    root = ensure_demo(**SMALL)
    assert root.parent == tmp_path / "home" / "demo" and is_complete(root, **SMALL)
    assert ensure_demo(**SMALL) == root and len(calls) == 1
    other = ensure_demo(seed=1, **SMALL)
    assert other != root and len(calls) == 2
    # an interrupted generation (no marker yet) is redone, in the same folder
    (root / demo.MARKER).unlink()
    assert ensure_demo(**SMALL) == root and len(calls) == 3
    # a folder the user names is reused, or regenerated when made with other parameters
    mine = tmp_path / "mine"
    ensure_demo(mine, **SMALL)
    ensure_demo(mine, **SMALL)
    assert len(calls) == 4
    ensure_demo(mine, **{**SMALL, "num_frames": 31})
    assert len(calls) == 5 and is_complete(mine, **{**SMALL, "num_frames": 31})


def test_regenerating_into_a_folder_removes_stale_sequences(tmp_path):
    generate_demo(tmp_path, **{**SMALL, "num_sequences": 2})
    generate_demo(tmp_path, **SMALL)
    assert len(list((tmp_path / "posetrack_data" / "val").glob("*.json"))) == 1
    assert len(list((tmp_path / "images" / "val").iterdir())) == 1


def test_bad_parameters_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="num_frames"):
        generate_demo(tmp_path, num_frames=3)
    with pytest.raises(InputError, match="unknown demo parameter"):
        ensure_demo(tmp_path, frames=40)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        generate_demo(tmp_path / "file", **SMALL)
    with pytest.raises(InputError, match="seed"):
        demo.main(["seed=abc"])


def test_command_prints_the_folder(tmp_path, capsys):
    assert demo.main([f"root={tmp_path / 'cli'}", "num_sequences=1", "num_frames=30",
                      "width=320", "height=180"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == tmp_path / "cli" and is_complete(printed, **SMALL)
    # force=1 regenerates a complete folder
    marker = tmp_path / "cli" / demo.MARKER
    before = marker.stat().st_mtime_ns
    assert demo.main([f"root={tmp_path / 'cli'}", "force=1", "num_sequences=1", "num_frames=30",
                      "width=320", "height=180"]) == 0
    assert marker.stat().st_mtime_ns > before and is_complete(printed, **SMALL)
