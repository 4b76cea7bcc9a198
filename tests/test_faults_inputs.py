"""Issue 15, input-side faults: empty frames through every ReID backend, stale input fingerprints,
malformed annotation values, a non-ReID ONNX model, bad or non-ASCII overrides.

Real files throughout: black intro frames written with OpenCV, a truncated JPEG, the PoseTrack18
sample, the shared ONNX models. Every user mistake must end as one ``kprtrack <cmd>: error:`` line
naming the file (or key) and exit code 2.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from tests.conftest import REPO, shared_file
from tests.test_robustness import demo_frames, write_video

OSNET = ["reid.color=rgb", "reid.scale=0.00392156862745098", "reid.mean=[0.485,0.456,0.406]",
         "reid.std=[0.229,0.224,0.225]"]


def light_stack() -> list[str]:
    """The README's light CPU stack with the OSNet export (a 512-D model, unlike the 256-D default)."""
    pytest.importorskip("onnxruntime", reason="the YOLOX and ReID ONNX models need onnxruntime")
    pytest.importorskip("ai_edge_litert", reason="MoveNet needs the ai-edge-litert package")
    return ["detector=yolox_onnx", f"detector.weights={shared_file('models/yolox_nano_416.onnx')}",
            "pose=movenet", f"pose.weights={shared_file('models/movenet_singlepose_lightning_int8.tflite')}",
            "reid=onnx", f"reid.model={shared_file('models/osnet_x0_25_msmt17.onnx')}", *OSNET]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "kprtrack", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=180)


def one_error_line(result: subprocess.CompletedProcess, command: str = "run") -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"kprtrack {command}: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


# ----------------------------------------------------------------------------- 1. empty frames
def _onnx_reid(model: str, *options: str):
    pytest.importorskip("onnxruntime")
    from kprtrack.reid.onnx_reid import OnnxReID

    kwargs = {}
    if options:
        kwargs = dict(color="rgb", scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return OnnxReID(str(shared_file(f"models/{model}")), **kwargs)


@pytest.mark.parametrize("model, dim", [("osnet_x0_25_msmt17.onnx", 512),
                                        ("person-reidentification-retail-0287.onnx", 256)])
def test_onnx_reid_empty_frame_has_the_model_dim(model, dim):
    reid = _onnx_reid(model, *(OSNET if "osnet" in model else ()))
    frame = Frame("s", 0, np.zeros((240, 320, 3), np.uint8))
    out = reid.embed(frame, Detections.empty())
    assert out.embeddings.shape == (0, 1, dim) and out.embeddings.dtype == np.float32
    assert out.visibility.shape == (0, 1)
    emb, vis = reid.embed_crops([])
    assert emb.shape == (0, 1, dim) and vis.shape == (0, 1)
    # A frame with people has the same layout.
    crop = cv2.resize(demo_frames()[0][100:400, 100:250], (128, 256))
    emb, _ = reid.embed_crops([crop])
    assert emb.shape == (1, 1, dim)


def test_part_colors_and_kpr_empty_frames_match_their_person_layout(monkeypatch):
    from kprtrack.reid.part_colors import PartColorsReID

    frame = Frame("s", 0, demo_frames()[0])
    people = Detections(np.array([[100, 100, 250, 400]], np.float32), np.ones(1, np.float32))
    colors = PartColorsReID()
    full, empty = colors.embed(frame, people), colors.embed(frame, Detections.empty())
    assert empty.embeddings.shape == (0, *full.embeddings.shape[1:])
    assert empty.visibility.shape == (0, full.visibility.shape[1])

    from kprtrack.reid.kpr import KPRReID
    from kprtrack.reid.kpr import swin
    from kprtrack.reid.kpr.swin import SwinSpec

    monkeypatch.setitem(swin.SWIN_SPECS, "test_micro_swinv2", SwinSpec(2, embed_dim=16, depths=(2, 2, 2, 2),
                                                                       num_heads=(1, 2, 4, 8), window_size=8))
    with pytest.warns(UserWarning, match="random initialisation"):
        kpr = KPRReID(weights=None, backbone="test_micro_swinv2", height=128, width=64, dim=32, device="cpu")
    full = kpr.embed(frame, people)
    for emb, vis in ((kpr.embed(frame, Detections.empty()).embeddings, None), kpr.embed_crops([])):
        assert emb.shape == (0, *full.embeddings.shape[1:])
        assert vis is None or vis.shape == (0, full.visibility.shape[1])


def test_tracker_does_not_lock_its_layout_on_an_empty_frame():
    from tracker import KPRTracker

    tracker = KPRTracker()
    # What any backend may hand over for a frame without people, even a degenerate (0, 1, 0).
    empty = Detections.empty().with_(embeddings=np.zeros((0, 1, 0), np.float32), visibility=np.zeros((0, 1)))
    assert len(tracker.update(empty).track_ids) == 0
    rng = np.random.default_rng(0)
    people = Detections(np.array([[0, 0, 50, 100], [200, 0, 250, 100]], np.float32), np.ones(2, np.float32),
                        embeddings=rng.normal(size=(2, 1, 512)).astype(np.float32),
                        visibility=np.ones((2, 1), np.float32))
    tracker.update(people)  # born (not the first frame: unconfirmed)
    ids = tracker.update(people).track_ids
    assert (ids > 0).all()
    assert tracker.update(empty).track_ids.shape == (0,)  # and an empty frame after tracks exist
    assert tracker.update(people).track_ids.tolist() == ids.tolist()


@pytest.mark.slow
def test_black_intro_frames_with_the_light_stack(tmp_path):
    frames = demo_frames()
    black = np.zeros_like(frames[0])
    video = write_video(tmp_path / "black_intro.mp4", [black, black, black, *frames])
    out = tmp_path / "run"
    result = cli("run", "dataset=video", f"dataset.path={video}", f"output.dir={out}", "run.progress=false",
                 "run.cache=false", "output.render=false", *light_stack())
    assert result.returncode == 0, result.stderr[-3000:]
    tracks = json.loads((out / "posetrack21/sequences/black_intro.json").read_text())
    frames_with_people = {a["image_id"] for a in tracks["annotations"]}
    assert len(tracks["images"]) == 8 and frames_with_people and min(frames_with_people) >= 3


@pytest.mark.slow
def test_damaged_jpeg_in_an_image_folder_with_the_light_stack(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(demo_frames()):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), frame)
    damaged = folder / "0000.jpg"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 40])  # decodes as a grey frame ("Premature end of JPEG file")
    assert cv2.imread(str(damaged)) is not None
    out = tmp_path / "run"
    result = cli("run", "dataset=images", f"dataset.path={folder}", f"output.dir={out}", "run.progress=false",
                 "run.cache=false", "output.render=false", *light_stack())
    assert result.returncode == 0, result.stderr[-3000:]
    tracks = json.loads((out / "posetrack21/sequences/frames.json").read_text())
    assert len(tracks["images"]) == 5 and {a["image_id"] for a in tracks["annotations"]} - {0}


# ----------------------------------------------------------------------------- 3. stale inputs
def _same_size_same_mtime_rewrite(path: Path, new_bytes: bytes) -> None:
    """What cp -p / rsync -a / tar -x leave behind: other content, same size and modification time."""
    stat = path.stat()
    assert len(new_bytes) == stat.st_size
    path.write_bytes(new_bytes)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


def test_video_fingerprint_follows_content_not_size_and_mtime(tmp_path):
    from kprtrack.data.video import VideoSource

    video = write_video(tmp_path / "clip.avi", demo_frames())
    before = VideoSource(video).fingerprint()
    assert VideoSource(video).fingerprint() == before  # stable
    _same_size_same_mtime_rewrite(video, _flip_middle(video.read_bytes()))
    assert VideoSource(video).fingerprint() != before

    # cp -p of another clip of the same size over it (new inode, same size and mtime)
    after_edit = VideoSource(video).fingerprint()
    data = video.read_bytes()
    other = tmp_path / "other.avi"
    other.write_bytes(data[: len(data) // 3] + bytes(b ^ 0x55 for b in data[len(data) // 3: len(data) // 3 + 64])
                      + data[len(data) // 3 + 64:])
    stat = video.stat()
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(other, video)
    assert video.stat().st_size == stat.st_size and video.stat().st_mtime_ns == stat.st_mtime_ns
    assert VideoSource(video).fingerprint() not in (before, after_edit)


def test_content_hash_is_memoised_and_rehashed_on_any_change(tmp_path, monkeypatch):
    from kprtrack.data import content_hash

    monkeypatch.setattr(content_hash, "RACY_NS", 0)  # the file was written a moment ago
    path = tmp_path / "clip.bin"
    path.write_bytes(os.urandom(3 << 20))
    first = content_hash.file_digest(path)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    reads = []
    real = content_hash._hash_file
    monkeypatch.setattr(content_hash, "_hash_file", lambda p: reads.append(p) or real(p))
    content_hash._MEMO.clear()  # a new process: the on-disk memo answers
    assert content_hash.file_digest(path) == first and reads == []
    _same_size_same_mtime_rewrite(path, _flip_middle(path.read_bytes()))  # ctime moves: rehash
    assert content_hash.file_digest(path) != first and reads == [path]


def test_content_hash_of_a_file_changed_just_now_is_not_remembered(tmp_path, monkeypatch):
    """Timestamps are coarse: a rewrite within the same tick could keep the key, so a file changed
    less than RACY_NS ago is hashed again next time (git's racy-clean rule)."""
    from kprtrack.data import content_hash

    path = tmp_path / "fresh.bin"
    path.write_bytes(b"frame" * 1000)
    first = content_hash.file_digest(path)
    reads = []
    real = content_hash._hash_file
    monkeypatch.setattr(content_hash, "_hash_file", lambda p: reads.append(p) or real(p))
    content_hash._MEMO.clear()
    assert content_hash.file_digest(path) == first and reads == [path]


def test_content_hash_memo_in_an_unwritable_home_is_only_skipped(tmp_path, monkeypatch):
    from kprtrack.data import content_hash

    home = tmp_path / "home"
    home.write_text("a file where the folder should be: unwritable even for root")
    monkeypatch.setenv("KPRTRACK_HOME", str(home))
    monkeypatch.setattr(content_hash, "RACY_NS", 0)
    path = tmp_path / "clip.bin"
    path.write_bytes(b"x" * 4096)
    assert content_hash.file_digest(path) == hashlib.sha256(b"x" * 4096).hexdigest()
    assert home.is_file()


def test_image_folder_fingerprint_follows_image_content(tmp_path):
    from kprtrack.data.video import ImageFolderDataset

    folder = tmp_path / "frames"
    folder.mkdir()
    frames = demo_frames()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i:04d}.png"), frames[i])
    [source] = ImageFolderDataset(str(folder)).sequences()
    before = source.fingerprint()
    png = folder / "0001.png"
    _same_size_same_mtime_rewrite(png, _flip_middle(png.read_bytes()))
    [source] = ImageFolderDataset(str(folder)).sequences()
    assert source.fingerprint() != before


def test_posetrack_frames_replaced_in_place_change_the_fingerprint(shared, tmp_path):
    from kprtrack.data.posetrack import PoseTrackDataset

    root = tmp_path / "pt18"
    shutil.copytree(shared / "data/posetrack18/annotations", root / "annotations")
    shutil.copytree(shared / "data/posetrack18/images", root / "images")
    dataset = PoseTrackDataset(str(root), annotations_dir="annotations", sequences=["003418_mpii_test"])
    [source] = dataset.sequences()
    before = source.fingerprint()
    [image] = (root / "images/val/003418_mpii_test").glob("*.jpg")
    cv2.imwrite(str(image), cv2.flip(cv2.imread(str(image)), 1))  # same name, same JSON, other pixels
    [source] = dataset.sequences()
    assert source.fingerprint() != before


@pytest.mark.slow
def test_stale_video_is_not_reused_by_the_stage_cache(tmp_path):
    """End to end: the second run sees other frames at the same path, size and mtime."""
    frames = demo_frames()
    video, flipped = tmp_path / "clip.avi", tmp_path / "flipped.avi"
    write_video(video, frames)
    write_video(flipped, [cv2.flip(f, 1) for f in frames])
    size = max(video.stat().st_size, flipped.stat().st_size)
    clips = [path.read_bytes() for path in (video, flipped)]
    clips = [data + b"\0" * (size - len(data)) for data in clips]  # padding after the index: same size
    video.write_bytes(clips[0])
    out1, out2 = tmp_path / "run1", tmp_path / "run2"
    common = ["dataset=video", f"dataset.path={video}", "run.progress=false", "output.render=false",
              "run.evaluate=false", *light_stack()]
    first = cli("run", *common, f"output.dir={out1}")
    assert first.returncode == 0, first.stderr[-3000:]
    _same_size_same_mtime_rewrite(video, clips[1])
    second = cli("run", *common, f"output.dir={out2}")
    assert second.returncode == 0, second.stderr[-3000:]
    boxes = [[a["bbox"] for a in json.loads((out / "posetrack21/sequences/clip.json").read_text())["annotations"]]
             for out in (out1, out2)]
    assert boxes[0] and boxes[1] and boxes[0] != boxes[1]


# ----------------------------------------------------------------------------- 8. annotation values
def _sequence_json(shared: Path, tmp_path: Path, edit) -> Path:
    data = json.loads((shared / "data/posetrack18/annotations/val/009473_mpii_test.json").read_text())
    edit(data["annotations"][1])
    path = tmp_path / "009473_mpii_test.json"
    path.write_text(json.dumps(data))
    return path


BAD_VALUES = [
    ("keypoints", lambda a: a.update(keypoints=[str(v) for v in a["keypoints"]]), "keypoints"),
    ("keypoints_string", lambda a: a.update(keypoints="x" * 51), "keypoints"),
    ("keypoints_number", lambda a: a.update(keypoints=7), "keypoints"),
    ("keypoints_nan", lambda a: a["keypoints"].__setitem__(4, float("nan")), "keypoints"),
    ("track_id", lambda a: a.update(track_id="seven"), "track_id"),
    ("track_id_fraction", lambda a: a.update(track_id=1.5), "track_id"),
    ("bbox_strings", lambda a: a.update(bbox=["a", "b", "c", "d"]), "bbox"),
    ("bbox_nan", lambda a: a["bbox"].__setitem__(2, float("nan")), "bbox"),
    ("bbox_number", lambda a: a.update(bbox=3), "bbox"),
    ("bbox_head", lambda a: a.update(bbox_head=["x", 1, 2, 3]), "bbox_head"),
    ("person_id", lambda a: a.update(person_id=[1]), "person_id"),
]


@pytest.mark.parametrize("name, edit, key", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_malformed_annotation_values_are_one_message(shared, tmp_path, name, edit, key):
    from kprtrack.data.posetrack import load_sequence_json
    from kprtrack.eval.posetrack_files import load_ground_truth

    path = _sequence_json(shared, tmp_path, edit)
    for load in (load_sequence_json, lambda p: load_ground_truth(p)):
        with pytest.raises(InputError) as err:
            load(path)
        message = str(err.value)
        assert str(path) in message and "annotations[1]" in message and key in message, message


@pytest.mark.parametrize("edit, phrase", [
    (lambda im: im.update(file_name=["a.jpg"]), "file_name must be a string"),
    (lambda im: im.update(ignore_regions_x=[["a", 1, 2]]), "ignore_regions_x[0][0]"),
    (lambda im: im.update(ignore_regions_y="1,2,3"), "ignore_regions_y must be a list"),
    (lambda im: im.update(id=[1]), "id must be an integer"),
])
def test_malformed_image_values_are_one_message(shared, tmp_path, edit, phrase):
    from kprtrack.data.posetrack import load_sequence_json

    data = json.loads((shared / "data/posetrack18/annotations/val/009473_mpii_test.json").read_text())
    edit(data["images"][0])
    path = tmp_path / "seq.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_sequence_json(path)
    assert str(path) in str(err.value) and "images[0]" in str(err.value) and phrase in str(err.value), str(err.value)


@pytest.mark.slow
def test_malformed_annotation_through_the_cli(shared, tmp_path):
    root = tmp_path / "pt18"
    shutil.copytree(shared / "data/posetrack18/images", root / "images")
    (root / "annotations/val").mkdir(parents=True)
    _sequence_json(shared, root / "annotations/val", lambda a: a.update(track_id="seven"))
    result = cli("run", "dataset=posetrack21", f"dataset.root={root}", "dataset.annotations_dir=annotations",
                 "detector=groundtruth", "pose=groundtruth", "reid=part_colors", "output.filters.enabled=false",
                 f"output.dir={tmp_path / 'run'}", "run.progress=false")
    message = one_error_line(result)
    assert "009473_mpii_test.json" in message and "track_id" in message and "'seven'" in message
    gt = root / "annotations/val"
    result = cli("eval", "format=posetrack", f"gt={gt}", f"pred={gt}")
    message = one_error_line(result, "eval")
    assert "009473_mpii_test.json" in message and "track_id" in message


# ----------------------------------------------------------------------------- 9. not a ReID model
def test_a_detector_onnx_is_refused_as_the_reid_model():
    with pytest.raises(InputError) as err:
        _onnx_reid("yolox_nano_416.onnx")
    message = str(err.value)
    assert "yolox_nano_416.onnx" in message and "[1, 3549, 85]" in message and "not a person-ReID" in message


@pytest.mark.slow
def test_a_detector_onnx_as_reid_through_the_cli(tmp_path):
    video = write_video(tmp_path / "clip.mp4", demo_frames()[:2])
    stack = [a for a in light_stack() if not a.startswith(("reid.", "reid="))]
    result = cli("run", "dataset=video", f"dataset.path={video}", f"output.dir={tmp_path / 'run'}",
                 "run.progress=false", *stack, "reid=onnx", f"reid.model={shared_file('models/yolox_nano_416.onnx')}")
    message = one_error_line(result)
    assert "yolox_nano_416.onnx" in message and "not a person-ReID" in message


# ----------------------------------------------------------------------------- 10/11. overrides
@pytest.mark.parametrize("args, phrases", [
    (["dataset=video"], ["dataset.path", "missing"]),
    (["dataset=images"], ["dataset.path", "missing"]),
    (["output.dir=${nope}"], ["output.dir", "${nope}"]),
    (["dataset=posetrack21", "dataset.root=${oc.env:KPRTRACK_TEST_UNSET_VARIABLE}"],
     ["dataset.root", "KPRTRACK_TEST_UNSET_VARIABLE"]),
    (["run.batch_size=abc"], ["run.batch_size", "'abc'", "integer"]),
    (["tracker.track_buffer=1.5"], ["tracker.track_buffer", "integer"]),
    (["run.cache=maybe"], ["run.cache", "true or false"]),
    (["tracker.ema_alpha=high"], ["tracker.ema_alpha", "number"]),
])
@pytest.mark.slow
def test_bad_overrides_are_one_line(tmp_path, args, phrases):
    result = cli("run", *args, "run.progress=false", cwd=tmp_path)
    message = one_error_line(result)
    assert all(p in message for p in phrases), message
    assert not list(tmp_path.glob("outputs/*/*")), "a failed start leaves no run folder"


@pytest.mark.slow
def test_missing_value_does_not_break_cfg_printing(tmp_path):
    result = cli("run", "dataset=video", "--cfg", cwd=tmp_path)
    assert result.returncode == 0 and "path: ???" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
def test_non_ascii_path_works_without_quoting(tmp_path):
    folder = tmp_path / "vidéos à voir"
    folder.mkdir()
    missing = folder / "clip_été.mp4"
    result = cli("run", "dataset=video", f"dataset.path={missing}", "run.progress=false", cwd=tmp_path)
    message = one_error_line(result)
    assert f"{missing}: video not found" in message  # the override was read as the path it is
    video = write_video(folder / "clip_été.mp4", demo_frames()[:2])
    result = cli("run", "dataset=video", f"dataset.path={video}", f"output.dir={tmp_path / 'rün'}",
                 "run.progress=false", "run.cache=false", "output.render=false", *light_stack(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "rün/posetrack21/sequences/clip_été.json").is_file()


def test_non_ascii_that_cannot_be_quoted_for_you_says_how(tmp_path):
    result = cli("run", "dataset.sequences=[séq]", "run.progress=false", cwd=tmp_path)
    message = one_error_line(result)
    assert "dataset.sequences=[séq]" in message and "quote" in message and '"' in message, message
