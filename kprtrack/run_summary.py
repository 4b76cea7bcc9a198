"""The end of a run: the rendered videos, the track files, how many people and identities the tracker
found, and frames per second per stage.

``instrument(stages)`` times the stages' own methods on the instances (their classes are untouched,
so the stage cache's code checksums stay those of the stages) and counts the tracker's output.
"""
from __future__ import annotations

import time
from collections import defaultdict
from functools import wraps
from pathlib import Path

# (stage attribute, method, frames per call: "batch" = len(first argument), else 1)
TIMED = (("detector", "detect", "batch"), ("pose", "estimate", 1), ("reid", "embed", 1), ("tracker", "update", 1))


class RunClock:
    """Seconds and frames per stage, tracked boxes and identities, written files by kind."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.frames: dict[str, int] = defaultdict(int)
        self.boxes = 0          # tracked detections (with a track id)
        self.most_at_once = 0   # most tracked people in one frame
        self.identities: set[tuple[int, int]] = set()  # (sequence number, track id)
        self.sequence = 0
        self.files: dict[str, list[Path]] = {"video": [], "tracks": []}

    def _timed(self, name: str, method, per_call):
        @wraps(method)
        def call(*args, **kwargs):
            start = time.perf_counter()
            result = method(*args, **kwargs)
            self.seconds[name] += time.perf_counter() - start
            self.frames[name] += len(args[0]) if per_call == "batch" else 1
            if name == "tracker":
                self._count(result)
            return result
        return call

    def _count(self, detections) -> None:
        ids = getattr(detections, "track_ids", None)
        if ids is None:
            return
        tracked = [int(i) for i in ids if int(i) >= 0]
        self.boxes += len(tracked)
        self.most_at_once = max(self.most_at_once, len(tracked))
        self.identities.update((self.sequence, i) for i in tracked)

    def _reset(self, method):
        @wraps(method)
        def call(*args, **kwargs):
            self.sequence += 1
            return method(*args, **kwargs)
        return call

    def _collect(self, kind: str, method):
        @wraps(method)
        def call(*args, **kwargs):
            files = method(*args, **kwargs)
            self.files[kind] += [Path(f) for f in files]
            return files
        return call


def instrument(stages) -> RunClock:
    """Wrap the stages' methods (per instance) so a RunClock sees every call."""
    from kprtrack.render import VideoRenderWriter

    clock = RunClock()
    for name, method, per_call in TIMED:
        stage = getattr(stages, name)
        setattr(stage, method, clock._timed(name, getattr(stage, method), per_call))
    stages.tracker.reset = clock._reset(stages.tracker.reset)
    for writer in stages.writers:
        writer.write = clock._timed("writers", writer.write, 1)
        kind = "video" if isinstance(writer, VideoRenderWriter) else "tracks"
        writer.end_sequence = clock._collect(kind, writer.end_sequence)
    return clock


def _paths(files: list[Path]) -> str:
    """Each file, or ``<folder>/ (N files)`` for a folder holding several of them."""
    folders: dict[Path, list[Path]] = {}
    for path in files:
        folders.setdefault(path.parent, []).append(path)
    return ", ".join(str(group[0]) if len(group) == 1 else f"{folder}/ ({len(group)} files)"
                     for folder, group in folders.items())


def _fps(frames: int, seconds: float) -> str:
    return f"{frames / seconds:.1f}" if seconds > 0 else "-"


def summary(clock: RunClock | None, run_dir: Path, sequences: int, seconds: float) -> str:
    """The lines printed at the end of ``run``."""
    lines = []
    if clock is not None:
        videos, tracks = clock.files["video"], clock.files["tracks"]
        if videos:
            lines.append("rendered video: " + _paths(videos))
        if tracks:
            lines.append("tracks: " + _paths(tracks))
        frames = clock.frames.get("tracker", 0)
        lines.append(f"found {len(clock.identities)} identities (track ids): {clock.boxes} tracked people-boxes "
                     f"in {frames} frames, at most {clock.most_at_once} in one frame")
        stages = [f"{name} {_fps(clock.frames[name], clock.seconds[name])}"
                  for name in ("detector", "pose", "reid", "tracker") if clock.frames.get(name)]
        cached = [name for name in ("detector", "pose", "reid") if not clock.frames.get(name) and frames]
        writers = clock.seconds.get("writers", 0.0)
        speed = "frames/s: " + ", ".join(stages + ([f"writers {_fps(frames, writers)}"] if writers else []))
        speed += f"; whole run {_fps(frames, seconds)}" + (f" ({', '.join(cached)}: from the stage cache)"
                                                          if cached else "")
        lines.append(speed)
    lines.append(f"{sequences} sequence(s) in {seconds:.1f} s")
    lines.append(f"run folder: {run_dir}")
    return "\n".join(lines)
