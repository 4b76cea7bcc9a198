"""Tracker-only frames/s: KPRTrack (part-based appearance) vs a published ByteTrack, same boxes, one run.

    python benchmarks/tracker.py [--frames 10000] [--people 20] [--parts 8] [--dim 512] [--seed 0]
                                 [--reference auto|trackers[,tracklab]|none] [--chunk 100] [--set KEY=VALUE ...]

A synthetic scene (people walking in a 1920x1080 frame, some leaving and coming back, low scores,
missed detections, false positives) is simulated up front. Frames are then materialised in chunks
(the part embeddings of 10,000 frames would need 4 GB) and every tracker gets each chunk's frames;
only the ``update`` calls are timed, and the trackers alternate which goes first per chunk so that
all see the same machine load. The references are published ByteTracks, used by this benchmark
only (not kprtrack dependencies): Roboflow ``trackers``' pure-numpy one (``pip install trackers``) and
TrackLab's ``byte_track`` (installed with ``tracklab``; needs torch and ultralytics). The default,
``--reference auto``, runs every one of them that is installed and says how to get the others.

Prints frames/s of each and their ratio, the mean per-frame time over frames [0.09F, 0.11F) and
[0.99F, F) ("at 1k and 10k" for F = 10,000) with a flatness check (within 10%), KPRTrack's memory at
both points, and identity switches of each against the synthetic truth.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path

import kprtrack.runtime  # noqa: E402  (installed: pip install -e ".[bench]")

kprtrack.runtime.configure_process()  # first: it may choose OpenBLAS's kernels, which must precede numpy

import numpy as np

from kprtrack.openblas import openblas_core
from kprtrack.record import Detections

REPO = Path(__file__).resolve().parent.parent
TRACKER_CONFIG = REPO / "configs" / "tracker" / "kprtrack.yaml"
WIDTH, HEIGHT = 1920, 1080
FLAT_TOLERANCE = 0.10
INSTALL_HINT = ("the reference ByteTrack needs Roboflow's `trackers` package (benchmark only): "
                "pip install trackers   -- or run with --reference none to time KPRTrack alone")
TRACKLAB_HINT = ("--reference tracklab needs TrackLab's byte_track (pip install tracklab, which brings torch and "
                 "ultralytics; e.g. the venv .ci/tracklab_env.sh builds)")


# ---------------------------------------------------------------------------------------- scene
@dataclass
class Scene:
    """Every frame's detections, flattened: frame f owns rows offsets[f]:offsets[f+1]."""

    offsets: np.ndarray  # [F+1] int64
    truth: np.ndarray  # [R] int64 person index, -1 = false positive
    boxes: np.ndarray  # [R, 4] float32 x1 y1 x2 y2
    scores: np.ndarray  # [R] float32
    visibility: np.ndarray  # [R, 1+K] float32; column 0 (global) always visible
    identities: np.ndarray  # [people, 1+K, D] float32 unit vectors, one per person and part
    noise: float  # per-frame embedding noise, as a fraction of the unit identity vector's norm
    seed: int

    @property
    def frames(self) -> int:
        return len(self.offsets) - 1


def simulate_scene(frames: int, people: int = 20, parts: int = 8, dim: int = 512, seed: int = 0,
                   noise: float = 0.45) -> Scene:
    """People random-walking (smooth velocities, bouncing off the borders), each leaving now and then
    for 30-250 frames and re-entering elsewhere; 12% low scores, 2% missed, ~1.5 false positives/frame."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(50, 150, people)
    half = np.stack([size / 2, size * rng.uniform(1.1, 1.4, people)], axis=1)  # half width, half height
    lo, hi = half, np.array([WIDTH, HEIGHT]) - half
    position = rng.uniform(lo, hi)
    velocity = rng.normal(0, 2, (people, 2))
    away = np.zeros(people, np.int64)  # frames left before an absent person re-enters

    offsets, truth, boxes, scores, visibility = [0], [], [], [], []
    for _ in range(frames):
        velocity += rng.normal(0, 0.3, (people, 2))
        speed = np.linalg.norm(velocity, axis=1, keepdims=True)
        velocity *= np.minimum(1.0, 6.0 / np.maximum(speed, 1e-9))
        position += velocity
        bounced = (position < lo) | (position > hi)
        velocity[bounced] *= -1
        position = np.clip(position, lo, hi)
        away = np.maximum(away - 1, 0)
        returning = away == 1
        position[returning] = rng.uniform(lo[returning], hi[returning])
        leaving = (away == 0) & (rng.random(people) < 1 / 1500)
        away[leaving] = rng.integers(30, 250, leaving.sum())
        present = np.flatnonzero((away == 0) & (rng.random(people) >= 0.02))

        centre = position[present] + rng.normal(0, 1.5, (len(present), 2))
        person_boxes = np.concatenate([centre - half[present], centre + half[present]], axis=1)
        person_scores = np.where(rng.random(len(present)) < 0.12, rng.uniform(0.15, 0.5, len(present)),
                                 rng.uniform(0.6, 0.98, len(present)))
        fp = rng.poisson(1.5)
        fp_xy = rng.uniform([0, 0], [WIDTH - 150, HEIGHT - 300], (fp, 2))
        fp_boxes = np.concatenate([fp_xy, fp_xy + rng.uniform([40, 80], [150, 300], (fp, 2))], axis=1)
        fp_scores = rng.uniform(0.05, 0.7, fp)

        order = rng.permutation(len(present) + fp)  # detectors give no particular order
        truth.append(np.concatenate([present, np.full(fp, -1)])[order])
        boxes.append(np.concatenate([person_boxes, fp_boxes])[order])
        scores.append(np.concatenate([person_scores, fp_scores])[order])
        vis = np.where(rng.random((len(order), parts)) < 0.75, rng.uniform(0.6, 1.0, (len(order), parts)), 0.0)
        visibility.append(np.concatenate([np.ones((len(order), 1)), vis], axis=1))
        offsets.append(offsets[-1] + len(order))

    identities = rng.standard_normal((people, 1 + parts, dim), dtype=np.float32)
    identities /= np.linalg.norm(identities, axis=2, keepdims=True)
    return Scene(
        offsets=np.asarray(offsets, np.int64), truth=np.concatenate(truth).astype(np.int64),
        boxes=np.clip(np.concatenate(boxes), 0, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(np.float32),
        scores=np.concatenate(scores).astype(np.float32), visibility=np.concatenate(visibility).astype(np.float32),
        identities=identities, noise=noise, seed=seed,
    )


def chunk_embeddings(scene: Scene, start: int, stop: int) -> np.ndarray:
    """[rows, 1+K, D] float32 embeddings of frames [start, stop): identity + fresh noise per frame;
    false positives get random vectors. Seeded by the chunk, so any chunk can be rebuilt alone."""
    rng = np.random.default_rng((scene.seed, start))
    rows = slice(scene.offsets[start], scene.offsets[stop])
    truth = scene.truth[rows]
    _, parts, dim = scene.identities.shape
    out = rng.standard_normal((len(truth), parts, dim), dtype=np.float32)
    out *= np.float32(scene.noise / np.sqrt(dim))
    person = truth >= 0
    out[person] += scene.identities[truth[person]]
    out[~person] += rng.standard_normal((int((~person).sum()), parts, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    return out


# ---------------------------------------------------------------------------------------- trackers
def kprtrack_config(overrides: list[str] | None = None) -> dict:
    """configs/tracker/kprtrack.yaml without ``_target_``, with KEY=VALUE overrides (YAML values)."""
    import yaml

    config = yaml.safe_load(TRACKER_CONFIG.read_text())
    config.pop("_target_", None)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or key not in config:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(config)}")
        config[key] = yaml.safe_load(value)
    return config


class KPRTrackRunner:
    name = "KPRTrack"

    def __init__(self, config: dict) -> None:
        from kprtrack.tracker import KPRTracker

        self.config = config
        self.tracker = KPRTracker(**config)

    def prepare(self, boxes, scores, embeddings, visibility) -> Detections:
        return Detections(boxes, scores, embeddings=embeddings, visibility=visibility)

    def update(self, prepared: Detections) -> Detections:
        return self.tracker.update(prepared)

    def ids(self, prepared: Detections, result: Detections) -> np.ndarray:
        return result.track_ids

    def live_tracks(self) -> int:
        return self.tracker.tracks.size

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())


class ByteTrackRunner:
    """Roboflow ``trackers`` ByteTrack (numpy + scipy; takes ``supervision.Detections``)."""

    name = "ByteTrack(trackers)"

    def __init__(self, kpr_config: dict) -> None:
        try:
            from trackers import ByteTrackTracker  # first: fails fast when absent
            import supervision
        except ImportError as error:
            raise SystemExit(f"{error}\n{INSTALL_HINT}") from None
        self.sv = supervision
        # Same confidence split and birth rule as KPRTrack; the rest is the package's (and ByteTrack's)
        # defaults: 30-frame lost buffer, IoU >= 0.1, confirmation on the second consecutive match.
        self.kwargs = dict(high_conf_det_threshold=kpr_config["det_high_thresh"],
                           track_activation_threshold=kpr_config["new_track_thresh"],
                           minimum_consecutive_frames=2, lost_track_buffer=30, frame_rate=30.0)
        self.tracker = ByteTrackTracker(**self.kwargs)
        self.version = package_version("trackers")

    def prepare(self, boxes, scores, embeddings, visibility):
        # class_id carries the input row through the tracker, which reorders its output.
        return self.sv.Detections(xyxy=boxes, confidence=scores, class_id=np.arange(len(boxes)))

    def update(self, prepared):
        return self.tracker.update(prepared)

    def ids(self, prepared, result) -> np.ndarray:
        ids = np.full(len(prepared), -1, np.int64)
        ids[result.class_id] = result.tracker_id
        return ids

    def live_tracks(self) -> int:
        return len(self.tracker.tracks)

    def describe(self) -> str:
        return f"trackers {self.version}: " + ", ".join(f"{k}={v}" for k, v in self.kwargs.items())


class TrackLabByteTrackRunner:
    """TrackLab's ``byte_track`` BYTETracker (numpy + lap + torch tensors as input, as TrackLab feeds it)."""

    name = "ByteTrack(tracklab)"

    def __init__(self, kpr_config: dict) -> None:
        try:
            import torch
            from byte_track.byte_tracker import BYTETracker
        except ImportError as error:
            raise SystemExit(f"{error}\n{TRACKLAB_HINT}") from None
        self.torch = torch
        # track_thresh splits high / low scores and track_thresh + 0.1 starts a track: 0.5 / 0.6 as
        # KPRTrack; the rest is TrackLab's packaged byte_track.yaml (30-frame buffer, IoU distance 0.8).
        self.kwargs = dict(track_thresh=kpr_config["det_high_thresh"], track_buffer=30, match_thresh=0.8,
                           frame_rate=30)
        self.tracker = BYTETracker(**self.kwargs)
        self.version = package_version("tracklab")

    def prepare(self, boxes, scores, embeddings, visibility):
        # [l, t, r, b, score, class, row], the row coming back as the track's "tracklab_id".
        rows = len(boxes)
        table = np.concatenate([boxes, scores[:, None], np.zeros((rows, 1)), np.arange(rows)[:, None]], axis=1,
                               dtype=np.float64)
        return self.torch.from_numpy(table)

    def update(self, prepared):
        return self.tracker.update(prepared, None)

    def ids(self, prepared, result) -> np.ndarray:
        ids = np.full(len(prepared), -1, np.int64)
        for row in result:  # [l, t, r, b, track_id, class, score, row]
            ids[int(row[7])] = int(row[4])
        return ids

    def live_tracks(self) -> int:
        return len(self.tracker.tracked_stracks) + len(self.tracker.lost_stracks)

    def describe(self) -> str:
        return f"tracklab {self.version} byte_track: " + ", ".join(f"{k}={v}" for k, v in self.kwargs.items())


REFERENCES = {"trackers": ByteTrackRunner, "tracklab": TrackLabByteTrackRunner}


# ---------------------------------------------------------------------------------------- measuring
@dataclass
class IdentityScore:
    """Identity switches against the synthetic truth (a person's detection given a different id than
    the last id it had), how many of the people's detections got an id, and false positives given one."""

    people: int
    last: np.ndarray = field(init=False)  # each person's last tracker id, -1 = never tracked yet
    switches: int = 0
    covered: int = 0
    person_rows: int = 0
    fp_with_id: int = 0

    def __post_init__(self) -> None:
        self.last = np.full(self.people, -1, np.int64)

    def add(self, truth: np.ndarray, ids: np.ndarray) -> None:
        person = truth >= 0
        self.person_rows += int(person.sum())
        self.fp_with_id += int((ids[~person] >= 0).sum())
        tracked = person & (ids >= 0)
        self.covered += int(tracked.sum())
        who, got = truth[tracked], ids[tracked]
        before = self.last[who]
        self.switches += int(((before >= 0) & (before != got)).sum())
        self.last[who] = got

    @property
    def coverage(self) -> float:
        return self.covered / max(1, self.person_rows)


def numpy_bytes(obj, seen: set[int] | None = None) -> int:
    """Bytes of the numpy buffers reachable from ``obj`` through attributes and containers (each
    underlying buffer counted once): the tracker's persistent state."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (type, type(sys), str, bytes, int, float, bool)) or callable(obj):
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        if base is not obj and id(base) in seen:
            return 0
        seen.add(id(base))
        return base.nbytes
    if isinstance(obj, dict):
        return sum(numpy_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(numpy_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return numpy_bytes(vars(obj), seen)
    return 0


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def process_rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB, from /proc (nan where unavailable)."""
    values = {"VmRSS": float("nan"), "VmHWM": float("nan")}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


@dataclass
class MemoryProbe:
    frame: int
    update_peak_bytes: int  # tracemalloc peak during one update (its working memory)
    state_bytes: int  # numpy buffers the tracker keeps between frames
    live_tracks: int
    rss_mib: float
    rss_peak_mib: float


@dataclass
class Result:
    frames: int
    windows: tuple[tuple[int, int], tuple[int, int]]
    times: dict[str, np.ndarray]  # wall-clock seconds per update; NaN for the memory-probe frames (not timed)
    cpu_times: dict[str, np.ndarray]  # process CPU seconds per update (less sensitive to a busy machine)
    identity: dict[str, IdentityScore]
    memory: list[MemoryProbe] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)


def windows_for(frames: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """[0.09F, 0.11F) and [0.99F, F): [900, 1100) and [9900, 10000) for 10,000 frames."""
    early = (round(0.09 * frames), max(round(0.11 * frames), round(0.09 * frames) + 1))
    late = (min(frames - 1, round(0.99 * frames)), frames)
    return early, late


def run_benchmark(scene: Scene, runners: list, chunk: int = 100, progress: bool = True) -> Result:
    frames = scene.frames
    windows = windows_for(frames)
    probes = {start - 1 for start, _ in windows if start >= 1}  # just before each window, not timed
    times = {r.name: np.full(frames, np.nan) for r in runners}
    cpu_times = {r.name: np.full(frames, np.nan) for r in runners}
    identity = {r.name: IdentityScore(len(scene.identities)) for r in runners}
    result = Result(frames, windows, times, cpu_times, identity, descriptions={r.name: r.describe() for r in runners})
    clock, cpu_clock = time.perf_counter, time.process_time
    for chunk_index, start in enumerate(range(0, frames, chunk)):
        stop = min(frames, start + chunk)
        embeddings = chunk_embeddings(scene, start, stop)
        first_row = scene.offsets[start]
        for runner in runners[::-1] if chunk_index % 2 else runners:  # alternate who goes first
            prepared = []
            for f in range(start, stop):
                a, b = scene.offsets[f], scene.offsets[f + 1]
                prepared.append(runner.prepare(scene.boxes[a:b], scene.scores[a:b], embeddings[a - first_row:b - first_row],
                                               scene.visibility[a:b]))
            outputs = []
            gc.collect()
            wall, cpu = times[runner.name], cpu_times[runner.name]
            for f, detections in zip(range(start, stop), prepared):
                if f in probes and runner is runners[0]:
                    outputs.append(probe_memory(runner, detections, f, result))
                    continue
                began, began_cpu = clock(), cpu_clock()
                outputs.append(runner.update(detections))
                cpu[f] = cpu_clock() - began_cpu
                wall[f] = clock() - began
            for f, detections, output in zip(range(start, stop), prepared, outputs):
                identity[runner.name].add(scene.truth[scene.offsets[f]:scene.offsets[f + 1]], runner.ids(detections, output))
        if progress and (stop % max(chunk, frames // 20) < chunk or stop == frames):
            done = ", ".join(f"{name} {np.nansum(t[:stop]) * 1e3 / max(1, stop):.2f} ms/frame" for name, t in times.items())
            print(f"  frame {stop:>6}/{frames}: {done}", file=sys.stderr, flush=True)
    untimed = np.zeros(frames, bool)  # the probe frames are left out of every tracker's totals alike
    for t in times.values():
        untimed |= np.isnan(t)
    for t in (*times.values(), *cpu_times.values()):
        t[untimed] = np.nan
    return result


def probe_memory(runner, detections, frame: int, result: Result):
    """Run one (untimed) update under tracemalloc; record it and the tracker's kept state."""
    tracemalloc.start()
    output = runner.update(detections)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss, rss_peak = process_rss_mib()
    result.memory.append(MemoryProbe(frame + 1, peak, numpy_bytes(runner.tracker), runner.live_tracks(), rss, rss_peak))
    return output


# ---------------------------------------------------------------------------------------- report
def window_mean_ms(times: np.ndarray, window: tuple[int, int]) -> float:
    return float(np.nanmean(times[window[0]:window[1]]) * 1e3)


def window_median_ms(times: np.ndarray, window: tuple[int, int]) -> float:
    return float(np.nanmedian(times[window[0]:window[1]]) * 1e3)


def frames_per_second(times: np.ndarray) -> float:
    timed = np.isfinite(times)
    return float(timed.sum() / times[timed].sum())


def report(result: Result, scene: Scene) -> list[str]:
    (e0, e1), (l0, l1) = result.windows
    lines = [
        f"scene: {result.frames} frames, {len(scene.identities)} people, {scene.identities.shape[1]} parts "
        f"(1 global + {scene.identities.shape[1] - 1}) x {scene.identities.shape[2]}-D, "
        f"{len(scene.truth) / result.frames:.1f} detections/frame ({(scene.truth < 0).mean():.1%} false positives, "
        f"{(scene.scores < 0.5).mean():.1%} scored below 0.5); OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, CPUs usable {usable_cpus()}",
        f"OpenBLAS kernels: {openblas_core()} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})",
    ]
    lines += [f"{name}: {text}" for name, text in result.descriptions.items()]
    lines.append(f"{'':>20}  {'clock':<5} {'frames/s':>9} {f'mean ms/frame [{e0},{e1})':>27} "
                 f"{f'mean ms/frame [{l0},{l1})':>27} {'change':>8} {'(median)':>9}")
    fps: dict[str, dict[str, float]] = {}
    for name in result.times:
        for clock, times in (("wall", result.times[name]), ("cpu", result.cpu_times[name])):
            fps.setdefault(clock, {})[name] = frames_per_second(times)
            early, late = window_mean_ms(times, result.windows[0]), window_mean_ms(times, result.windows[1])
            change = late / early - 1
            # The median shrugs off the stalls a busy machine adds to a few frames; shown beside the mean.
            median_change = window_median_ms(times, result.windows[1]) / window_median_ms(times, result.windows[0]) - 1
            flat = "flat" if abs(change) <= FLAT_TOLERANCE else "NOT flat"
            lines.append(f"{name:>20}  {clock:<5} {fps[clock][name]:9.1f} {early:27.3f} {late:27.3f} "
                         f"{change:+8.1%} {f'({median_change:+.1%})':>9}  {flat} within {FLAT_TOLERANCE:.0%}")
    for name, ids in result.identity.items():
        lines.append(f"{name:>20}: {ids.switches} id switches vs the synthetic truth, {ids.coverage:.1%} of the "
                     f"people's detections got an id, {ids.fp_with_id} false-positive detections got one")
    for probe in result.memory:
        lines.append(
            f"KPRTrack memory after frame {probe.frame}: update working memory {probe.update_peak_bytes / 1024:.0f} KiB "
            f"(tracemalloc peak), kept state {probe.state_bytes / 1024:.0f} KiB for {probe.live_tracks} live tracks, "
            f"process RSS {probe.rss_mib:.0f} MiB (peak so far {probe.rss_peak_mib:.0f} MiB)"
        )
    ours, *references = list(result.times)
    for reference in references:
        ratios = ", ".join(f"{fps[c][ours] / fps[c][reference]:.2f}x ({c} clock)" for c in fps)
        lines.append(f"ratio {ours} / {reference} frames/s: {ratios}; goal >= 2x")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--parts", type=int, default=8, help="body parts besides the global embedding")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default="auto",
                        help=f"auto (every installed one; the default), none, or a comma-separated list from "
                             f"{{{', '.join(REFERENCES)}}} (each must be installed)")
    parser.add_argument("--chunk", type=int, default=100, help="frames materialised at a time (memory)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of configs/tracker/kprtrack.yaml, e.g. --set kalman=true")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.frames < 10 or args.people < 1 or args.parts < 0 or args.dim < 1 or args.chunk < 1:
        parser.error("need --frames >= 10, --people >= 1, --parts >= 0, --dim >= 1, --chunk >= 1")
    automatic = args.reference == "auto"
    references = (list(REFERENCES) if automatic else
                  [] if args.reference == "none" else [name.strip() for name in args.reference.split(",")])
    unknown = sorted(set(references) - set(REFERENCES))
    if unknown:
        parser.error(f"--reference: unknown {', '.join(unknown)}; choose from {', '.join(REFERENCES)} or none")

    config = kprtrack_config(args.set)
    runners = [KPRTrackRunner(config)]
    for name in dict.fromkeys(references):
        try:
            runners.append(REFERENCES[name](config))
        except SystemExit as missing:
            if not automatic:
                raise
            print(f"reference {name} skipped: {missing}", file=sys.stderr)
    if automatic and len(runners) == 1:
        raise SystemExit("no reference ByteTrack is installed:\n" + INSTALL_HINT + "\n" + TRACKLAB_HINT)
    began = time.perf_counter()
    scene = simulate_scene(args.frames, args.people, args.parts, args.dim, args.seed)
    if not args.quiet:
        print(f"  scene simulated in {time.perf_counter() - began:.1f} s; timing update calls only", file=sys.stderr)
    result = run_benchmark(scene, runners, args.chunk, progress=not args.quiet)
    print("\n".join(report(result, scene)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
