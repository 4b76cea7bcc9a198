"""MOTChallenge txt ground truth and predictions, evaluated with trackeval's own preprocessing.

Files are read and validated here (clear InputErrors), then each sequence goes through
``trackeval.datasets.MotChallenge2DBox.get_preprocessed_seq_data``, the function the official
evaluation uses, so box HOTA/CLEAR/Identity match official TrackEval numbers.
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kprtrack.errors import InputError
from kprtrack.io import read_input_text

# MOT16/17/20 class ids (trackeval's table); anything else in the class column means MOT15-style GT.
MOT_CLASS_IDS = {"pedestrian": 1, "person_on_vehicle": 2, "car": 3, "bicycle": 4, "motorbike": 5,
                 "non_mot_vehicle": 6, "static_person": 7, "distractor": 8, "occluder": 9,
                 "occluder_on_ground": 10, "occluder_full": 11, "reflection": 12, "crowd": 13}


@dataclass
class MotTable:
    path: Path
    rows: np.ndarray  # [R, C] float64, C >= 6
    lines: np.ndarray  # [R] 1-based line numbers, for error messages

    @property
    def frames(self) -> np.ndarray:
        return self.rows[:, 0].astype(np.int64)


def read_mot_txt(path: Path, min_columns: int = 6) -> MotTable:
    """Parse a MOT txt file (comma or whitespace separated); any bad row is an InputError."""
    text = read_input_text(path)
    rows, lines, width = [], [], None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().rstrip(",")
        if not line:
            continue
        fields = [f for f in line.replace(",", " ").split()]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise InputError(f"line {number}: non-numeric value in {line!r}", path) from None
        if len(values) < min_columns:
            raise InputError(f"line {number}: {len(values)} columns, expected at least {min_columns} "
                             "(frame, id, left, top, width, height, ...)", path)
        if not np.all(np.isfinite(values)):
            raise InputError(f"line {number}: NaN or infinite value", path)
        if values[0] != int(values[0]) or values[0] < 1 or values[1] != int(values[1]):
            raise InputError(f"line {number}: frame and id must be integers, frame >= 1", path)
        width = len(values) if width is None else min(width, len(values))
        rows.append(values)
        lines.append(number)
    table = np.array([r[:width] for r in rows], np.float64).reshape(len(rows), width or min_columns)
    return MotTable(path, table, np.asarray(lines, np.int64))


def check_unique_ids(table: MotTable) -> None:
    keys = table.rows[:, :2].astype(np.int64)
    _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    if len(counts) and counts.max() > 1:
        frame, track = keys[first[np.argmax(counts)]]
        dup_lines = table.lines[(keys[:, 0] == frame) & (keys[:, 1] == track)]
        raise InputError(f"duplicate id {track} in frame {frame} (lines {', '.join(map(str, dup_lines))})",
                         table.path)


@dataclass
class MotSequence:
    name: str
    gt_file: Path
    pred_file: Path
    length: int | None  # from seqinfo.ini, when there is one


def find_gt_sequences(gt_dir: Path) -> list[tuple[str, Path, int | None]]:
    """``<seq>/gt/gt.txt`` (MOTChallenge) or ``<seq>/gt.txt`` (flat) under gt_dir, plus seqinfo.ini."""
    if not gt_dir.is_dir():
        raise InputError("ground-truth folder not found", gt_dir)
    found = []
    for folder in sorted(p for p in gt_dir.iterdir() if p.is_dir()):
        gt_file = next((f for f in (folder / "gt" / "gt.txt", folder / "gt.txt") if f.is_file()), None)
        if gt_file is None:
            continue
        found.append((folder.name, gt_file, _seq_length(folder / "seqinfo.ini")))
    if not found:
        raise InputError("no MOTChallenge sequences (expected <seq>/gt/gt.txt or <seq>/gt.txt)", gt_dir)
    return found


def _seq_length(ini: Path) -> int | None:
    if not ini.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(ini)
        return int(parser["Sequence"]["seqLength"])
    except (configparser.Error, KeyError, ValueError) as err:
        raise InputError(f"bad seqinfo.ini ({err.__class__.__name__}: {err}); need [Sequence] seqLength",
                         ini) from None


def find_prediction(pred_dir: Path, seq: str, pred_name: str | None) -> Path:
    """``pred/<seq>.txt``, or ``pred/<seq>/<name>.txt`` (name from config, or the only non-GT txt)."""
    flat = pred_dir / f"{seq}.txt"
    if flat.is_file():
        return flat
    folder = pred_dir / seq
    if pred_name:
        candidate = folder / (pred_name if pred_name.endswith(".txt") else f"{pred_name}.txt")
        if candidate.is_file():
            return candidate
    elif folder.is_dir():
        txts = sorted(p for p in folder.glob("*.txt") if p.name != "gt.txt")
        if len(txts) == 1:
            return txts[0]
        if len(txts) > 1:
            raise InputError(f"several prediction files for sequence {seq} ({', '.join(p.name for p in txts)}); "
                             "choose one with mot.pred_name=<name>", folder)
    expected = f"{flat} or {folder}/{pred_name or '<name>'}.txt"
    raise InputError(f"no prediction for sequence {seq} (expected {expected})", pred_dir)


def find_sequences(gt_dir: Path, pred_dir: Path, pred_name: str | None = None,
                   only: list[str] | None = None) -> list[MotSequence]:
    if not pred_dir.is_dir():
        raise InputError("prediction folder not found", pred_dir)
    gts = find_gt_sequences(gt_dir)
    if only:
        unknown = set(only) - {name for name, _, _ in gts}
        if unknown:
            raise InputError(f"unknown sequence(s) {sorted(unknown)}", gt_dir)
        gts = [g for g in gts if g[0] in set(only)]
    return [MotSequence(name, gt_file, find_prediction(pred_dir, name, pred_name), length)
            for name, gt_file, length in gts]


def uses_mot17_classes(gt: MotTable) -> bool:
    """GT with a MOT16/17/20 class column gets the official distractor preprocessing."""
    if gt.rows.shape[1] < 8 or not len(gt.rows):
        return False
    classes = gt.rows[:, 7]
    return bool(np.all(classes == np.round(classes)) and np.isin(classes, list(MOT_CLASS_IDS.values())).all())


def _preprocessor(do_preproc: bool):
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.datasets._base_dataset import _BaseDataset

    class SequencePreprocessor(MotChallenge2DBox):
        # The parent constructor scans folders in the official layout; we only need its
        # per-sequence preprocessing, which reads these four attributes.
        def __init__(self):
            _BaseDataset.__init__(self)
            self.do_preproc = do_preproc
            self.benchmark = "MOT17" if do_preproc else "MOT15"
            self.class_name_to_class_id = dict(MOT_CLASS_IDS)
            self.valid_class_numbers = list(MOT_CLASS_IDS.values())

    return SequencePreprocessor()


def raw_sequence(seq: MotSequence, gt: MotTable, pred: MotTable, length: int) -> dict:
    """trackeval's raw per-timestep dict, as ``MotChallenge2DBox._load_raw_file`` would build it."""
    from trackeval.datasets._base_dataset import _BaseDataset

    raw = {k: [] for k in ("gt_ids", "gt_dets", "gt_classes", "gt_extras", "tracker_ids", "tracker_dets",
                           "tracker_classes", "tracker_confidences", "similarity_scores")}
    gt_frames, pred_frames = gt.frames, pred.frames
    for t in range(1, length + 1):
        g = gt.rows[gt_frames == t]
        p = pred.rows[pred_frames == t]
        raw["gt_ids"].append(g[:, 1].astype(int))
        raw["gt_dets"].append(g[:, 2:6].reshape(-1, 4))
        raw["gt_classes"].append(g[:, 7].astype(int) if g.shape[1] >= 8 else np.ones(len(g), int))
        raw["gt_extras"].append({"zero_marked": g[:, 6].astype(int)})
        raw["tracker_ids"].append(p[:, 1].astype(int))
        raw["tracker_dets"].append(p[:, 2:6].reshape(-1, 4))
        # Our predictions have one class; trackeval reads column 8 when present, as we do.
        raw["tracker_classes"].append(p[:, 7].astype(int) if p.shape[1] >= 8 else np.ones(len(p), int))
        raw["tracker_confidences"].append(p[:, 6] if p.shape[1] >= 7 else np.ones(len(p)))
        sims = _BaseDataset._calculate_box_ious(raw["gt_dets"][-1], raw["tracker_dets"][-1], box_format="xywh") \
            if len(g) and len(p) else np.zeros((len(g), len(p)))
        raw["similarity_scores"].append(sims)
    # trackeval's id relabelling indexes an array by id: make ids small and non-negative first.
    from kprtrack.eval.metrics import relabel

    raw["gt_ids"], _ = relabel(raw["gt_ids"])
    raw["tracker_ids"], _ = relabel(raw["tracker_ids"])
    # Classes above 1 in predictions would make trackeval refuse the file (pedestrian only);
    # MOT txt from trackers carries -1 there, which trackeval also accepts.
    raw.update(num_timesteps=length, seq=seq.name)
    return raw


def load_sequence_data(seq: MotSequence, preprocess: str = "auto") -> dict:
    """Validated, preprocessed trackeval data for one sequence."""
    from trackeval.utils import TrackEvalException

    gt = read_mot_txt(seq.gt_file, min_columns=7)
    pred = read_mot_txt(seq.pred_file, min_columns=6)
    check_unique_ids(gt)
    check_unique_ids(pred)
    length = seq.length or int(max(gt.frames.max(initial=0), pred.frames.max(initial=0)))
    for table in (gt, pred):
        beyond = table.frames > length
        if beyond.any():
            raise InputError(f"line {table.lines[beyond][0]}: frame {table.frames[beyond][0]} is beyond the "
                             f"sequence length {length} (seqinfo.ini)", table.path)
    if pred.rows.shape[1] >= 8 and len(pred.rows) and pred.rows[:, 7].max() > 1:
        bad = np.argmax(pred.rows[:, 7] > 1)
        raise InputError(f"line {pred.lines[bad]}: class {pred.rows[bad, 7]:g} in column 8; only pedestrians "
                         "(1, or -1 for 'unused') can be evaluated", pred.path)
    do_preproc = uses_mot17_classes(gt) if preprocess == "auto" else bool(preprocess)
    raw = raw_sequence(seq, gt, pred, length)
    try:
        return _preprocessor(do_preproc).get_preprocessed_seq_data(raw, "pedestrian")
    except TrackEvalException as err:
        raise InputError(f"sequence {seq.name}: {err}", seq.gt_file) from None
