"""Pose-estimation mAP of a fine-tuned HRNet with the OFFICIAL PoseTrack21 kit (``PosemAP``).

Protocol (``eval.boxes: gt``): top-down on ground-truth boxes. Every labelled person of the split
(a frame with ``is_labeled``, an annotation with a box and at least one of the kit's 15 joints
annotated outside the frame's ignore regions) is cropped from its GT box and given the model's
17 keypoints, score per joint = its heatmap maximum (flip-averaged with ``eval.flip_test``). One
PoseTrack21 prediction JSON per GT sequence is written (``PoseTrackWriter``: the GT's image ids,
in the GT's order, as the kit requires; ``track_id`` = the GT track id, which PosemAP ignores),
and the kit's own ``scripts/run_pose_estimation.py`` scores the folder. Detected boxes are not
used, so the number measures the keypoint head, not a detector.

The kit runs in its own Python (its pinned numpy/scipy/shapely): ``eval.kit_python`` is the
interpreter of a venv with ``eval/posetrack21/requirements.txt`` installed; ``eval.kit_dir`` is
a clone's ``eval/posetrack21`` folder (anDoer/PoseTrack21). It prints and writes its table with
one decimal (``<predictions>/pose_hota_results.txt``), so the numbers here have that precision.

``cfg.eval`` keys (defaults):

- ``root`` (null = ``cfg.data.root``), ``split`` (``val``), ``annotations_dir`` (null =
  ``cfg.data.annotations_dir``, else ``posetrack_data``; ``annotations`` for PoseTrack18),
  ``sequences`` (null = all);
- ``kit_dir`` (null = ``$KPRTRACK_SHARED/tools/posetrack21_kit/eval/posetrack21`` or
  ``<repo>/../shared/...`` where present), ``kit_python`` (null = no kit: a printed reason and
  ``{}``), ``kit_timeout_s`` (3600);
- ``flip_test`` (true), ``boxes`` (``gt``, the only protocol), ``batch_size`` (32), ``device``
  (``auto``), ``decode`` (null = what the checkpoint says: ``udp`` for a UDP-trained model).

``cfg.data.input_size`` ([h, w]) is passed to the model (it must match the checkpoint's).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kprtrack.errors import InputError
from kprtrack.train.common import option

log = logging.getLogger(__name__)

KIT_SCRIPT = Path("scripts") / "run_pose_estimation.py"
RESULTS_FILE = "pose_hota_results.txt"  # what the kit's PoseEvaluator writes into the predictions folder
# The kit's PosemAP columns (ears are not scored) -> our metric names.
PARTS = {"Head": "head", "Shou": "shoulder", "Elb": "elbow", "Wri": "wrist", "Hip": "hip", "Knee": "knee",
         "Ankl": "ankle"}
KIT_JOINTS = [j for j in range(17) if j not in (3, 4)]  # the kit deletes both ears
REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class EvalSettings:
    root: Path
    split: str = "val"
    annotations_dir: str = "posetrack_data"
    sequences: tuple[str, ...] | None = None
    kit_dir: Path | None = None
    kit_python: str | None = None
    kit_timeout_s: float = 3600.0
    flip_test: bool = True
    boxes: str = "gt"
    batch_size: int = 32
    device: str = "auto"
    decode: str | None = None
    input_size: tuple[int, int] | None = None


def default_kit_dir() -> Path | None:
    """The kit's ``eval/posetrack21`` under $KPRTRACK_SHARED or ``<repo>/../shared``, where present."""
    shared = Path(os.environ.get("KPRTRACK_SHARED", REPO.parent / "shared"))
    return resolve_kit_dir(shared / "tools" / "posetrack21_kit")


def resolve_kit_dir(path: str | Path) -> Path | None:
    """A clone's ``eval/posetrack21`` given that folder, the clone's root or the kit folder above it."""
    path = Path(path).expanduser()
    for candidate in (path, path / "eval" / "posetrack21"):
        if (candidate / KIT_SCRIPT).is_file():
            return candidate.resolve()
    return None


def eval_settings(cfg) -> EvalSettings:
    """``cfg.eval`` (and ``cfg.data``) with the defaults above; InputError on a bad value."""
    ev, data = option(cfg, "eval"), option(cfg, "data")
    root = option(ev, "root", option(data, "root"))
    if root is None:
        raise InputError("eval.root (or data.root) is not set: the PoseTrack21 folder with images/ and "
                         "posetrack_data/")
    boxes = str(option(ev, "boxes", "gt"))
    if boxes != "gt":
        raise InputError(f"eval.boxes must be gt (top-down on ground-truth boxes), got {boxes!r}")
    kit_dir = option(ev, "kit_dir")
    if kit_dir is not None:
        found = resolve_kit_dir(str(kit_dir))
        if found is None:
            raise InputError(f"eval.kit_dir holds no {KIT_SCRIPT} (expected a clone of anDoer/PoseTrack21's "
                             "eval/posetrack21 folder)", str(kit_dir))
        kit_dir = found
    else:
        kit_dir = default_kit_dir()
    sequences = option(ev, "sequences")
    size = option(data, "input_size")
    decode = option(ev, "decode")
    return EvalSettings(
        root=Path(str(root)).expanduser(), split=str(option(ev, "split", "val")),
        annotations_dir=str(option(ev, "annotations_dir", option(data, "annotations_dir", "posetrack_data"))),
        sequences=tuple(str(s) for s in sequences) if sequences else None,
        kit_dir=kit_dir, kit_python=None if option(ev, "kit_python") is None else str(option(ev, "kit_python")),
        kit_timeout_s=float(option(ev, "kit_timeout_s", 3600)), flip_test=bool(option(ev, "flip_test", True)),
        boxes=boxes, batch_size=int(option(ev, "batch_size", 32)), device=str(option(ev, "device", "auto")),
        decode=None if decode is None else str(decode),
        input_size=None if size is None else (int(size[0]), int(size[1])))


def evaluate_pose(checkpoint: str | Path, cfg, output_dir: str | Path) -> dict[str, float]:
    """PoseTrack21 pose mAP of ``checkpoint`` on ``cfg.eval``'s split, by the official kit.

    Loads the checkpoint through ``pose=hrnet`` (:class:`kprtrack.pose.hrnet.HRNetPose`), writes
    ``<output_dir>/sequences/<seq>.json`` and returns ``{"pose_mAP", "pose_AP_head", ...,
    "pose_AP_ankle", "pose_precision", "pose_recall"}`` in percent, as the kit prints them; {} (with
    the reason printed) where no kit interpreter or kit folder is configured."""
    settings = eval_settings(cfg)
    why = _kit_missing(settings)
    if why:
        print(f"pose evaluation skipped: {why}", flush=True)
        log.info("pose evaluation skipped: %s", why)  # printed already: not a second line on stderr
        return {}
    from kprtrack.pose.hrnet import HRNetPose

    estimator = HRNetPose(weights=str(checkpoint), input_size=settings.input_size, flip_test=settings.flip_test,
                          decode=settings.decode, batch_size=settings.batch_size, device=settings.device,
                          download=False)
    if estimator.layout != "posetrack":
        raise InputError(f"the checkpoint predicts {estimator.layout} joints; pose mAP needs a PoseTrack "
                         "model (meta layout posetrack)", str(checkpoint))
    output_dir = Path(output_dir)
    predictions = predict_split(estimator, settings, output_dir / "sequences")
    metrics = run_pose_kit(_gt_dir(settings), predictions, settings.kit_dir, settings.kit_python,
                           work_dir=output_dir / "kit", timeout=settings.kit_timeout_s,
                           sequences=settings.sequences)
    from kprtrack.io import write_json

    write_json(output_dir / "pose_map.json", {"checkpoint": str(checkpoint), "split": settings.split,
                                              "boxes": settings.boxes, "decode": estimator.decode,
                                              "metrics": metrics}, indent=1)
    return metrics


def _kit_missing(settings: EvalSettings) -> str | None:
    if settings.kit_python is None:
        return ("eval.kit_python is not set (the interpreter of a venv with the PoseTrack21 kit's "
                "eval/posetrack21/requirements.txt installed)")
    if settings.kit_dir is None:
        return ("the PoseTrack21 evaluation kit was not found: set eval.kit_dir to a clone's "
                "eval/posetrack21 folder (github.com/anDoer/PoseTrack21)")
    return None


def _gt_dir(settings: EvalSettings) -> Path:
    return settings.root / settings.annotations_dir / settings.split


def labelled_people(frame) -> np.ndarray:
    """Indices of ``frame.gt`` people the kit scores: a labelled frame, and at least one of its 15
    joints annotated (x > 0 and y > 0, the kit's test) outside the frame's ignore regions."""
    from kprtrack.eval.geometry import points_in_polygons

    gt = frame.gt
    if gt is None or not len(gt) or not frame.is_labeled:
        return np.zeros(0, np.int64)
    xy = gt.keypoints[:, KIT_JOINTS, :2].astype(np.float64)
    present = (xy[..., 0] > 0) & (xy[..., 1] > 0)
    if frame.ignore_regions:
        present &= ~points_in_polygons(xy.reshape(-1, 2), frame.ignore_regions).reshape(present.shape)
    return np.flatnonzero(present.any(axis=1) & (gt.track_ids >= 0))


def predict_split(estimator, settings: EvalSettings, out_dir: str | Path) -> Path:
    """One PoseTrack21 prediction file per GT sequence in ``out_dir`` (returned): the estimator's
    keypoints on the GT boxes of :func:`labelled_people`; frames without them keep only their image
    entry. Only the frames that hold such people are decoded."""
    from kprtrack.data.posetrack import PoseTrackDataset, read_image
    from kprtrack.writers import PoseTrackWriter

    out_dir = Path(out_dir)
    dataset = PoseTrackDataset(str(settings.root), split=settings.split, annotations_dir=settings.annotations_dir,
                               sequences=list(settings.sequences) if settings.sequences else None)
    writer = PoseTrackWriter(str(out_dir.parent), subdir=out_dir.name)
    people_done = 0
    for source in dataset.sequences():
        writer.begin_sequence(source.name, source.meta)
        try:
            for frame in source.frames(decode=False):
                keep = labelled_people(frame)
                if not len(keep):
                    continue
                frame = replace(frame, image=read_image(dataset.root / frame.file_name))
                people = frame.gt.subset(keep)
                writer.write(frame, estimator.estimate(frame, people))
                people_done += len(keep)
        except BaseException:
            writer.abort()
            raise
        writer.end_sequence()
    log.info("pose evaluation: %d people in %d sequences -> %s", people_done, len(dataset), out_dir)
    return out_dir


def run_pose_kit(gt_dir: str | Path, predictions_dir: str | Path, kit_dir: str | Path | None,
                 kit_python: str | Path, work_dir: str | Path | None = None, timeout: float = 3600,
                 sequences: tuple[str, ...] | list[str] | None = None) -> dict[str, float]:
    """Score a folder of PoseTrack21 prediction files (``<seq>.json`` for each GT ``<seq>.json``)
    with the kit's ``scripts/run_pose_estimation.py`` (PosemAP), run by ``kit_python`` in ``kit_dir``.

    Both folders are staged under ``work_dir`` (a temporary folder when None) as links to the
    given files, because the kit reads every file of its GT folder as a sequence and takes a
    predictions folder named ``sequences`` as one tracker. The kit's output is kept there
    (``kit_stdout.txt``, ``sequences/pose_hota_results.txt``)."""
    gt_dir, predictions_dir = Path(gt_dir).expanduser().resolve(), Path(predictions_dir).expanduser().resolve()
    kit = resolve_kit_dir(kit_dir) if kit_dir is not None else default_kit_dir()
    if kit is None:
        raise InputError(f"PoseTrack21 kit not found (no {KIT_SCRIPT} there)", kit_dir)
    python = shutil.which(str(kit_python)) if os.sep not in str(kit_python) else str(kit_python)
    if not python or not os.access(python, os.X_OK):
        raise InputError("the kit's Python interpreter (eval.kit_python) is not an executable file", kit_python)
    names = _sequence_files(gt_dir, sequences)
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="kprtrack-pose-kit-") as tmp:
            return _run_kit(gt_dir, predictions_dir, names, kit, python, Path(tmp), timeout)
    return _run_kit(gt_dir, predictions_dir, names, kit, python, Path(work_dir), timeout)


def _sequence_files(gt_dir: Path, sequences) -> list[str]:
    if not gt_dir.is_dir():
        raise InputError("ground-truth folder not found", gt_dir)
    names = sorted(p.name for p in gt_dir.glob("*.json"))
    if sequences:
        wanted = {f"{s}.json" if not str(s).endswith(".json") else str(s) for s in sequences}
        unknown = wanted - set(names)
        if unknown:
            raise InputError(f"unknown sequence(s) {sorted(unknown)}", gt_dir)
        names = [n for n in names if n in wanted]
    if not names:
        raise InputError("no sequence .json files in the ground-truth folder", gt_dir)
    return names


def _stage(folder: Path, sources: list[Path]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for source in sources:
        try:
            (folder / source.name).symlink_to(source)
        except OSError:  # file systems without links
            shutil.copyfile(source, folder / source.name)


def _run_kit(gt_dir: Path, predictions_dir: Path, names: list[str], kit: Path, python: str, work: Path,
             timeout: float) -> dict[str, float]:
    missing = [n for n in names if not (predictions_dir / n).is_file()]
    if missing:
        raise InputError(f"no prediction file for {len(missing)} GT sequence(s), e.g. {missing[:3]} "
                         "(one <seq>.json per GT sequence)", predictions_dir)
    work = work.resolve()
    gt_stage, pred_stage = work / "gt", work / "sequences"
    _stage(gt_stage, [gt_dir / n for n in names])
    _stage(pred_stage, [predictions_dir / n for n in names])
    command = [python, str(KIT_SCRIPT), "--GT_FOLDER", str(gt_stage), "--TRACKERS_FOLDER", str(pred_stage),
               "--USE_PARALLEL", "False", "--LOG_ON_ERROR", str(work / "kit_error_log.txt")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONWARNINGS"] = "ignore"
    log.info("PoseTrack21 kit: (cd %s && %s)", kit, " ".join(command))
    try:
        done = subprocess.run(command, cwd=kit, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the PoseTrack21 kit did not finish within {timeout:.0f} s: {' '.join(command)}") \
            from None
    except OSError as err:
        raise InputError(f"cannot run the kit's Python: {err.strerror or err}", python) from None
    (work / "kit_stdout.txt").write_text(done.stdout + ("\n--- stderr ---\n" + done.stderr if done.stderr else ""))
    results = pred_stage / RESULTS_FILE
    if done.returncode != 0 or not results.is_file():
        tail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        message = (f"the PoseTrack21 kit failed (exit {done.returncode}; cd {kit} && {' '.join(command)}):\n{tail}")
        if "TrackEvalException" in tail or "DET file" in tail:
            raise InputError(message, pred_stage)
        raise RuntimeError(message)
    return parse_pose_results(results.read_text())


def parse_pose_results(text: str) -> dict[str, float]:
    """The kit's ``pose_hota_results.txt`` (LaTeX rows: ``map & Head & ... & Total`` then `` & 81.2 &
    ...``, the same for precision and recall) -> ``{"pose_mAP": .., "pose_AP_<part>": ..,
    "pose_precision": .., "pose_recall": ..}``."""
    lines = [line for line in text.splitlines() if line.strip()]
    tables: dict[str, dict[str, float]] = {}
    for header, values in zip(lines[::2], lines[1::2]):
        names = [c.strip() for c in header.split("&")]
        cells = [c.strip() for c in values.split("&")]
        if len(names) != len(cells) or not names[0]:
            raise RuntimeError(f"unexpected PoseTrack21 kit output in {RESULTS_FILE}:\n{text[:500]}")
        try:
            tables[names[0]] = {name: float(cell) for name, cell in zip(names[1:], cells[1:])}
        except ValueError:
            raise RuntimeError(f"unexpected PoseTrack21 kit output in {RESULTS_FILE}:\n{text[:500]}") from None
    ap = tables.get("map")
    if not ap or "Total" not in ap:
        raise RuntimeError(f"no map row in the PoseTrack21 kit's {RESULTS_FILE}:\n{text[:500]}")
    out = {"pose_mAP": ap["Total"]}
    out.update({f"pose_AP_{ours}": ap[kit] for kit, ours in PARTS.items() if kit in ap})
    for name in ("precision", "recall"):
        if "Total" in tables.get(name, {}):
            out[f"pose_{name}"] = tables[name]["Total"]
    return out

