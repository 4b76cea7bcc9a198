"""``python -m kprtrack run``: frames -> detector -> pose -> ReID -> tracker -> writers (-> eval)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from kprtrack.cache import StageCache, stage_key
from kprtrack.config import instantiate
from kprtrack.data.auto import source_overrides
from kprtrack.errors import InputError, OutputError
from kprtrack.io import remove_partials, write_json, write_text
from kprtrack.output_filters import FilterConfig, SequenceFilter, describe, summarise
from kprtrack.first_run import announce
from kprtrack.record import Detections, Frame
from kprtrack.run_summary import instrument, summary
from kprtrack.shards import KEYS as SHARD_KEYS, Shard, from_config as shard_from_config
from kprtrack.stages import (Dataset, Detector, PoseEstimator, ReID, Source, Tracker, Writer, check_composition,
                             contract_gap, needs_images)
from kprtrack.writers import POSETRACK_SUBDIR, PoseTrackWriter

# Keys of a stage's config that describe it rather than being constructor arguments.
DESCRIPTIVE_KEYS = ("name",)
# Nor are the data set's dataset.shard / dataset.num_shards: the pipeline applies them (kprtrack/shards.py).


@dataclass
class Stages:
    detector: Detector
    pose: PoseEstimator
    reid: ReID
    tracker: Tracker
    writers: list[Writer] = field(default_factory=list)
    # output.filters: the writers that declare ``filtered = True`` (track files) get a sequence's
    # tracks through it when the sequence ends; the others (the rendered video) see every frame's
    # tracks as they come, unfiltered.
    output_filter: SequenceFilter = field(default_factory=SequenceFilter)


def build_stage(node, **kwargs):
    from omegaconf import OmegaConf

    # Resolve while the node still knows its parents (interpolations like ${output.render}).
    config = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    for key in (*DESCRIPTIVE_KEYS, *SHARD_KEYS):
        config.pop(key, None)
    return instantiate(config, **kwargs)


def batched(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    """Lists of ``size`` frames. When the source fails mid-way (a damaged video), the frames read
    before the failure still come out as a last batch before the error, so they get tracked."""
    batch: list[Frame] = []
    try:
        for frame in frames:
            batch.append(frame)
            if len(batch) == size:
                yield batch
                batch = []
    except InputError:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def make_run_dir(cfg, job_dir: str | Path | None = None) -> tuple[Path, list[Path]]:
    """The run folder (created if needed) and the folders this call created, outermost first (a run
    that fails before writing anything removes them again): ``output.dir`` when given, else the
    Hydra job's folder (``hydra.run.dir``, or a sweep's ``<hydra.sweep.dir>/<job>``), else
    ``outputs/<date>/<time>_<dataset>`` (a caller outside Hydra)."""
    if cfg.output.dir:
        run_dir = Path(cfg.output.dir).expanduser()
    elif job_dir:
        run_dir = Path(job_dir)
    else:
        stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
        run_dir = Path("outputs") / f"{stamp}_{cfg.dataset.get('name', 'run')}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = run_dir.with_name(f"{run_dir.name.split('+')[0]}+{suffix}")
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError("output.dir is a file, not a folder", run_dir)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()][::-1]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError.from_os_error(err, run_dir, "cannot create the run folder") from None
    return run_dir.resolve(), [p.resolve() for p in created]


LOCK_NAME = ".kprtrack.lock"


class RunLock:
    """One run at a time per run folder: an exclusive ``flock`` on ``<run>/.kprtrack.lock``, which
    holds the owner's pid. The kernel drops the lock when its process dies (even by SIGKILL), so a
    killed run never blocks the folder."""

    def __init__(self, run_dir: Path):
        import fcntl

        self.path = run_dir / LOCK_NAME
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise OutputError.from_os_error(err, self.path, "cannot lock the run folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise InputError(f"another kprtrack run (pid {holder}) is using this folder; wait for it to end "
                                 "or choose another output.dir", run_dir) from None
            try:  # the previous holder may have removed the file while we opened it: lock the live one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: a waiting run then locks a new file
        os.close(self.fd)
        self.fd = None


MODEL_STAGES = ("detector", "pose", "reid")


def build_stages(cfg, run_dir: Path) -> Stages:
    """Every stage, or one error naming every model stage that cannot start (a first run on a new
    machine often lacks several weights files: the user gets the whole list at once)."""
    models, problems = {}, []
    for name in MODEL_STAGES:
        try:
            models[name] = build_stage(cfg[name])
        except InputError as error:
            problems.append((name, error))
    if len(problems) == 1:
        raise problems[0][1]
    if problems:
        raise InputError(f"{len(problems)} stages cannot start:\n  "
                         + "\n  ".join(f"{name}: {error}" for name, error in problems))
    return Stages(
        **models,
        tracker=build_stage(cfg.tracker),
        writers=[build_stage(node, dir=str(run_dir)) for node in cfg.output.writers.values()],
        output_filter=SequenceFilter(filter_config(cfg), spill_dir=str(run_dir)),
    )


def check_stages(dataset: Dataset, stages: Stages, writer_names: Sequence[str]) -> None:
    """Each stage keeps its contract and gets what it needs from the ones before it (the tracker's
    embeddings, KPR's keypoints, the oracle stages' ground truth), or one error before any frame."""
    check_composition(dataset, [
        ("detector", stages.detector, Detector), ("pose", stages.pose, PoseEstimator),
        ("reid", stages.reid, ReID), ("tracker", stages.tracker, Tracker),
        *((f"writer {name}", writer, Writer) for name, writer in zip(writer_names, stages.writers)),
    ])


def filter_config(cfg) -> FilterConfig:
    return FilterConfig.from_node(cfg.output.get("filters"))


class SequenceCache:
    """Cache keys of the three model stages for one sequence, the deepest cached output (or None),
    and the entries being written for the stages that run. Outputs go to the cache as they come
    (chunked, see ``StageCache``), never kept in memory; a cache that cannot be written is a warning."""

    def __init__(self, cache: StageCache, cfg, stages: Stages, source):
        from omegaconf import OmegaConf

        # A content fingerprint reads the whole input once: only worth it when the cache is used.
        fingerprint = source.fingerprint() if cache.enabled else None
        self.cache = cache if fingerprint else StageCache(enabled=False)
        self.keys: dict[str, str] = {}
        upstream = ""
        for name in MODEL_STAGES:
            config = OmegaConf.to_container(cfg[name], resolve=True)
            upstream = self.keys[name] = stage_key(name, config, getattr(stages, name), upstream, fingerprint or "")
        # Runs sharing the cache (a sweep's jobs) compute a sequence's stage outputs once: the deepest
        # key (which covers the stages before it) is locked from the look-up until the entries are
        # published (commit) or dropped (close); a run that waited then finds them.
        self.lock = self.cache.lock(self.keys[MODEL_STAGES[-1]], getattr(source, "name", "")) if fingerprint else None
        # The deepest cached stage makes the ones before it unnecessary: only that archive is read.
        self.start, self.hit = 0, None
        for depth in (3, 2, 1):
            name = MODEL_STAGES[depth - 1]
            self.hit = self.cache.load(name, self.keys[name])
            if self.hit is not None:
                self.start = depth
                break
        self.writers = {}
        for name in MODEL_STAGES[self.start:]:
            writer = self.cache.writer(name, self.keys[name])
            if writer is not None:
                self.writers[name] = writer
        if not self.writers:  # nothing to compute for the cache (all cached, or it cannot be written)
            self._unlock()

    def record(self, name: str, outputs: list[Detections]) -> None:
        writer = self.writers.get(name)
        if writer is None:
            return
        try:
            writer.add(outputs)
        except OSError as err:
            self._drop(err)

    def commit(self) -> None:
        """Publish the entries (after the sequence's files are written)."""
        while self.writers:
            name = next(iter(self.writers))
            try:
                self.writers.pop(name).commit()
            except OSError as err:
                self._drop(err)
        self._unlock()

    def _unlock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _drop(self, err: OSError) -> None:
        self.cache.failed(err)
        self.abort()

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()
        self.writers = {}

    def close(self) -> None:
        self.abort()
        self._unlock()
        if self.hit is not None:
            self.hit.close()


def model_outputs(batch: list[Frame], stages: Stages, seq_cache: SequenceCache) -> list[Detections]:
    """Detector -> pose -> ReID for a batch of frames, starting after the deepest cached stage."""
    if seq_cache.start == 0:
        outputs = stages.detector.detect(batch)
        seq_cache.record("detector", outputs)
    else:
        outputs = [seq_cache.hit[f.index] for f in batch]
    for step, name in ((1, "pose"), (2, "reid")):
        if seq_cache.start <= step:
            stage = getattr(stages, name)
            run = stage.estimate if name == "pose" else stage.embed
            outputs = [run(frame, dets) for frame, dets in zip(batch, outputs)]
            seq_cache.record(name, outputs)
    return outputs


def _end_sequence(stages: Stages) -> tuple[list[Path], dict]:
    """Filter the sequence's tracks, hand them to the track-file writers, and close every writer."""
    tracks, stats = stages.output_filter.stream()
    track_writers = [writer for writer in stages.writers if writer.filtered]
    for frame, people in tracks:
        for writer in track_writers:
            writer.write(frame, people)
    return [path for writer in stages.writers for path in writer.end_sequence()], stats


def _abort_sequence(stages: Stages) -> None:
    """A sequence failed or was interrupted: writers drop their buffers and partial files."""
    stages.output_filter.begin()
    for writer in stages.writers:
        writer.abort()


def track_sequence(source, stages: Stages, cfg, cache: StageCache) -> tuple[list[Path], dict]:
    """Run every stage over one sequence and write it; returns the files written and the output
    filters' counts. On bad input mid-way (a damaged video), the frames tracked so far are still
    written before the error goes up. The sequence's files are written before its cache entries are
    published: a cache failure (a warning) never costs the sequence."""
    from tqdm import tqdm

    gap = contract_gap(source, Source)
    if gap:
        raise InputError(gap, getattr(source, "name", None))
    seq_cache = SequenceCache(cache, cfg, stages, source)
    running = [getattr(stages, name) for name in MODEL_STAGES[seq_cache.start:]]  # after the cached ones
    needs_pixels = needs_images([*running, *stages.writers])
    streaming = [w for w in stages.writers if not w.filtered]
    stages.tracker.reset()
    stages.output_filter.begin()
    bar = tqdm(total=len(source) or None, desc=source.name, unit="frame", disable=not cfg.run.progress,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        for writer in stages.writers:
            writer.begin_sequence(source.name, source.meta)
        try:
            for batch in batched(source.frames(decode=needs_pixels), int(cfg.run.batch_size)):
                for frame, detections in zip(batch, model_outputs(batch, stages, seq_cache)):
                    detections = stages.tracker.update(detections)
                    for writer in streaming:
                        writer.write(frame, detections)
                    frame.image = None  # the decoded frame is no longer needed: keep memory flat
                    stages.output_filter.add(frame, detections)
                bar.update(len(batch))
        except InputError as error:
            if isinstance(error, OutputError):
                raise
            seq_cache.abort()
            _end_sequence(stages)
            raise
        result = _end_sequence(stages)
        seq_cache.commit()
        return result
    except BaseException:
        _abort_sequence(stages)
        raise
    finally:
        seq_cache.close()
        bar.close()


def evaluate(cfg, dataset, run_dir: Path, names: Sequence[str]) -> dict | None:
    """PoseTrack21 evaluation of the sequences just tracked, when the data set has ground truth."""
    if not (cfg.run.evaluate and dataset.has_ground_truth):
        return None
    from omegaconf import OmegaConf

    from kprtrack.eval import evaluate_posetrack

    pred_dir = posetrack_dir(cfg, run_dir)
    if pred_dir is None:
        print("no PoseTrack writer in output.writers: not evaluated", file=sys.stderr)
        return None
    eval_cfg = OmegaConf.merge(cfg.eval, {"sequences": list(names), "progress": bool(cfg.run.progress)})
    return evaluate_posetrack(dataset.gt_dir, pred_dir, run_dir / "eval", cfg=eval_cfg)


def posetrack_dir(cfg, run_dir: Path) -> Path | None:
    """Where the run's PoseTrack writer puts ``<seq>.json`` (``posetrack21/sequences`` by default)."""
    for node in cfg.output.writers.values():
        if node.get("_target_") == f"{PoseTrackWriter.__module__}.{PoseTrackWriter.__name__}":
            return run_dir / node.get("subdir", POSETRACK_SUBDIR)
    return None


# Keys that change how a run is shown or resumed, not what it computes.
NON_RESULT_KEYS = ("resume", "progress", "objective")


def _hash(container: dict) -> str:
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()


class RunState:
    """``state.json`` in the run folder: the config's hash and the sequences finished so far.
    Updated atomically after each sequence; ``run.resume=true`` skips finished sequences only when
    the config is the same (TrackLab's append-only state file reused stale results).

    A shard's run (``dataset.shard``, kprtrack/shards.py) also records ``shard``: its index and the
    number of shards, the hash of the config without the shard keys (equal for every shard of one
    sharded run, and equal to the unsharded run's ``config_hash``), the sequence names of the whole
    data set in order (once the run has gone through it) and the ground-truth folder: what
    ``python -m kprtrack merge`` checks and evaluates the union with, without the data set."""

    def __init__(self, run_dir: Path, cfg, resume: bool, shard: Shard | None = None):
        from omegaconf import OmegaConf

        container = OmegaConf.to_container(cfg, resolve=True)
        for key in NON_RESULT_KEYS:
            container["run"].pop(key, None)
        container["output"].pop("dir", None)
        dataset = container.get("dataset") if isinstance(container.get("dataset"), dict) else {}
        sharding = {key: dataset.pop(key) for key in SHARD_KEYS if key in dataset}
        # Without the shard keys: the hash of a run made before they existed, and of the unsharded run.
        self.unsharded_hash = _hash(container)
        if shard is not None:
            dataset.update(sharding)
        self.config_hash = _hash(container) if shard is not None else self.unsharded_hash
        self.shard = shard
        self.sequences: list[str] | None = None  # a shard's: every sequence of the data set, once listed
        self.ground_truth: str | None = None  # a shard's: the data set's ground-truth folder
        self.path = run_dir / "state.json"
        self.finished: dict[str, list[str]] = {}
        self.filter_cfg = filter_config(cfg)
        self.filter_stats: dict[str, dict] = {}  # output filters' counts per finished sequence
        self.failed: dict[str, str] = {}  # sequences that failed (run.on_error) and why
        if resume and self.path.is_file():
            try:
                state = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                raise InputError("state file is damaged; start a new run", self.path) from None
            if state.get("config_hash") != self.config_hash:
                raise InputError("the configuration differs from the one this run was started with: not "
                                 "resuming (use another output.dir, or the original settings)", self.path)
            self.finished = {name: files for name, files in state.get("finished", {}).items()
                             if all((run_dir / f).is_file() for f in files)}
            per_sequence = state.get("output_filters", {}).get("per_sequence", {})
            self.filter_stats = {name: per_sequence[name] for name in self.finished if name in per_sequence}

    def done(self, name: str, files: list[Path], run_dir: Path, filter_stats: dict) -> None:
        self.finished[name] = [str(Path(f).relative_to(run_dir)) for f in files]
        self.filter_stats[name] = filter_stats
        self.failed.pop(name, None)
        self.save()

    def fail(self, name: str, reason: str) -> None:
        self.failed[name] = reason
        self.save()

    def save(self) -> None:
        """Written at the start of a run too: a new (not resumed) run in a used folder starts from
        an empty state at once, so a resume never takes an earlier run's files for its own."""
        state = {"config_hash": self.config_hash, "finished": self.finished, "failed": self.failed,
                 "output_filters": self.filter_summary(self.finished)}
        if self.shard is not None:
            state["shard"] = {"index": self.shard.index, "count": self.shard.count,
                              "unsharded_config_hash": self.unsharded_hash, "sequences": self.sequences,
                              "ground_truth": self.ground_truth}
        write_json(self.path, state, indent=1)

    def listed(self, sequences: list[str], dataset) -> None:
        """A shard's run went through the whole data set: record every sequence name and the ground truth."""
        self.sequences = list(sequences)
        gt_dir = getattr(dataset, "gt_dir", None) if getattr(dataset, "has_ground_truth", False) else None
        self.ground_truth = str(Path(gt_dir).expanduser().resolve()) if gt_dir else None
        self.save()

    def filter_summary(self, names) -> dict:
        """The output filters' settings and counts over ``names`` (sequences finished now or earlier)."""
        return summarise(self.filter_cfg, {n: self.filter_stats[n] for n in names if n in self.filter_stats})


ON_ERROR = ("stop", "skip")


def check_run_options(cfg) -> None:
    """``run.batch_size`` (frames per detector call) and ``run.on_error``, before any work."""
    size = cfg.run.batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"run.batch_size must be an integer >= 1, not {size!r}")
    on_error = cfg.run.get("on_error", "stop")
    if on_error not in ON_ERROR:
        raise InputError(f"run.on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")


def _sources(dataset, shard: Shard | None = None, listing: list[str] | None = None) -> Iterator[tuple[str, object]]:
    """(name, source or the InputError that opening it raised). Data sets that list their files
    (``files``: one sequence each, in order; video folders, PoseTrack annotation folders) go on past
    a file that cannot be opened, so ``run.on_error=skip`` reaches the sequences after it.

    With a ``shard`` only its sequences (kprtrack/shards.py): a data set with ``files`` gets a copy
    holding only the shard's files, so the other shards' files are never opened; the sequences of
    one without are dropped as they come. ``listing`` receives the name of every sequence of the
    whole data set, in order: complete when the iteration has ended."""
    import copy

    files = dataset.files
    if not isinstance(files, list):
        for position, source in enumerate(dataset.sequences()):
            if listing is not None:
                listing.append(source.name)
            if shard is None or shard.owns(position):
                yield source.name, source
        return
    if listing is not None:
        listing.extend(Path(f).stem for f in files)
    if shard is not None:
        files = shard.select(files)
    start = 0
    while start < len(files):
        rest = copy.copy(dataset)
        rest.files = files[start:]
        try:
            for source in rest.sequences():
                start += 1
                yield source.name, source
            return
        except InputError as error:  # opening files[start] failed
            yield Path(files[start]).stem, error
            start += 1


def _failure(error: BaseException) -> str:
    if isinstance(error, InputError):
        return str(error)
    return f"internal error {type(error).__name__}: {error} (run.on_error=stop shows the traceback)"


def run(cfg, run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    shard = shard_from_config(cfg.dataset)  # dataset.shard / num_shards checked before anything is written
    state = RunState(run_dir, cfg, bool(cfg.run.resume), shard)
    dataset = build_stage(cfg.dataset)
    stages = build_stages(cfg, run_dir)
    check_stages(dataset, stages, list(cfg.output.writers))
    clock = instrument(stages)  # frames/s per stage, people and files for the summary
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    state.save()
    cache = StageCache(cfg.run.cache_dir, enabled=bool(cfg.run.cache))
    skip = cfg.run.get("on_error", "stop") == "skip"
    names, written, listing = [], [], []
    for name, source in _sources(dataset, shard, listing):
        names.append(name)
        if name in state.finished:
            print(f"  {name}: finished earlier, kept", file=sys.stderr)
            continue
        try:
            if isinstance(source, BaseException):
                raise source
            files, filter_stats = track_sequence(source, stages, cfg, cache)
        except OutputError:
            raise  # the run folder cannot be written: every later sequence would fail the same way
        except Exception as error:  # noqa: BLE001 - recorded, then stop or skip (run.on_error)
            state.fail(name, _failure(error))
            if not skip:
                raise
            print(f"kprtrack run: {name}: {_failure(error)} (skipped, run.on_error=skip)", file=sys.stderr)
            continue
        state.done(name, files, run_dir, filter_stats)
        written += files
        print(f"  {name}: {len(source)} frames", file=sys.stderr)
    if shard is not None:
        state.listed(listing, dataset)
    if not listing:
        raise InputError("the data set has no sequences", dataset.path)
    if not names:  # more shards than sequences: an empty shard is a finished one (merge takes it)
        print(f"kprtrack run: {shard}: no sequences in this shard (the data set has {len(listing)}); "
              "nothing to track", file=sys.stderr)
    done = [n for n in names if n in state.finished]
    metrics = evaluate(cfg, dataset, run_dir, done) if done else None
    return {"sequences": names, "files": written, "metrics": metrics,
            "output_filters": state.filter_summary(names),
            "failed": {n: state.failed[n] for n in names if n in state.failed}, "clock": clock if names else None}


def headline(metrics: dict) -> str:
    box, kps = metrics["box"]["combined"], metrics["keypoints"]["combined"]
    return (f"pose HOTA {100 * kps['HOTA']:.2f} (DetA {100 * kps['DetA']:.2f}, AssA {100 * kps['AssA']:.2f})  "
            f"box HOTA {100 * box['HOTA']:.2f}  MOTA {100 * box['MOTA']:.2f}  IDF1 {100 * box['IDF1']:.2f}  "
            f"IDSW {int(box['IDSW'])}")


def _remove_if_untouched(run_dir: Path, created: list[Path]) -> None:
    """A run that failed before writing anything: remove the folders it created (only if empty)."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            break


def main(argv: list[str]) -> int:
    """``python -m kprtrack run [flags] [overrides]``: a Hydra app (kprtrack/hydra_app.py; ``-m`` sweeps)."""
    from kprtrack.hydra_app import hydra_main

    return hydra_main("run", source_overrides(argv), run_job)  # source=<path>: dataset=video|images


def run_job(cfg, job_dir: str | None = None):
    """One run (Hydra's task: a single run, or one job of a sweep) in ``job_dir`` unless ``output.dir``
    is set. Returns a ``kprtrack.sweep.JobResult`` (exit code, run folder, metrics, ``run.objective``);
    bad input raises an InputError."""
    if cfg.run.resume and not cfg.output.dir:
        raise InputError("run.resume=true needs output.dir=<the folder of the run to resume>")
    check_run_options(cfg)
    announce(cfg)  # first-run downloads (how much, where), a heavy stack on a CPU
    return _main(cfg, job_dir)


def _main(cfg, job_dir: str | None = None):
    from kprtrack.sweep import JobResult, headline_numbers, one_line, select_number

    run_dir, created = make_run_dir(cfg, job_dir)
    lock = None
    started = time.perf_counter()
    try:
        lock = RunLock(run_dir)
        result = _run_locked(cfg, run_dir)
    except BaseException as error:
        if lock is not None:
            lock.release()
        _remove_if_untouched(run_dir, created)
        if lock is not None and run_dir.exists() and isinstance(error, (InputError, OSError)):
            print(f"run folder (finished sequences kept): {run_dir}", file=sys.stderr)
        if isinstance(error, OSError):
            raise OutputError.from_os_error(error, run_dir, _io_what(error)) from None
        raise
    lock.release()
    if result["output_filters"]["enabled"]:
        print(describe(result["output_filters"]))
    if result["metrics"]:
        print(headline(result["metrics"]))
    print(summary(result.get("clock"), run_dir, len(result["sequences"]), time.perf_counter() - started))
    objective_key = str(cfg.run.get("objective") or "keypoints.combined.HOTA")
    job = JobResult(run_dir=str(run_dir), metrics=headline_numbers(result["metrics"]), objective_key=objective_key,
                    objective=select_number(result["metrics"], objective_key))
    if result["failed"]:
        failed = result["failed"]
        print(f"kprtrack run: {len(failed)} of {len(result['sequences'])} sequence(s) failed (recorded in "
              f"{run_dir / 'state.json'}):", file=sys.stderr)
        for name, reason in failed.items():
            print(f"  {name}: {reason}", file=sys.stderr)
        job.exit_code = InputError.exit_code
        job.error = one_line(f"{len(failed)} of {len(result['sequences'])} sequence(s) failed: "
                             + "; ".join(f"{name}: {reason}" for name, reason in failed.items()))
    return job


def _io_what(error: OSError) -> str:
    return "cannot write" if error.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES,
                                             errno.EPERM, errno.ENOTDIR, errno.EEXIST) else "I/O error"


def _run_locked(cfg, run_dir: Path) -> dict:
    """``run`` with the leftovers of a killed run removed first (the lock is ours: nobody writes here)."""
    from omegaconf import OmegaConf

    remove_partials(run_dir)
    for node in cfg.output.writers.values():
        subdir = OmegaConf.select(node, "subdir") if OmegaConf.is_config(node) else None
        if subdir:
            remove_partials(run_dir / str(subdir))
    return run(cfg, run_dir)
