"""``python -m kprtrack run``: frames -> detector -> pose -> ReID -> tracker -> writers (-> eval)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from kprtrack.config import compose, instantiate
from kprtrack.errors import InputError
from kprtrack.io import write_text
from kprtrack.record import Frame

# Keys of a stage's config that describe it rather than being constructor arguments.
DESCRIPTIVE_KEYS = ("name",)


@dataclass
class Stages:
    detector: object
    pose: object
    reid: object
    tracker: object
    writers: list = field(default_factory=list)


def build_stage(node, **kwargs):
    from omegaconf import OmegaConf

    node = OmegaConf.masked_copy(node, [k for k in node if k not in DESCRIPTIVE_KEYS])
    return instantiate(node, **kwargs)


def batched(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    iterator = iter(frames)
    while batch := list(islice(iterator, size)):
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


def build_stages(cfg, run_dir: Path) -> Stages:
    return Stages(
        detector=build_stage(cfg.detector),
        pose=build_stage(cfg.pose),
        reid=build_stage(cfg.reid),
        tracker=build_stage(cfg.tracker),
        writers=[build_stage(node, dir=str(run_dir)) for node in cfg.output.writers.values()],
    )


def track_sequence(source, stages: Stages, batch_size: int, progress: bool = True) -> list[Path]:
    """Run every stage over one sequence and write it. On bad input mid-way (a damaged video),
    the frames tracked so far are still written before the error goes up."""
    from tqdm import tqdm

    stages.tracker.reset()
    for writer in stages.writers:
        writer.begin_sequence(source.name, source.meta)
    bar = tqdm(total=len(source) or None, desc=source.name, unit="frame", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        for batch in batched(source.frames(), batch_size):
            for frame, detections in zip(batch, stages.detector.detect(batch)):
                detections = stages.pose.estimate(frame, detections)
                detections = stages.reid.embed(frame, detections)
                detections = stages.tracker.update(detections)
                for writer in stages.writers:
                    writer.write(frame, detections)
                frame.image = None  # the decoded frame is no longer needed: keep memory flat
            bar.update(len(batch))
    except InputError:
        for writer in stages.writers:
            writer.end_sequence()
        raise
    finally:
        bar.close()
    return [path for writer in stages.writers for path in writer.end_sequence()]


def evaluate(cfg, dataset, run_dir: Path, names: Sequence[str]) -> dict | None:
    if not (cfg.run.evaluate and getattr(dataset, "has_ground_truth", False)):
        return None
    from kprtrack.eval import evaluate_posetrack

    return evaluate_posetrack(dataset.gt_dir, run_dir / "posetrack21", run_dir / "eval",
                              cfg=cfg.get("eval"), sequences=list(names))


def run(cfg, run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    dataset = build_stage(cfg.dataset)
    stages = build_stages(cfg, run_dir)
    names, written = [], []
    for source in dataset.sequences():
        written += track_sequence(source, stages, int(cfg.run.batch_size), bool(cfg.run.progress))
        names.append(source.name)
        print(f"  {source.name}: {len(source)} frames", file=sys.stderr)
    if not names:
        raise InputError("the data set has no sequences", getattr(dataset, "path", None))
    metrics = evaluate(cfg, dataset, run_dir, names)
    return {"sequences": names, "files": written, "metrics": metrics}


def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    show_config = "--cfg" in argv
    cfg = compose("run", [a for a in argv if a != "--cfg"])
    if show_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    run_dir = make_run_dir(cfg)
    started = time.perf_counter()
    try:
        result = run(cfg, run_dir)
    except InputError:
        print(f"run folder (finished sequences kept): {run_dir}", file=sys.stderr)
        raise
    summary = result["metrics"] and result["metrics"].get("summary")
    if summary:
        print("  " + "  ".join(f"{k} {v:.2f}" for k, v in summary.items()), file=sys.stderr)
    print(f"{len(result['sequences'])} sequence(s) in {time.perf_counter() - started:.1f} s")
    print(f"run folder: {run_dir}")
    return 0
