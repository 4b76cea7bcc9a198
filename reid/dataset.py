"""``python -m kprtrack reid-dataset``: build Occluded PoseTrack-ReID (Occ-PTrack) from PoseTrack21.

Recipe (KPR supplementary material, "Occluded PoseTrack-ReID Dataset Details"):
- train: ``train_identities`` random identities (seeded) of the train split; test: every identity
  of the val split;
- each identity's crops (all its tracklets, in video then frame order) are sampled uniformly
  (evenly spaced, first and last kept) down to ``max_samples_per_id``; identities left with fewer
  than ``min_samples_per_id`` crops are dropped;
- query = the floor(``query_ratio`` x n) most occluded crops of each test identity by MPOL
  (eq. 3, ``reid/mpol.py``), gallery = the rest. With floor, identities of 4 crops have no query,
  which is why the published table has fewer query ids (1379) than gallery ids (1411).

Identity = the global ``person_id``; annotations without one (PoseTrack18) fall back to
(video, track_id), which cannot link one person across videos: the summary says when that happened.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.errors import InputError
from kprtrack.io import write_bytes, write_json, write_text
from kprtrack.record import NUM_KEYPOINTS
from kprtrack.reid.mpol import keypoints_inside, mpol

SUBSETS = ("train", "query", "gallery")
CSV_COLUMNS = ("file", "identity", "person_id", "track_id", "video", "frame", "image_id", "width", "height",
               "num_negative", "num_positive", "occlusion", "mpol")


@dataclass
class Sample:
    """One person annotation that may become a crop. Coordinates are in the source image."""

    identity: str
    person_id: int  # -1 when the annotation has none (identity then = video/track)
    track_id: int
    video: str
    frame: int  # position of the image in the sequence file
    image_id: int
    source_file: str  # image path relative to the data root
    box: np.ndarray  # x1 y1 x2 y2
    keypoints: np.ndarray  # [17, 3]
    negatives: np.ndarray  # [M, 17, 3] other people with >= 1 visible keypoint inside the box
    num_negative: int = 0
    num_positive: int = 0
    mpol: float = 0.0
    crop: dict = field(default_factory=dict)  # filled when the crop is written

    @property
    def occlusion(self) -> int:
        return self.num_negative - self.num_positive

    @property
    def order(self) -> tuple:
        return (self.video, self.frame, self.track_id)


# ---------------------------------------------------------------- reading annotations

def _keypoints(ann: dict) -> np.ndarray:
    values = ann.get("keypoints") or []
    out = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    if values:
        out[:] = np.asarray(values, np.float32).reshape(NUM_KEYPOINTS, 3)
    out[:, 2] = (out[:, 2] > 0).astype(np.float32)  # PoseTrack visibility flags, as confidences
    return out


def collect_samples(root: Path, split: str, annotations_dir: str, min_box_size: float,
                    min_visible_keypoints: int) -> tuple[list[Sample], dict]:
    """Every usable person annotation of a split, with its negative/positive keypoints."""
    from kprtrack.data.posetrack import find_sequences, load_sequence_json

    samples: list[Sample] = []
    stats = {"sequences": 0, "annotations": 0, "skipped_small_box": 0, "skipped_few_keypoints": 0,
             "skipped_no_identity": 0, "identity_from_track_id": 0}
    for path in find_sequences(root, split, annotations_dir):
        seq = load_sequence_json(path)
        stats["sequences"] += 1
        for frame, image in enumerate(seq.images):
            anns = [a for a in seq.annotations[image["id"]]
                    if a.get("category_id", 1) == 1 and a.get("bbox") is not None]
            if not anns:
                continue
            boxes = np.asarray([a["bbox"] for a in anns], np.float32)
            boxes[:, 2:] += boxes[:, :2]
            keypoints = np.stack([_keypoints(a) for a in anns])
            for i, ann in enumerate(anns):
                stats["annotations"] += 1
                width, height = boxes[i, 2:] - boxes[i, :2]
                if min(width, height) < min_box_size:
                    stats["skipped_small_box"] += 1
                    continue
                positives = int((keypoints[i, :, 2] > 0).sum())
                if positives < min_visible_keypoints:
                    stats["skipped_few_keypoints"] += 1
                    continue
                person_id, track_id = ann.get("person_id"), ann.get("track_id")
                if person_id is not None:
                    identity = str(int(person_id))
                elif track_id is not None:
                    identity = f"{seq.name}/{int(track_id)}"
                    stats["identity_from_track_id"] += 1
                else:
                    stats["skipped_no_identity"] += 1
                    continue
                # Occluders count whatever filters they fail themselves: they still hide this person.
                inside = keypoints_inside(keypoints, boxes[i])
                inside[i] = False
                occluders = np.flatnonzero(inside.any(axis=1))
                negatives = keypoints[occluders].copy()
                negatives[..., 2] *= inside[occluders]  # keep only the keypoints that fall in the box
                samples.append(Sample(
                    identity=identity, person_id=-1 if person_id is None else int(person_id),
                    track_id=-1 if track_id is None else int(track_id), video=seq.name, frame=frame,
                    image_id=int(image["id"]), source_file=str(image["file_name"]), box=boxes[i].copy(),
                    keypoints=keypoints[i].copy(), negatives=negatives,
                    num_negative=int(inside.sum()), num_positive=positives,
                ))
    return samples, stats


# ---------------------------------------------------------------- sampling and splitting

def group_by_identity(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.identity].append(sample)
    for group in groups.values():
        group.sort(key=lambda s: s.order)
    return dict(sorted(groups.items(), key=lambda kv: _identity_sort_key(kv[0])))


def _identity_sort_key(identity: str) -> tuple:
    return (0, int(identity), "") if identity.lstrip("-").isdigit() else (1, 0, identity)


def uniform_sample(group: Sequence[Sample], max_samples: int) -> list[Sample]:
    """Evenly spaced crops along the identity's tracklets, first and last included."""
    if len(group) <= max_samples:
        return list(group)
    picks = np.round(np.linspace(0, len(group) - 1, max_samples)).astype(int)
    return [group[i] for i in picks]


def sample_identities(samples: Sequence[Sample], min_samples: int, max_samples: int) -> dict[str, list[Sample]]:
    groups = {k: uniform_sample(g, max_samples) for k, g in group_by_identity(samples).items()}
    return {k: g for k, g in groups.items() if len(g) >= min_samples}


def choose_identities(groups: dict[str, list[Sample]], count: int, seed: int) -> dict[str, list[Sample]]:
    """``count`` random identities (all when count < 0 or too few), reproducible for one seed."""
    keys = list(groups)
    if 0 <= count < len(keys):
        picked = np.random.default_rng(seed).choice(len(keys), size=count, replace=False)
        keys = [keys[i] for i in sorted(picked)]
    return {k: groups[k] for k in keys}


def split_query_gallery(groups: dict[str, list[Sample]], ratio: float) -> tuple[list[Sample], list[Sample]]:
    """Per identity: the floor(ratio * n) crops with the highest N - P are queries."""
    query, gallery = [], []
    for group in groups.values():
        count = int(np.floor(ratio * len(group) + 1e-9))
        # Stable sort: among equally occluded crops the earlier ones become queries.
        ranked = sorted(range(len(group)), key=lambda i: -group[i].occlusion)
        chosen = set(ranked[:count])
        query += [s for i, s in enumerate(group) if i in chosen]
        gallery += [s for i, s in enumerate(group) if i not in chosen]
    return query, gallery


def assign_mpol(samples: Sequence[Sample]) -> None:
    """Eq. 3 normalised over this subset (over the query set for queries, as in the paper)."""
    values = mpol([s.num_negative for s in samples], [s.num_positive for s in samples])
    for sample, value in zip(samples, values):
        sample.mpol = float(value)


# ---------------------------------------------------------------- crops and files

def _identity_slug(sample: Sample) -> str:
    # The video is already in the file name: a fallback identity only needs its track id.
    return str(sample.person_id) if sample.person_id >= 0 else f"t{sample.track_id}"


def write_crops(root: Path, out_dir: Path, subsets: dict[str, list[Sample]], jpeg_quality: int) -> None:
    """Cut every crop from its frame (each frame decoded once) and move keypoints into crop pixels."""
    import cv2
    from tqdm import tqdm

    from kprtrack.data.posetrack import read_image

    by_image: dict[str, list[tuple[str, Sample]]] = defaultdict(list)
    for subset, samples in subsets.items():
        for sample in samples:
            by_image[sample.source_file].append((subset, sample))
    used_names: set[str] = set()
    for source_file, items in tqdm(sorted(by_image.items()), desc="reid-dataset crops", unit="frame",
                                   disable=None):
        image = read_image(root / source_file)
        height, width = image.shape[:2]
        for subset, sample in items:
            x1, y1 = np.floor(np.clip(sample.box[:2], 0, [width, height])).astype(int)
            x2, y2 = np.ceil(np.clip(sample.box[2:], 0, [width, height])).astype(int)
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise InputError(f"{sample.video} frame {sample.frame}: box {sample.box.tolist()} of identity "
                                 f"{sample.identity} lies outside the {width}x{height} image", root / source_file)
            crop = image[y1:y2, x1:x2]
            stem = f"{_identity_slug(sample)}_{sample.video}_{sample.frame:06d}"
            name = f"images/{subset}/{sample.video}/{stem}.jpg"
            suffix = 1
            while name in used_names:  # the same identity annotated twice in one frame
                name = f"images/{subset}/{sample.video}/{stem}_{suffix}.jpg"
                suffix += 1
            used_names.add(name)
            ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:
                raise InputError(f"cannot encode crop {name} as JPEG", root / source_file)
            write_bytes(out_dir / name, encoded.tobytes())
            shift = np.asarray([x1, y1, 0], np.float32)
            sample.crop = {"file": name, "width": int(x2 - x1), "height": int(y2 - y1),
                           "box": [int(x1), int(y1), int(x2), int(y2)],
                           "keypoints": _to_crop(sample.keypoints, shift),
                           "negative_keypoints": _to_crop(sample.negatives, shift)}


def _to_crop(keypoints: np.ndarray, shift: np.ndarray) -> list:
    """Keypoints relative to the crop's top-left corner; unlabelled ones stay (0, 0, 0)."""
    moved = keypoints.astype(np.float64) - shift
    moved[keypoints[..., 2] <= 0] = 0.0
    return np.round(moved, 2).tolist()


def sample_record(sample: Sample) -> dict:
    crop = sample.crop
    return {"file": crop["file"], "identity": sample.identity, "person_id": sample.person_id,
            "track_id": sample.track_id, "video": sample.video, "frame": sample.frame,
            "image_id": sample.image_id, "source_file": sample.source_file, "box": crop["box"],
            "width": crop["width"], "height": crop["height"], "num_negative": sample.num_negative,
            "num_positive": sample.num_positive, "occlusion": sample.occlusion, "mpol": round(sample.mpol, 6),
            "keypoints": crop["keypoints"], "negative_keypoints": crop["negative_keypoints"]}


def csv_text(records: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def table_rows(subsets: dict[str, list[Sample]]) -> list[dict]:
    return [{"subset": name, "ids": len({s.identity for s in samples}), "images": len(samples),
             "videos": len({s.video for s in samples})} for name, samples in subsets.items()]


def format_table(rows: Sequence[dict]) -> str:
    """The seed's Table 4 layout, as a markdown table (readable as plain text too)."""
    lines = ["| Subset | # Ids | # Imgs | # Videos |", "|---|---:|---:|---:|"]
    lines += [f"| {r['subset']} | {r['ids']} | {r['images']} | {r['videos']} |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- command

def build(cfg) -> dict:
    """Build the data set described by a composed ``reid_dataset`` config; returns the summary."""
    from omegaconf import OmegaConf

    if cfg.get("demo"):
        from kprtrack.data.demo import ensure_demo

        root = ensure_demo()  # the synthetic PoseTrack21-layout demo, generated on first use
        cfg.annotations_dir = "posetrack_data"
    elif OmegaConf.is_missing(cfg, "root"):
        raise InputError("reid-dataset needs root=<PoseTrack21 folder> (images/ and "
                         f"{cfg.annotations_dir}/ inside), or demo=true")
    else:
        root = Path(str(cfg.root)).expanduser()
    out_dir = Path(str(cfg.output_dir)).expanduser()
    if not 0 < int(cfg.min_samples_per_id) <= int(cfg.max_samples_per_id):
        raise InputError(f"need 0 < min_samples_per_id ({cfg.min_samples_per_id}) <= max_samples_per_id "
                         f"({cfg.max_samples_per_id})")
    if not 0.0 <= float(cfg.query_ratio) < 1.0:
        raise InputError(f"query_ratio must be in [0, 1), got {cfg.query_ratio}")

    notes: list[str] = []
    stats: dict[str, dict] = {}
    subsets: dict[str, list[Sample]] = {}

    train_folder = root / str(cfg.annotations_dir) / str(cfg.train_split) if cfg.train_split else None
    if train_folder is not None and train_folder.is_dir():
        samples, stats["train"] = _collect(root, str(cfg.train_split), cfg)
        groups = sample_identities(samples, int(cfg.min_samples_per_id), int(cfg.max_samples_per_id))
        groups = choose_identities(groups, int(cfg.train_identities), int(cfg.seed))
        subsets["train"] = [s for g in groups.values() for s in g]
        if len(groups) < int(cfg.train_identities):
            notes.append(f"train: only {len(groups)} identities qualify (train_identities={cfg.train_identities})")
    elif cfg.train_split:
        notes.append(f"train subset skipped: no annotation folder {train_folder}")

    samples, stats["test"] = _collect(root, str(cfg.test_split), cfg)
    groups = sample_identities(samples, int(cfg.min_samples_per_id), int(cfg.max_samples_per_id))
    if not groups:
        raise InputError(f"no identity of split '{cfg.test_split}' has min_samples_per_id={cfg.min_samples_per_id} "
                         "usable crops; lower min_samples_per_id for small data sets", root)
    subsets["query"], subsets["gallery"] = split_query_gallery(groups, float(cfg.query_ratio))
    if not subsets["query"]:
        notes.append(f"no query: every test identity has fewer than {int(np.ceil(1 / max(cfg.query_ratio, 1e-9)))} "
                     "crops (queries per identity = floor(query_ratio x crops))")
    for samples in subsets.values():
        assign_mpol(samples)
    fallback = sum(s.get("identity_from_track_id", 0) for s in stats.values())
    if fallback:
        notes.append(f"{fallback} annotations have no person_id: identity = (video, track_id) for them, "
                     "so a person seen in two videos counts as two identities")

    write_crops(root, out_dir, subsets, int(cfg.jpeg_quality))
    rows = table_rows(subsets)
    table = format_table(rows)
    for name, samples in subsets.items():
        records = [sample_record(s) for s in samples]
        write_json(out_dir / "splits" / f"{name}.json", records)
        write_text(out_dir / "splits" / f"{name}.csv", csv_text(records))
    summary = {"root": str(root), "table": rows, "notes": notes, "stats": stats,
               "config": OmegaConf.to_container(cfg, resolve=True),
               "splits": {name: f"splits/{name}.json" for name in subsets}}
    write_text(out_dir / "table.md", "# Occluded PoseTrack-ReID subsets\n\n" + table + "\n"
               + "".join(f"\n- {note}" for note in notes) + ("\n" if notes else ""))
    write_json(out_dir / "dataset.json", summary, indent=2)
    return summary


def _collect(root: Path, split: str, cfg) -> tuple[list[Sample], dict]:
    return collect_samples(root, split, str(cfg.annotations_dir), float(cfg.min_box_size),
                           int(cfg.min_visible_keypoints))


def main(argv: list[str]) -> int:
    from kprtrack.config import compose_command

    cfg = compose_command("reid_dataset", argv)
    if cfg is None:
        return 0
    summary = build(cfg)
    print(format_table(summary["table"]))
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"written to {Path(str(cfg.output_dir)).expanduser()} (splits/*.json|csv, images/, table.md, dataset.json)")
    return 0
