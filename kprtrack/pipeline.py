"""``python -m kprtrack run``: frames -> detector -> pose -> ReID -> tracker -> writers (-> eval)."""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from kprtrack.cache import StageCache, stage_key
from kprtrack.config import compose_command, instantiate
from kprtrack.data.auto import source_overrides
from kprtrack.errors import InputError
from kprtrack.io import write_json, write_text
from kprtrack.output_filters import FilterConfig, SequenceFilter, describe, summarise
from kprtrack.first_run import announce
from kprtrack.record import Detections, Frame
from kprtrack.run_summary import instrument, summary
from kprtrack.writers import POSETRACK_SUBDIR, PoseTrackWriter

# Keys of a stage's config that describe it rather than being constructor arguments.
DESCRIPTIVE_KEYS = ("name",)


@dataclass
class Stages:
    detector: object
    pose: object
    reid: object
    tracker: object
    writers: list = field(default_factory=list)
    # output.filters: the writers that declare ``filtered = True`` (track files) get a sequence's
    # tracks through it when the sequence ends; the others (the rendered video) see every frame's
    # tracks as they come, unfiltered.
    output_filter: SequenceFilter = field(default_factory=SequenceFilter)


def build_stage(node, **kwargs):
    from omegaconf import OmegaConf

    # Resolve while the node still knows its parents (interpolations like ${output.render}).
    config = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    for key in DESCRIPTIVE_KEYS:
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


def make_run_dir(cfg) -> Path:
    if cfg.output.dir:
        run_dir = Path(cfg.output.dir).expanduser()
    else:
        stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
        run_dir = Path("outputs") / f"{stamp}_{cfg.dataset.get('name', 'run')}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = run_dir.with_name(f"{run_dir.name.split('+')[0]}+{suffix}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir.resolve()


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
        output_filter=SequenceFilter(filter_config(cfg)),
    )


def filter_config(cfg) -> FilterConfig:
    return FilterConfig.from_node(cfg.output.get("filters"))


class SequenceCache:
    """Cache keys of the three model stages for one sequence, and the deepest cached output (or None)."""

    def __init__(self, cache: StageCache, cfg, stages: Stages, source):
        from omegaconf import OmegaConf

        fingerprint = source.fingerprint() if hasattr(source, "fingerprint") else None
        self.cache = cache if fingerprint else StageCache(enabled=False)
        self.keys: dict[str, str] = {}
        upstream = ""
        for name in MODEL_STAGES:
            config = OmegaConf.to_container(cfg[name], resolve=True)
            upstream = self.keys[name] = stage_key(name, config, getattr(stages, name), upstream, fingerprint or "")
        # The deepest cached stage makes the ones before it unnecessary: only that archive is read.
        self.start, self.hit = 0, None
        for depth in (3, 2, 1):
            name = MODEL_STAGES[depth - 1]
            self.hit = self.cache.load(name, self.keys[name])
            if self.hit is not None:
                self.start = depth
                break
        self.new: dict[str, list[Detections]] = {name: [] for name in MODEL_STAGES[self.start:]}

    def save(self) -> None:
        for name, frames in self.new.items():
            self.cache.save(name, self.keys[name], frames)


def model_outputs(batch: list[Frame], stages: Stages, seq_cache: SequenceCache) -> list[Detections]:
    """Detector -> pose -> ReID for a batch of frames, starting after the deepest cached stage."""
    if seq_cache.start == 0:
        outputs = stages.detector.detect(batch)
        seq_cache.new["detector"] += outputs
    else:
        outputs = [seq_cache.hit[f.index] for f in batch]
    for step, name in ((1, "pose"), (2, "reid")):
        if seq_cache.start <= step:
            stage = getattr(stages, name)
            run = stage.estimate if name == "pose" else stage.embed
            outputs = [run(frame, dets) for frame, dets in zip(batch, outputs)]
            seq_cache.new[name] += outputs
    return outputs


def _writes_filtered(writer) -> bool:
    return bool(getattr(writer, "filtered", False))


def _end_sequence(stages: Stages) -> tuple[list[Path], dict]:
    """Filter the sequence's tracks, hand them to the track-file writers, and close every writer."""
    tracks, stats = stages.output_filter.finish()
    for writer in filter(_writes_filtered, stages.writers):
        for frame, people in tracks:
            writer.write(frame, people)
    return [path for writer in stages.writers for path in writer.end_sequence()], stats


def track_sequence(source, stages: Stages, cfg, cache: StageCache) -> tuple[list[Path], dict]:
    """Run every stage over one sequence and write it; returns the files written and the output
    filters' counts. On bad input mid-way (a damaged video), the frames tracked so far are still
    written before the error goes up."""
    from tqdm import tqdm

    seq_cache = SequenceCache(cache, cfg, stages, source)
    needs_pixels = seq_cache.start < 3 or any(getattr(w, "needs_images", False) for w in stages.writers)
    streaming = [w for w in stages.writers if not _writes_filtered(w)]
    stages.tracker.reset()
    stages.output_filter.begin()
    for writer in stages.writers:
        writer.begin_sequence(source.name, source.meta)
    bar = tqdm(total=len(source) or None, desc=source.name, unit="frame", disable=not cfg.run.progress,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        for batch in batched(source.frames(decode=needs_pixels), int(cfg.run.batch_size)):
            for frame, detections in zip(batch, model_outputs(batch, stages, seq_cache)):
                detections = stages.tracker.update(detections)
                for writer in streaming:
                    writer.write(frame, detections)
                frame.image = None  # the decoded frame is no longer needed: keep memory flat
                stages.output_filter.add(frame, detections)
            bar.update(len(batch))
    except InputError:
        _end_sequence(stages)
        raise
    finally:
        bar.close()
    seq_cache.save()
    return _end_sequence(stages)


def evaluate(cfg, dataset, run_dir: Path, names: Sequence[str]) -> dict | None:
    """PoseTrack21 evaluation of the sequences just tracked, when the data set has ground truth."""
    if not (cfg.run.evaluate and getattr(dataset, "has_ground_truth", False)):
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
NON_RESULT_KEYS = ("resume", "progress")


class RunState:
    """``state.json`` in the run folder: the config's hash and the sequences finished so far.
    Updated atomically after each sequence; ``run.resume=true`` skips finished sequences only when
    the config is the same (TrackLab's append-only state file reused stale results)."""

    def __init__(self, run_dir: Path, cfg, resume: bool):
        from omegaconf import OmegaConf

        container = OmegaConf.to_container(cfg, resolve=True)
        for key in NON_RESULT_KEYS:
            container["run"].pop(key, None)
        container["output"].pop("dir", None)
        self.config_hash = hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()
        self.path = run_dir / "state.json"
        self.finished: dict[str, list[str]] = {}
        self.filter_cfg = filter_config(cfg)
        self.filter_stats: dict[str, dict] = {}  # output filters' counts per finished sequence
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
        write_json(self.path, {"config_hash": self.config_hash, "finished": self.finished,
                               "output_filters": self.filter_summary(self.finished)}, indent=1)

    def filter_summary(self, names) -> dict:
        """The output filters' settings and counts over ``names`` (sequences finished now or earlier)."""
        return summarise(self.filter_cfg, {n: self.filter_stats[n] for n in names if n in self.filter_stats})


def run(cfg, run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    state = RunState(run_dir, cfg, bool(cfg.run.resume))
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    dataset = build_stage(cfg.dataset)
    stages = build_stages(cfg, run_dir)
    clock = instrument(stages)  # frames/s per stage, people and files for the summary
    cache = StageCache(cfg.run.cache_dir, enabled=bool(cfg.run.cache))
    names, written = [], []
    for source in dataset.sequences():
        names.append(source.name)
        if source.name in state.finished:
            print(f"  {source.name}: finished earlier, kept", file=sys.stderr)
            continue
        files, filter_stats = track_sequence(source, stages, cfg, cache)
        state.done(source.name, files, run_dir, filter_stats)
        written += files
        print(f"  {source.name}: {len(source)} frames", file=sys.stderr)
    if not names:
        raise InputError("the data set has no sequences", getattr(dataset, "path", None))
    metrics = evaluate(cfg, dataset, run_dir, names)
    return {"sequences": names, "files": written, "metrics": metrics,
            "output_filters": state.filter_summary(names), "clock": clock}


def headline(metrics: dict) -> str:
    box, kps = metrics["box"]["combined"], metrics["keypoints"]["combined"]
    return (f"pose HOTA {100 * kps['HOTA']:.2f} (DetA {100 * kps['DetA']:.2f}, AssA {100 * kps['AssA']:.2f})  "
            f"box HOTA {100 * box['HOTA']:.2f}  MOTA {100 * box['MOTA']:.2f}  IDF1 {100 * box['IDF1']:.2f}  "
            f"IDSW {int(box['IDSW'])}")


def main(argv: list[str]) -> int:
    cfg = compose_command("run", source_overrides(argv))  # source=<path>: dataset=video|images
    if cfg is None:
        return 0
    if cfg.run.resume and not cfg.output.dir:
        raise InputError("run.resume=true needs output.dir=<the folder of the run to resume>")
    announce(cfg)  # first-run downloads, heavy stack on a CPU
    run_dir = make_run_dir(cfg)
    started = time.perf_counter()
    try:
        result = run(cfg, run_dir)
    except InputError:
        print(f"run folder (finished sequences kept): {run_dir}", file=sys.stderr)
        raise
    if result["output_filters"]["enabled"]:
        print(describe(result["output_filters"]))
    if result["metrics"]:
        print(headline(result["metrics"]))
    print(summary(result.get("clock"), run_dir, len(result["sequences"]), time.perf_counter() - started))
    return 0
