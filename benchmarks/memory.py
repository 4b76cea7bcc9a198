"""Peak memory of ``kprtrack run`` over a long real video: does it grow with the video's length?

Loops ``../shared/data/media/one-by-one-person-detection.mp4`` (1394 frames, 768x432, people walking
through a room) into one sequence of ``--frames`` frames (default 10,000) and runs the real CLI on
it in a fresh process, with the light CPU stack (``--stages real``: YOLOX-nano ONNX, MoveNet,
OSNet x0.25 ONNX, 512-D embeddings) or, to measure in a minute what does not depend on the models,
stub stages with the same output sizes (``--stages stub``: 3 people a frame, 17 keypoints, 512-D
embeddings; no model runs). A probe writer records the process's peak RSS (``ru_maxrss``) after
frame 1,000 and after the last frame; the goal is a ratio within 10%.

    python benchmarks/memory.py                          # real stack, 10k frames (~10-15 min on 2 cores)
    python benchmarks/memory.py --stages stub            # ~1-2 min
    python benchmarks/memory.py --cache false --render false

Prints one line per checkpoint and the ratio; ``--json`` writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("KPRTRACK_SHARED", REPO.parent / "shared"))
VIDEO = SHARED / "data/media/one-by-one-person-detection.mp4"
CHECKPOINTS = (1000, 10000)


# ----------------------------------------------------------------- plugins loaded by the child run
class LoopedVideoSource:
    """One sequence: the video's frames again and again up to ``num_frames``."""

    has_ground_truth = False

    def __init__(self, path: str, num_frames: int):
        import cv2

        self.path, self.num_frames, self.name = Path(path), int(num_frames), f"{Path(path).stem}_x{num_frames}"
        capture = cv2.VideoCapture(str(self.path))
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        capture.release()

    def __len__(self):
        return self.num_frames

    @property
    def meta(self):
        return {"fps": self.fps, "source": str(self.path)}

    def fingerprint(self):
        stat = self.path.stat()
        return f"loop:{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{self.num_frames}"

    def frames(self, decode=True):
        import cv2

        from kprtrack.record import Frame

        index, capture = 0, cv2.VideoCapture(str(self.path))
        try:
            while index < self.num_frames:
                ok, image = capture.read()
                if not ok:  # end of the clip: start it again
                    capture.release()
                    capture = cv2.VideoCapture(str(self.path))
                    continue
                yield Frame(sequence=self.name, index=index, image=image if decode else None,
                            file_name=f"{self.name}/{index:06d}.jpg", width=image.shape[1], height=image.shape[0])
                index += 1
        finally:
            capture.release()


class LoopedVideo:
    has_ground_truth = False
    gt_dir = files = None

    def __init__(self, path: str, num_frames: int = 10000, **_):
        self.path, self.num_frames = path, num_frames

    def sequences(self):
        yield LoopedVideoSource(self.path, self.num_frames)


class StubDetector:
    """``people`` boxes a frame, side by side, walking right and starting over every ``period``
    frames; ``calls`` counts the frames detected (class-wide)."""

    calls = 0
    requires, provides, weights_path = frozenset(), frozenset({"boxes", "scores"}), None

    def __init__(self, people: int = 3, left: float = 20, spacing: float = 200, width: float = 70, top: float = 40,
                 bottom: float = 300, step: float = 2.0, period: int = 200, **_):
        self.people, self.left, self.spacing, self.width = people, left, spacing, width
        self.top, self.bottom, self.step, self.period = top, bottom, step, period

    def detect(self, frames):
        from kprtrack.record import Detections

        StubDetector.calls += len(frames)
        out = []
        for frame in frames:
            x = self.left + (frame.index % self.period) * self.step
            boxes = np.array([[x + self.spacing * p, self.top, x + self.spacing * p + self.width, self.bottom]
                              for p in range(self.people)], np.float32)
            out.append(Detections(boxes, np.full(self.people, 0.9, np.float32)))
        return out


class StubPose:
    requires, provides, weights_path = frozenset({"boxes"}), frozenset({"keypoints"}), None

    def __init__(self, **_):
        pass

    def estimate(self, frame, detections):
        kps = np.zeros((len(detections), 17, 3), np.float32)
        kps[:, :, :2] = detections.boxes[:, None, :2] + np.arange(17, dtype=np.float32)[None, :, None] * 5
        kps[:, :, 2] = 0.9
        return detections.with_(keypoints=kps)


class StubReID:
    requires, provides, weights_path = frozenset({"boxes"}), frozenset({"embeddings", "visibility"}), None

    def __init__(self, dim: int = 512, **_):
        self.dim = dim

    def embed(self, frame, detections):
        n = len(detections)
        emb = np.zeros((n, 1, self.dim), np.float32)
        emb[np.arange(n), 0, np.arange(n)] = 1.0
        return detections.with_(embeddings=emb, visibility=np.ones((n, 1), np.float32))


class MemoryProbe:
    """A streaming writer that appends ``frame peak_rss_kb seconds`` to ``$KPRTRACK_MEMORY_PROBE``
    after each checkpoint frame (and the last one)."""

    requires, filtered = frozenset(), False

    def __init__(self, dir: str, **_):
        self.out = os.environ.get("KPRTRACK_MEMORY_PROBE")
        self.started = time.perf_counter()
        self.last = None

    def begin_sequence(self, name, meta):
        pass

    def write(self, frame, detections):
        self.last = frame.index + 1
        if self.last in CHECKPOINTS or self.last % 1000 == 0:
            self._record()

    def _record(self):
        if self.out:
            with open(self.out, "a") as handle:
                handle.write(f"{self.last} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} "
                             f"{time.perf_counter() - self.started:.1f}\n")

    def end_sequence(self):
        if self.last and not (self.last in CHECKPOINTS or self.last % 1000 == 0):
            self._record()
        return []

    def abort(self):
        pass


# ----------------------------------------------------------------- driver
def stage_args(stages: str) -> list[str]:
    if stages == "stub":
        return [f"detector._target_={__name__}.StubDetector", f"pose._target_={__name__}.StubPose",
                f"reid._target_={__name__}.StubReID"]
    models = SHARED / "models"
    return ["detector=yolox_onnx", f"detector.weights={models / 'yolox_nano_416.onnx'}",
            "pose=movenet", f"pose.weights={models / 'movenet_singlepose_lightning_int8.tflite'}",
            "reid=onnx", f"reid.model={models / 'osnet_x0_25_msmt17.onnx'}", "reid.color=rgb",
            "reid.scale=0.00392156862745098", "reid.mean=[0.485,0.456,0.406]", "reid.std=[0.229,0.224,0.225]"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--stages", choices=("real", "stub"), default="real")
    parser.add_argument("--cache", choices=("true", "false"), default="true")
    parser.add_argument("--render", choices=("true", "false"), default="true")
    parser.add_argument("--filters", choices=("true", "false"), default="true",
                        help="output.filters.enabled (the tracklet filter holds a sequence's tracks)")
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)
    if not Path(args.video).is_file():
        print(f"video not found: {args.video} (set KPRTRACK_SHARED)", file=sys.stderr)
        return 2
    module = "memory_benchmark_plugins"
    with tempfile.TemporaryDirectory(prefix="kprtrack-memory-") as work:
        work = Path(work)
        # the child imports this file's plugins under a plain module name
        (work / f"{module}.py").write_text(Path(__file__).read_text())
        probe = work / "probe.txt"
        cmd = [sys.executable, "-m", "kprtrack", "run", "dataset=video", f"dataset._target_={module}.LoopedVideo",
               f"dataset.path={args.video}", f"+dataset.num_frames={args.frames}",
               *[a.replace(f"{__name__}.", f"{module}.") for a in stage_args(args.stages)],
               f"+output.writers.memory_probe._target_={module}.MemoryProbe", f"output.dir={work / 'run'}",
               f"output.render={args.render}", f"output.filters.enabled={args.filters}", f"run.cache={args.cache}",
               f"run.cache_dir={work / 'cache'}", "run.progress=false"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")]),
               "KPRTRACK_MEMORY_PROBE": str(probe)}
        started = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode:
            print(result.stderr[-3000:], file=sys.stderr)
            return result.returncode
        rows = [tuple(float(v) for v in line.split()) for line in probe.read_text().splitlines()]
    print(f"kprtrack run on {Path(args.video).name} looped to {args.frames} frames; stages={args.stages} "
          f"cache={args.cache} render={args.render} filters={args.filters}; {time.perf_counter() - started:.0f} s")
    peaks = {}
    for frame, peak_kb, seconds in rows:
        peaks[int(frame)] = peak_kb / 1024
        print(f"  after frame {int(frame):>6}: peak RSS {peak_kb / 1024:8.1f} MB   ({seconds:.0f} s)")
    first, last = min(CHECKPOINTS[0], max(peaks)), max(peaks)
    ratio = peaks[last] / peaks[first]
    print(f"peak RSS at frame {last} / at frame {first}: {ratio:.3f} (goal <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "peak_rss_mb": peaks, "ratio": ratio}, indent=1))
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
