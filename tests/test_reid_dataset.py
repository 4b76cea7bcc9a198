"""reid-dataset: Occ-PTrack builder on a synthetic PoseTrack-layout set and on real PoseTrack18 files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kprtrack.cli import main as cli_main
from kprtrack.reid import dataset as occ
from kprtrack.reid.mpol import bin_index, mpol, occlusion_counts

# ------------------------------------------------------------------ synthetic PoseTrack-layout fixture

COLOURS = {1: ((40, 40, 200), (200, 60, 20)), 2: ((40, 200, 40), (30, 30, 30)), 3: ((200, 40, 200), (220, 220, 220)),
           4: ((0, 200, 255), (120, 0, 60))}  # person_id -> (shirt, trousers) BGR


def person_keypoints(cx: float, top: float) -> np.ndarray:
    """17 PoseTrack keypoints of an upright 40x120 figure (ears unlabelled, as in PoseTrack)."""
    offsets = [(0, 10), (0, 20), (0, 2), None, None, (-12, 28), (12, 28), (-16, 45), (16, 45), (-18, 60),
               (18, 60), (-8, 65), (8, 65), (-8, 90), (8, 90), (-8, 115), (8, 115)]
    kps = np.zeros((17, 3), np.float32)
    for j, off in enumerate(offsets):
        if off is not None:
            kps[j] = (cx + off[0], top + off[1], 1)
    return kps


def draw_person(image: np.ndarray, pid: int, kps: np.ndarray) -> None:
    shirt, trousers = COLOURS[pid]
    p = kps[:, :2].astype(int)
    cv2.circle(image, tuple(p[0]), 9, (150, 180, 230), -1)
    cv2.rectangle(image, tuple(p[6] - [0, 0]), tuple(p[11]), shirt, -1)
    cv2.rectangle(image, tuple(p[5]), tuple(p[12]), shirt, -1)
    for a, b in ((5, 7), (7, 9), (6, 8), (8, 10)):
        cv2.line(image, tuple(p[a]), tuple(p[b]), shirt, 6)
    for a, b in ((11, 13), (13, 15), (12, 14), (14, 16)):
        cv2.line(image, tuple(p[a]), tuple(p[b]), trousers, 8)


def write_posetrack_fixture(root: Path, frames: int = 12, with_person_id: bool = True) -> Path:
    """Two videos; person 1 walks across person 2 (occlusion); person 1 and 2 appear in both videos."""
    videos = {"000001_fixture": [1, 2, 3], "000002_fixture": [2, 4, 1]}
    for v, (video, pids) in enumerate(videos.items()):
        images, annotations = [], []
        for f in range(frames):
            image = np.full((200, 320, 3), 90, np.uint8)
            image_id = int(f"1{v:03d}{f:04d}")
            people = []
            for slot, pid in enumerate(pids):
                cx = 60 + 100 * slot + (12 * f if slot == 0 else 0)  # slot 0 walks right, through slot 1
                people.append((pid, slot, person_keypoints(cx, 40 + 5 * slot)))
            for pid, slot, kps in sorted(people, key=lambda p: p[1]):
                draw_person(image, pid, kps)
            name = f"images/val/{video}/{f:06d}.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name), image)
            images.append({"id": image_id, "file_name": name, "frame_id": image_id, "vid_id": video[:6],
                           "is_labeled": True, "nframes": frames, "width": 320, "height": 200})
            for pid, slot, kps in people:
                visible = kps[kps[:, 2] > 0, :2]
                x1, y1 = visible.min(axis=0) - 6
                x2, y2 = visible.max(axis=0) + 6
                ann = {"id": image_id * 10 + slot, "image_id": image_id, "category_id": 1, "track_id": slot,
                       "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                       "keypoints": kps.ravel().tolist()}
                if with_person_id:
                    ann["person_id"] = pid
                annotations.append(ann)
        path = root / "posetrack_data" / "val" / f"{video}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "person"}]}))
    return root


def build_fixture_dataset(tmp_path: Path, *extra: str) -> Path:
    root = write_posetrack_fixture(tmp_path / "pt21")
    out = tmp_path / "occ"
    assert cli_main(["reid-dataset", f"root={root}", f"output_dir={out}", "max_samples_per_id=10", *extra]) == 0
    return out


# ------------------------------------------------------------------ MPOL (eq. 3)

def test_occlusion_counts_and_mpol_by_hand():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [100, 100, 110, 110]], np.float32)
    kps = np.zeros((3, 17, 3), np.float32)
    kps[0, :3] = [[1, 1, 1], [6, 6, 1], [9, 9, 0]]  # 2 visible
    kps[1, :4] = [[7, 7, 1], [8, 8, 1], [15, 15, 1], [30, 30, 1]]  # 4 visible, 2 inside box 0
    kps[2, :1] = [[105, 105, 1]]
    negatives, positives = occlusion_counts(boxes, kps)
    # box 1 contains person 0's (6, 6) only; box 0 contains person 1's (7, 7) and (8, 8).
    assert negatives.tolist() == [2, 1, 0]
    assert positives.tolist() == [2, 4, 1]
    # N - P = [0, -3, -1] -> (x + 3) / 3
    np.testing.assert_allclose(mpol(negatives, positives), [1.0, 0.0, 2 / 3])
    assert mpol([1, 1], [0, 0]).tolist() == [0.0, 0.0]
    assert bin_index([0.0, 0.19, 0.2, 0.99, 1.0], [0, 0.2, 0.4, 0.6, 0.8, 1.0]).tolist() == [0, 0, 1, 4, 4]


def _sample(identity: str, frame: int, neg: int = 0, pos: int = 10, video: str = "v") -> occ.Sample:
    return occ.Sample(identity=identity, person_id=int(identity), track_id=0, video=video, frame=frame, image_id=frame,
                      source_file="x.jpg", box=np.zeros(4, np.float32), keypoints=np.zeros((17, 3), np.float32),
                      negatives=np.zeros((0, 17, 3), np.float32), num_negative=neg, num_positive=pos)


def test_uniform_sampling_keeps_first_and_last_evenly_spaced():
    group = [_sample("1", f) for f in range(50)]
    picked = [s.frame for s in occ.uniform_sample(group, 20)]
    assert len(picked) == 20 and picked[0] == 0 and picked[-1] == 49
    assert len(set(picked)) == 20 and max(np.diff(picked)) - min(np.diff(picked)) <= 1
    assert [s.frame for s in occ.uniform_sample(group[:7], 20)] == list(range(7))


def test_identity_sampling_drops_short_identities_and_orders_by_video_then_frame():
    samples = [_sample("7", f, video="b") for f in range(3)] + [_sample("7", f, video="a") for f in range(3)]
    samples += [_sample("8", f) for f in range(3)]
    groups = occ.sample_identities(samples, min_samples=4, max_samples=20)
    assert list(groups) == ["7"]
    assert [(s.video, s.frame) for s in groups["7"]] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]


def test_query_split_takes_floor_20_percent_most_occluded():
    group = [_sample("1", f, neg=n) for f, n in enumerate([0, 5, 1, 9, 2, 0, 0, 3, 0, 0])]
    short = [_sample("2", f, neg=f) for f in range(4)]
    query, gallery = occ.split_query_gallery({"1": group, "2": short}, 0.2)
    assert sorted(s.num_negative for s in query) == [5, 9]  # 2 of 10; none of the 4-crop identity
    assert len(gallery) == 8 + 4


def test_identity_choice_is_seeded():
    groups = {str(i): [_sample(str(i), 0)] for i in range(30)}
    first = list(occ.choose_identities(groups, 10, seed=3))
    assert first == list(occ.choose_identities(groups, 10, seed=3)) and len(first) == 10
    assert first != list(occ.choose_identities(groups, 10, seed=4))
    assert len(occ.choose_identities(groups, -1, seed=0)) == 30


# ------------------------------------------------------------------ end to end on the synthetic set

def test_builder_on_posetrack_layout(tmp_path, capsys):
    out = build_fixture_dataset(tmp_path)
    printed = capsys.readouterr().out
    assert "| Subset | # Ids | # Imgs | # Videos |" in printed
    assert "train subset skipped" in printed  # the fixture has no train split
    summary = json.loads((out / "dataset.json").read_text())
    table = {row["subset"]: row for row in summary["table"]}
    # 4 identities, 12 frames each per video; 1 and 2 are in both videos (24 -> sampled to 10).
    assert table["query"] == {"subset": "query", "ids": 4, "images": 8, "videos": 2}
    assert table["gallery"] == {"subset": "gallery", "ids": 4, "images": 32, "videos": 2}
    assert (out / "table.md").read_text().count("|") > 10

    query = json.loads((out / "splits/query.json").read_text())
    gallery = json.loads((out / "splits/gallery.json").read_text())
    for record in query + gallery:
        crop = cv2.imread(str(out / record["file"]))
        assert crop.shape[:2] == (record["height"], record["width"])
        kps = np.asarray(record["keypoints"])
        visible = kps[kps[:, 2] > 0]
        assert len(visible) == record["num_positive"] == 15
        assert (visible[:, 0] >= 0).all() and (visible[:, 0] < record["width"]).all()
        negatives = np.asarray(record["negative_keypoints"]).reshape(-1, 17, 3)
        assert int((negatives[..., 2] > 0).sum()) == record["num_negative"]
        if negatives.size:  # negatives are the other person's keypoints inside this crop
            inside = negatives[negatives[..., 2] > 0]
            assert (inside[:, 0] >= 0).all() and (inside[:, 0] < record["width"]).all()
    # Queries are each identity's most occluded crops, and MPOL is eq. 3 over the query set.
    for identity in {r["identity"] for r in query}:
        worst_gallery = max(r["occlusion"] for r in gallery if r["identity"] == identity)
        assert min(r["occlusion"] for r in query if r["identity"] == identity) >= worst_gallery
    q_mpol = [r["mpol"] for r in query]
    assert min(q_mpol) == 0.0 and max(q_mpol) == 1.0
    assert any(r["num_negative"] > 0 for r in query)

    rows = list(csv.DictReader((out / "splits/query.csv").open()))
    assert len(rows) == 8 and set(occ.CSV_COLUMNS) <= set(rows[0])


@pytest.mark.slow
def test_builder_is_reproducible_and_keypoints_match_source(tmp_path):
    out = build_fixture_dataset(tmp_path)
    again = tmp_path / "again"
    assert cli_main(["reid-dataset", f"root={tmp_path / 'pt21'}", f"output_dir={again}", "max_samples_per_id=10"]) == 0
    assert (out / "splits/query.json").read_text() == (again / "splits/query.json").read_text()
    record = json.loads((out / "splits/gallery.json").read_text())[0]
    source = json.loads((tmp_path / "pt21/posetrack_data/val" / f"{record['video']}.json").read_text())
    ann = next(a for a in source["annotations"] if a["image_id"] == record["image_id"]
               and a["person_id"] == int(record["identity"]))
    kps = np.asarray(ann["keypoints"]).reshape(17, 3)
    shifted = kps[:, :2] - record["box"][:2]
    np.testing.assert_allclose(np.asarray(record["keypoints"])[kps[:, 2] > 0, :2], shifted[kps[:, 2] > 0], atol=0.01)


def test_track_id_fallback_is_reported(tmp_path, capsys):
    root = write_posetrack_fixture(tmp_path / "pt", frames=6, with_person_id=False)
    assert cli_main(["reid-dataset", f"root={root}", f"output_dir={tmp_path / 'o'}"]) == 0
    printed = capsys.readouterr().out
    assert "no person_id" in printed and "(video, track_id)" in printed
    summary = json.loads((tmp_path / "o/dataset.json").read_text())
    assert {row["subset"]: row["ids"] for row in summary["table"]}["gallery"] == 6  # 3 tracks x 2 videos


def test_train_subset_with_seeded_identity_choice(tmp_path):
    root = write_posetrack_fixture(tmp_path / "pt", frames=6)
    (root / "posetrack_data/train").mkdir()
    for path in (root / "posetrack_data/val").glob("*.json"):  # reuse the val videos as a train split
        (root / "posetrack_data/train" / path.name).write_text(path.read_text())
    out = tmp_path / "o"
    assert cli_main(["reid-dataset", f"root={root}", f"output_dir={out}", "train_identities=2"]) == 0
    table = {r["subset"]: r for r in json.loads((out / "dataset.json").read_text())["table"]}
    assert table["train"]["ids"] == 2
    assert {r["identity"] for r in json.loads((out / "splits/train.json").read_text())} <= {"1", "2", "3", "4"}


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    assert cli_main(["reid-dataset", f"output_dir={tmp_path}"]) == 2
    assert "root=" in capsys.readouterr().err
    assert cli_main(["reid-dataset", f"root={tmp_path / 'nope'}"]) == 2
    assert "nope" in capsys.readouterr().err
    root = write_posetrack_fixture(tmp_path / "pt", frames=2)
    (root / "posetrack_data/val/000001_fixture.json").write_text("{\"images\": [")
    assert cli_main(["reid-dataset", f"root={root}", f"output_dir={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err
    assert "000001_fixture.json" in err and len(err.strip().splitlines()) == 1
    root = write_posetrack_fixture(tmp_path / "pt2", frames=1)  # at most 2 crops per identity
    assert cli_main(["reid-dataset", f"root={root}", f"output_dir={tmp_path / 'o2'}"]) == 2
    assert "min_samples_per_id" in capsys.readouterr().err


# ------------------------------------------------------------------ real PoseTrack18 annotations

def test_real_posetrack18_frames(shared, tmp_path, capsys):
    root = shared / "data/posetrack18"
    out = tmp_path / "occ18"
    assert cli_main(["reid-dataset", f"root={root}", "annotations_dir=annotations", "min_samples_per_id=1",
                     f"output_dir={out}"]) == 0
    assert "no person_id" in capsys.readouterr().out  # PoseTrack18 has track ids only
    gallery = json.loads((out / "splits/gallery.json").read_text())
    table = {r["subset"]: r for r in json.loads((out / "dataset.json").read_text())["table"]}
    assert table["gallery"] == {"subset": "gallery", "ids": 14, "images": 14, "videos": 3}
    # Independent count of N (other people's visible keypoints inside the box) from the raw file.
    for record in gallery:
        raw = json.loads((root / "annotations/val" / f"{record['video']}.json").read_text())["annotations"]
        me = next(a for a in raw if a["track_id"] == record["track_id"])
        x, y, w, h = me["bbox"]
        expected = sum(1 for a in raw if a is not me for j in range(17)
                       if a["keypoints"][3 * j + 2] > 0 and x <= a["keypoints"][3 * j] < x + w
                       and y <= a["keypoints"][3 * j + 1] < y + h)
        assert record["num_negative"] == expected
        assert cv2.imread(str(out / record["file"])).shape[:2] == (record["height"], record["width"])
    assert any(r["num_negative"] > 0 for r in gallery)  # 009473: two overlapping people


# ------------------------------------------------------------------ the synthetic demo set (the check)

@pytest.mark.slow
def test_demo_flag_builds_from_the_generated_demo(tmp_path, capsys):
    out = tmp_path / "occ_demo"
    assert cli_main(["reid-dataset", "demo=true", f"output_dir={out}"]) == 0
    assert "| query |" in capsys.readouterr().out
    summary = json.loads((out / "dataset.json").read_text())
    table = {r["subset"]: r for r in summary["table"]}
    query = json.loads((out / "splits/query.json").read_text())
    gallery = json.loads((out / "splits/gallery.json").read_text())
    per_id = {}
    for record in query + gallery:
        per_id[record["identity"]] = per_id.get(record["identity"], 0) + 1
    assert all(4 <= n <= 20 for n in per_id.values())
    assert table["query"]["images"] == sum(int(0.2 * n + 1e-9) for n in per_id.values()) > 0
    assert table["gallery"]["ids"] == len(per_id) and table["gallery"]["videos"] >= 2
    assert any(r["num_negative"] > 0 for r in query)  # the demo scripts people crossing each other
    videos_of: dict[str, set] = {}
    for record in query + gallery:
        videos_of.setdefault(record["identity"], set()).add(record["video"])
    assert any(len(v) > 1 for v in videos_of.values())  # person_id links a person across sequences
