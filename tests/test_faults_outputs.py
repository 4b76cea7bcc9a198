"""Faults on the output side of ``run`` (issue 15, causes 2, 4, 5, 6, 7, 12, 13, 14): what a fault may
and may not lose. Real faults where the machine allows them (a full or read-only tmpfs, a folder that
is a file), injected ENOSPC otherwise.

The stub stages (pose and ReID: the memory benchmark's) and the synthetic data set below are plugins (``_target_``) that cost nothing, so the
tests exercise the pipeline, the cache and the writers, not the models. Subprocesses import them
from this file with ``tests/`` on PYTHONPATH.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.memory import StubDetector, StubPose, StubReID  # noqa: F401 - plugins (_target_) of the runs below
from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame
from tests.test_robustness import decodable_frames

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
HERE = "test_faults_outputs"


# --------------------------------------------------------------------------- plugins (stub stages)
class SyntheticSource:
    has_ground_truth = False

    def __init__(self, name: str, num_frames: int, width: int, height: int, bad: bool = False):
        self.name, self.num_frames, self.width, self.height, self.bad = name, num_frames, width, height, bad
        self.fps = 10.0

    def __len__(self):
        return self.num_frames

    @property
    def meta(self):
        return {"fps": self.fps, "source": self.name}

    def fingerprint(self):
        return f"synthetic:{self.name}:{self.num_frames}:{self.width}x{self.height}"

    def frames(self, decode=True):
        for index in range(self.num_frames):
            if self.bad and index == 3:
                raise InputError("damaged frame 3 (test)", f"/synthetic/{self.name}")
            image = None
            if decode:
                image = np.full((self.height, self.width, 3), (index * 7) % 255, np.uint8)
            yield Frame(sequence=self.name, index=index, image=image, file_name=f"{self.name}/{index:06d}.jpg",
                        width=self.width, height=self.height)


class SyntheticDataset:
    """``num_sequences`` sequences ``seq0..`` of ``num_frames`` frames; ``bad`` names damaged ones."""

    has_ground_truth = False
    gt_dir = path = files = None

    def __init__(self, num_sequences=3, num_frames=12, width=64, height=48, bad=(), **_):
        self.num_sequences, self.num_frames, self.width, self.height = num_sequences, num_frames, width, height
        self.bad = set(bad or ())

    def sequences(self):
        for i in range(self.num_sequences):
            yield SyntheticSource(f"seq{i}", self.num_frames, self.width, self.height, f"seq{i}" in self.bad)


class Killer:
    """A streaming writer that sends ``$KPRTRACK_SIGNAL`` to its own process at frame
    ``$KPRTRACK_KILL_FRAME`` of sequence number ``$KPRTRACK_KILL_AT`` (0-based)."""

    requires, filtered = frozenset(), False

    def __init__(self, dir: str):
        self.count = -1

    def begin_sequence(self, name, meta):
        self.count += 1

    def write(self, frame, detections):
        kill_at = os.environ.get("KPRTRACK_KILL_AT")
        if kill_at is not None and self.count == int(kill_at) and frame.index == int(os.environ["KPRTRACK_KILL_FRAME"]):
            os.kill(os.getpid(), getattr(signal, os.environ.get("KPRTRACK_SIGNAL", "SIGKILL")))
            time.sleep(5)

    def end_sequence(self):
        return []

    def abort(self):
        pass


# three people 12 px wide in 64x48 frames, walking right
STUBS = [f"dataset._target_={HERE}.SyntheticDataset", f"detector._target_={HERE}.StubDetector",
         "+detector.left=2", "+detector.spacing=20", "+detector.width=12", "+detector.top=4", "+detector.bottom=40",
         "+detector.step=0.5", "+detector.period=40",
         f"pose._target_={HERE}.StubPose", f"reid._target_={HERE}.StubReID", "run.progress=false"]


VIDEO_STUBS = ["dataset=video", *STUBS[1:]]


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def run_main(*args):
    from kprtrack.pipeline import main

    return main([*STUBS, *args])


def cli(*args, env=None, timeout=120, cwd=None, stubs=STUBS):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "kprtrack", "run", *stubs, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def outputs(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for sub in ("posetrack21/sequences", "mot")
            for p in sorted((run_dir / sub).glob("*"))}


def hidden_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob(".*") if p.is_file()]


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    [line] = [l for l in stderr.splitlines() if l.startswith("kprtrack run: error:")]
    return line


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(name, size, ro=False)``: a real tmpfs (root only); skips where mounting is not allowed."""
    mounted = []

    def mount(name: str, size: str, ro: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount(point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], check=True)


# --------------------------------------------------------------------------- cause 2: cache failures
def test_unwritable_cache_is_a_warning_and_every_sequence_is_kept(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    out = tmp_path / "run"
    assert run_main(f"output.dir={out}", f"run.cache_dir={blocker}/cache", "output.render=false") == 0
    err = capsys.readouterr().err
    assert "warning" in err.lower() and "cache" in err.lower() and str(blocker) in err, err
    state = json.loads((out / "state.json").read_text())
    assert set(state["finished"]) == {"seq0", "seq1", "seq2"}
    assert len(outputs(out)) == 6


@pytest.mark.slow
def test_full_cache_folder_is_a_warning_and_writers_finish_first(tmp_path, mount_tmpfs, capsys):
    cache = mount_tmpfs("cache", "64k")
    out = tmp_path / "run"
    args = [f"output.dir={out}", f"run.cache_dir={cache}", "output.render=false", "dataset.num_frames=200"]
    assert run_main(*args) == 0
    assert "warning" in capsys.readouterr().err.lower()
    assert len(outputs(out)) == 6
    assert not hidden_files(cache) and not [p for p in cache.rglob("*.npz") if p.stat().st_size == 0]


# --------------------------------------------------------------------------- cause 4: one run per folder
@pytest.mark.slow
def test_a_second_run_in_a_locked_folder_is_refused_naming_folder_and_pid(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, sys, time, os\n"
                               f"f = open({str(out / '.kprtrack.lock')!r}, 'a+')\n"
                               "fcntl.flock(f, fcntl.LOCK_EX)\n"
                               "f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush()\n"
                               "print('locked', flush=True); time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError) as caught:
            run_main(f"output.dir={out}", "output.render=false")
        message = str(caught.value)
        assert str(out) in message and str(holder.pid) in message and "another" in message
        assert not (out / "state.json").exists() and not (out / "posetrack21").exists()
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its holder: the folder is usable again
    assert run_main(f"output.dir={out}", "output.render=false") == 0


@pytest.mark.slow
def test_lock_is_released_after_a_run_and_a_new_run_resets_the_state(tmp_path):
    out = tmp_path / "run"
    assert run_main(f"output.dir={out}", "output.render=false") == 0
    lock = out / ".kprtrack.lock"
    if lock.exists():
        with open(lock, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # not held any more
    # A new run (not a resume) with other settings starts from an empty state at once: killed before
    # its first sequence ends, a resume with its settings never takes the earlier run's files as its own.
    with pytest.raises(InputError, match="damaged"):
        run_main(f"output.dir={out}", "output.render=false", "tracker.track_buffer=5", "+dataset.bad=[seq0]")
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] == {}


def test_two_render_writers_of_one_sequence_do_not_share_a_temp_file(tmp_path):
    from kprtrack.render import VideoRenderWriter

    writers = [VideoRenderWriter(dir=str(tmp_path)) for _ in range(2)]
    for writer in writers:
        writer.begin_sequence("clip", {"fps": 10})
    for i in range(5):
        for writer in writers:
            writer.write(Frame("clip", i, np.zeros((48, 64, 3), np.uint8)), Detections.empty())
    for writer in writers:
        [path] = writer.end_sequence()
    assert decodable_frames(path) == 5
    assert not hidden_files(tmp_path)


# --------------------------------------------------------------------------- cause 5: render writer
@pytest.mark.parametrize("fps", [0.0, 0.005, -5.0, float("nan"), float("inf"), 90000.0])
def test_render_unusable_fps_falls_back_to_25_with_a_warning(tmp_path, fps, capsys):
    from kprtrack.render import VideoRenderWriter

    writer = VideoRenderWriter(dir=str(tmp_path))
    writer.begin_sequence("clip", {"fps": fps, "source": "/videos/clip.mp4"})
    for i in range(4):
        writer.write(Frame("clip", i, np.zeros((48, 64, 3), np.uint8)), Detections.empty())
    [path] = writer.end_sequence()
    assert decodable_frames(path) == 4
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) == 25
    err = capsys.readouterr().err
    assert "warning" in err and "/videos/clip.mp4" in err and "25" in err, err


@pytest.mark.parametrize("size", [(1, 1), (9000, 20), (30, 8500)])
def test_render_odd_frame_sizes_are_scaled_with_a_warning(tmp_path, size, capsys):
    from kprtrack.render import VideoRenderWriter

    width, height = size
    writer = VideoRenderWriter(dir=str(tmp_path))
    writer.begin_sequence("clip", {"fps": 10, "source": "clip.avi"})
    boxes = Detections(np.array([[0, 0, width / 2, height / 2]], np.float32), np.ones(1), track_ids=np.array([1]))
    for i in range(3):
        writer.write(Frame("clip", i, np.zeros((height, width, 3), np.uint8)), boxes)
    [path] = writer.end_sequence()
    assert decodable_frames(path) == 3
    assert "warning" in capsys.readouterr().err


def test_unwritable_render_folder_is_one_clear_error(tmp_path):
    from kprtrack.errors import OutputError
    from kprtrack.render import VideoRenderWriter

    (tmp_path / "render").write_text("a file where the folder should be")
    writer = VideoRenderWriter(dir=str(tmp_path))
    writer.begin_sequence("clip", {"fps": 10})
    with pytest.raises(OutputError, match="render"):
        writer.write(Frame("clip", 0, np.zeros((48, 64, 3), np.uint8)), Detections.empty())


@pytest.mark.slow
def test_image_folder_with_infinite_fps_renders_at_25(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((32, 48, 3), 40 * i, np.uint8))
    out = tmp_path / "run"
    result = cli("dataset=images", f"dataset.path={frames}", "dataset.fps=inf", f"output.dir={out}",
                 stubs=STUBS[1:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" in result.stderr and "25" in result.stderr
    assert decodable_frames(out / "render" / "frames.mp4") == 3


# --------------------------------------------------------------------------- cause 6: output I/O errors
@pytest.mark.slow
def test_output_dir_that_is_a_file_is_one_clear_error(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    result = cli(f"output.dir={target}")
    assert result.returncode == 3, result.stderr[-3000:]
    assert str(target) in one_error_line(result.stderr)
    assert target.read_text() == "not a folder"


@pytest.mark.slow
def test_read_only_output_dir_is_one_clear_error(tmp_path, mount_tmpfs):
    point = mount_tmpfs("ro", "1m", ro=True)
    result = cli(f"output.dir={point}/run")
    assert result.returncode == 3, result.stderr[-3000:]
    line = one_error_line(result.stderr)
    assert str(point) in line and "read-only" in line.lower(), line


@pytest.mark.slow
def test_full_output_disk_publishes_no_torn_file_and_keeps_finished_sequences(tmp_path, mount_tmpfs):
    point = mount_tmpfs("full", "160k")
    out = point / "run"
    # frames of noise compress badly: the second sequence's video does not fit
    result = cli(f"output.dir={out}", "dataset.num_frames=40", "dataset.width=160", "dataset.height=120",
                 "run.cache=false", f"dataset._target_={HERE}.NoisyDataset")
    assert result.returncode == 3, result.stderr[-3000:]
    line = one_error_line(result.stderr)
    assert str(out) in line and "space" in line.lower(), line
    state = json.loads((out / "state.json").read_text())
    for name, files in state["finished"].items():
        assert all((out / f).is_file() for f in files)
    for video in (out / "render").glob("*.mp4"):
        assert decodable_frames(video) == 40, video  # never a torn video under a final name
    for track_file in (out / "posetrack21/sequences").glob("*.json"):
        json.loads(track_file.read_text())
    assert not hidden_files(out)


class NoisyDataset(SyntheticDataset):
    def sequences(self):
        for source in super().sequences():
            source.frames = _noisy(source.frames)
            yield source


def _noisy(frames):
    def noisy(decode=True):
        rng = np.random.default_rng(0)
        for frame in frames(decode):
            if frame.image is not None:
                frame.image = rng.integers(0, 256, frame.image.shape, dtype=np.uint8)
            yield frame
    return noisy


@pytest.mark.slow
def test_enospc_on_a_track_file_keeps_finished_sequences(tmp_path, monkeypatch, capsys):
    import kprtrack.writers as writers

    real = writers.MotWriter.end_sequence
    calls = []

    def full_disk(self):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.out_dir / f"{self._name}.txt"))
        return real(self)

    monkeypatch.setattr(writers.MotWriter, "end_sequence", full_disk)
    out = tmp_path / "run"
    from kprtrack.errors import OutputError

    with pytest.raises(OutputError, match="space"):
        run_main(f"output.dir={out}", "output.render=false")
    state = json.loads((out / "state.json").read_text())
    assert list(state["finished"]) == ["seq0"]
    assert not hidden_files(out)


@pytest.mark.slow
def test_read_only_kprtrack_home_still_runs_the_demo(tmp_path, mount_tmpfs):
    home = mount_tmpfs("home", "64m")
    env = {"KPRTRACK_HOME": str(home)}
    first = subprocess.run([sys.executable, "-m", "kprtrack", "demo"], capture_output=True, text=True, env={
        **os.environ, **env}, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    remount(home, "ro")
    result = subprocess.run([sys.executable, "-m", "kprtrack", "run", "run.progress=false", "output.render=false",
                             f"output.dir={tmp_path / 'run'}"], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "warning" in result.stderr.lower()


# --------------------------------------------------------------------------- cause 7: memory
def test_batch_size_must_be_positive(tmp_path):
    for value in (0, -1):
        with pytest.raises(InputError, match="run.batch_size"):
            run_main(f"output.dir={tmp_path / str(value)}", f"run.batch_size={value}")
        assert not (tmp_path / str(value)).exists()


def _traced_peak(tmp_path, frames: int, *extra: str) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        assert run_main(f"output.dir={tmp_path / f'run{frames}'}", "output.render=false", "dataset.num_sequences=1",
                        f"dataset.num_frames={frames}", "dataset.width=32", "dataset.height=24",
                        f"run.cache_dir={tmp_path / 'cache'}", *extra) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cache", ["true", "false"])
@pytest.mark.slow
def test_memory_does_not_grow_with_video_length(tmp_path, cache):
    """3 people x 512-D embeddings: ~6 kB of stage outputs per frame. Held to the end of the sequence,
    1200 more frames would cost ~7 MB; kept flat, well under 1.5 MB (the writers' own spools are on disk)."""
    # A first run pays for lazy imports and process-wide caches (Hydra's config repository, code
    # checksums): not what this test measures.
    _traced_peak(tmp_path / "warm", 50, f"run.cache={cache}", "output.filters.enabled=true")
    short = _traced_peak(tmp_path, 300, f"run.cache={cache}", "output.filters.enabled=true")
    long = _traced_peak(tmp_path, 1500, f"run.cache={cache}", "output.filters.enabled=true")
    assert long - short < 1.5e6, (short, long)


@pytest.mark.slow
def test_spilled_cache_replays_the_same_tracks(tmp_path):
    """A guard for the chunked entries (700 frames = 3 chunks), not a regression test: it held before."""
    base = ["output.render=false", f"run.cache_dir={tmp_path / 'cache'}", "dataset.num_frames=700"]
    StubDetector.calls = 0
    assert run_main(f"output.dir={tmp_path / 'a'}", *base) == 0
    assert StubDetector.calls == 3 * 700
    assert run_main(f"output.dir={tmp_path / 'b'}", *base) == 0
    assert StubDetector.calls == 3 * 700  # every stage output came from the cache
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    assert run_main(f"output.dir={tmp_path / 'c'}", *base, "run.cache=false") == 0
    assert outputs(tmp_path / "a") == outputs(tmp_path / "c")


# --------------------------------------------------------------------------- cause 12: damaged cache entries
@pytest.mark.parametrize("damage", ["truncate", "flip"])
@pytest.mark.slow
def test_damaged_cache_entry_is_recomputed_with_a_warning(tmp_path, damage, capsys):
    base = ["output.render=false", f"run.cache_dir={tmp_path / 'cache'}", "dataset.num_sequences=1"]
    assert run_main(f"output.dir={tmp_path / 'a'}", *base) == 0
    entries = sorted((tmp_path / "cache").rglob("*.npz"))
    assert entries
    for entry in entries:
        data = bytearray(entry.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        else:
            for at in range(len(data) // 4, len(data) // 2, 97):
                data[at] ^= 0x5A
        entry.write_bytes(bytes(data))
    capsys.readouterr()
    StubDetector.calls = 0
    assert run_main(f"output.dir={tmp_path / 'b'}", *base) == 0
    err = capsys.readouterr().err
    assert "warning" in err.lower() and "cache" in err.lower(), err
    assert StubDetector.calls == 72  # recomputed (the demo config's 72 frames)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    StubDetector.calls = 0
    assert run_main(f"output.dir={tmp_path / 'c'}", *base) == 0
    assert StubDetector.calls == 0  # the rewritten entry is good


# --------------------------------------------------------------------------- cause 13: on_error
@pytest.mark.slow
def test_on_error_skip_continues_records_and_exits_non_zero(tmp_path):
    out = tmp_path / "run"
    result = cli(f"output.dir={out}", "+dataset.bad=[seq1]", "run.on_error=skip", "output.render=false")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "seq1" in result.stderr and "1 of 3 sequence(s) failed" in result.stderr, result.stderr
    state = json.loads((out / "state.json").read_text())
    assert set(state["finished"]) == {"seq0", "seq2"}
    assert "damaged frame 3" in state["failed"]["seq1"]
    # resume retries the failed one and keeps the others
    again = cli(f"output.dir={out}", "+dataset.bad=[seq1]", "run.on_error=skip", "output.render=false",
                "run.resume=true")
    assert again.returncode == 2 and again.stderr.count("finished earlier, kept") == 2, again.stderr


@pytest.mark.slow
def test_on_error_stop_is_the_default_and_is_recorded(tmp_path):
    out = tmp_path / "run"
    result = cli(f"output.dir={out}", "+dataset.bad=[seq1]", "output.render=false")
    assert result.returncode == 2
    state = json.loads((out / "state.json").read_text())
    assert set(state["finished"]) == {"seq0"} and "seq1" in state["failed"]


@pytest.mark.slow
def test_on_error_skip_passes_over_an_unreadable_video_in_a_folder(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "c"):
        writer = cv2.VideoWriter(str(videos / f"{name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for i in range(4):
            writer.write(np.full((48, 64, 3), 30 * i, np.uint8))
        writer.release()
    (videos / "b.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "run"
    result = cli(f"dataset.path={videos}", f"output.dir={out}", "run.on_error=skip", stubs=VIDEO_STUBS)
    assert result.returncode == 2, result.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert set(state["finished"]) == {"a", "c"} and "cannot read video" in state["failed"]["b"]


def test_on_error_is_validated():
    with pytest.raises(InputError, match="run.on_error must be one of stop, skip, not 'maybe'"):
        run_main("run.on_error=maybe")


# --------------------------------------------------------------------------- cause 14: signals, leftovers
@pytest.mark.slow
def test_sigterm_prints_one_line_and_exits_143(tmp_path):
    out = tmp_path / "run"
    result = cli(f"output.dir={out}", f"+output.writers.killer._target_={HERE}.Killer",
                 env={"KPRTRACK_KILL_AT": "1", "KPRTRACK_KILL_FRAME": "5", "KPRTRACK_SIGNAL": "SIGTERM"})
    assert result.returncode == 143, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    assert [l for l in result.stderr.splitlines() if "terminated" in l] == ["kprtrack run: terminated"]
    assert not hidden_files(out)
    assert list(json.loads((out / "state.json").read_text())["finished"]) == ["seq0"]


@pytest.mark.slow
def test_sigkill_leftovers_are_cleaned_on_resume_and_results_match(tmp_path):
    killer = [f"+output.writers.killer._target_={HERE}.Killer", "run.cache=false"]
    out = tmp_path / "killed"
    result = cli(f"output.dir={out}", *killer, env={"KPRTRACK_KILL_AT": "1", "KPRTRACK_KILL_FRAME": "5"})
    assert result.returncode == -9
    assert hidden_files(out)  # the partial video of the sequence being rendered
    # and what a kill at other moments leaves: an atomic write's temp file, another partial video
    (out / "posetrack21/sequences/.seq2.json.k1ll3d.tmp").write_text('{"images": [')
    (out / "render/.seq2.k1ll3d.partial.mp4").write_bytes(b"\0" * 100)
    resumed = cli(f"output.dir={out}", *killer, "run.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not hidden_files(out), hidden_files(out)
    clean = tmp_path / "clean"
    assert cli(f"output.dir={clean}", *killer).returncode == 0
    assert outputs(out) == outputs(clean) and len(outputs(clean)) == 6


@pytest.mark.slow
def test_failed_start_leaves_no_empty_run_folder(tmp_path):
    out = tmp_path / "new" / "run"
    result = cli(f"output.dir={out}", "dataset.path=/does/not/exist.mp4", stubs=VIDEO_STUBS)
    assert result.returncode == 2
    assert not (tmp_path / "new").exists()
    # default folder (outputs/<date>/<time>_<name> under the current folder)
    result = cli("dataset.path=/does/not/exist.mp4", cwd=tmp_path, stubs=VIDEO_STUBS)
    assert result.returncode == 2 and not (tmp_path / "outputs").exists()
    # an existing folder the user gave is kept, and only what the run wrote goes
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep")
    result = cli(f"output.dir={existing}", "dataset.path=/does/not/exist.mp4", stubs=VIDEO_STUBS)
    assert result.returncode == 2 and sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_on_error_skip_passes_over_a_malformed_annotation_file(tmp_path):
    from tests.conftest import shared_file

    source = shared_file("data/posetrack18")
    root = tmp_path / "pt18"
    (root / "annotations").mkdir(parents=True)
    os.symlink(source / "images", root / "images")
    import shutil

    shutil.copytree(source / "annotations/val", root / "annotations/val")
    names = sorted(p.stem for p in (root / "annotations/val").glob("*.json"))
    (root / "annotations/val" / f"{names[1]}.json").write_text('{"images": [')  # truncated
    out = tmp_path / "run"
    result = cli("dataset=posetrack21", f"dataset.root={root}", "dataset.annotations_dir=annotations",
                 "detector=groundtruth", "pose=groundtruth", "reid=part_colors", "output.filters.enabled=false",
                 f"output.dir={out}", "run.on_error=skip", "output.render=false", stubs=["run.progress=false"])
    assert result.returncode == 2, result.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert set(state["finished"]) == {names[0], names[2]} and "malformed" in state["failed"][names[1]]


@pytest.mark.slow
def test_partial_cache_entries_of_dead_runs_are_removed(tmp_path):
    import socket

    cache = tmp_path / "cache"
    assert run_main(f"output.dir={tmp_path / 'a'}", "output.render=false", f"run.cache_dir={cache}",
                    "dataset.num_sequences=1") == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = cache / "detector" / f".{'0' * 32}.{host}.{dead.stdout.strip()}.abcd1234.partial"
    live = cache / "detector" / f".{'1' * 32}.{host}.{os.getpid()}.abcd1234.partial"
    for path in (stale, live):
        path.write_bytes(b"PK")
    assert run_main(f"output.dir={tmp_path / 'b'}", "output.render=false", f"run.cache_dir={cache}",
                    "dataset.num_sequences=1", "tracker.track_buffer=7", "detector.seed=1") == 0
    assert not stale.exists() and live.exists()  # a running run's entry is left alone
