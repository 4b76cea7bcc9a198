"""Training data for KPR: data set readers, the PK identity sampler and batch assembly.

Layouts read by ``ReidTrainSet``:
- ``reid-dataset`` folders (``splits/<split>.json`` records: ``file``, ``identity``, ``keypoints`` and
  ``negative_keypoints`` in crop pixels); part labels from ``<dataset>/labels/<file>.npy`` (``reid-labels``).
- Market-1501 / Occluded-Duke style folders: images in ``<root>/images`` or ``<root>/<subset>``
  (``bounding_box_train`` ...), identity = the file-name prefix before the first ``_``
  (``0002_c1s1_000451_01.jpg``; ids < 0 are junk and skipped), keypoints from KPR's released JSON
  ``<root>/keypoints/<stem>.json`` (or ``<root>/keypoints/<subset>/...``): a list of people
  ``{"keypoints": [[x, y, c] x 17], "is_target": bool}``; the target (``is_target``, else the first)
  gives the positives, the others the negatives. Part labels: BPBReID/KPR
  ``<root>/masks/pifpaf_maskrcnn_filtering/<subset>/<stem>.npy`` PifPaf fields, or ``<root>/labels/...``.
Without a label file, labels come from the keypoint labeller (``reid/labels.py``) when
``keypoint_labels=True`` (default), else the sample has no labels (all background in the batch).

Batch dict from ``make_batch(samples, cfg, rng)`` (B samples, size H x W):
``images`` float32 [B, 3, H, W] (RGB, ImageNet-normalised), ``prompts`` float32 [B, C, H, W]
(``build_prompt``: C = 1 + 1 (negatives) + parts of ``prompt_parts``) or None when prompts are off,
``pids`` int64 [B] (contiguous labels 0..C-1), ``part_labels`` int64 [B, H, W] (0 background, 1..K),
``keypoints`` float32 [B, 17, 3] and ``negatives`` list of [M_i, 17, 3] (after augmentation),
``bipo`` bool [B] (BIPO applied), ``index`` int64 [B] (data set indices).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from kprtrack.errors import InputError
from kprtrack.reid.crops import IMAGENET_MEAN, IMAGENET_STD
from kprtrack.reid.train import augment

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MARKET_SUBSETS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


# ---------------------------------------------------------------- records

@dataclass
class TrainRecord:
    image: Path
    pid: int  # contiguous label 0..C-1
    identity: str  # the original id
    keypoints: np.ndarray  # [17, 3] crop pixels
    negatives: np.ndarray  # [M, 17, 3]
    label_file: Path | None = None


def _people(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        people = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read keypoint file: {err}", path) from None
    if isinstance(people, dict):
        people = people.get("people") or people.get("annotations") or [people]
    arrays, target = [], 0
    for i, person in enumerate(people):
        values = person.get("keypoints") if isinstance(person, dict) else person
        try:
            arrays.append(np.asarray(values, np.float32).reshape(17, 3))
        except (TypeError, ValueError):
            raise InputError(f"person {i}: keypoints must be 17 x (x, y, score)", path) from None
        if isinstance(person, dict) and person.get("is_target"):
            target = i
    if not arrays:
        return np.zeros((17, 3), np.float32), np.zeros((0, 17, 3), np.float32)
    others = [a for i, a in enumerate(arrays) if i != target]
    return arrays[target], (np.stack(others) if others else np.zeros((0, 17, 3), np.float32))


def _pid_of(name: str) -> str | None:
    match = re.match(r"^(-?\d+)", name)
    if match:
        return None if int(match.group(1)) < 0 else str(int(match.group(1)))
    head = name.split("_")[0]
    return head or None


def read_market_folder(root: Path, subset: str = "train") -> list[dict]:
    """Records of a Market-1501 / Occluded-Duke style folder with KPR keypoint JSON (see module doc).
    A folder without images of its own but with Market-style sub-folders (``group1/images``,
    ``group2/images`` ...) is read as the union of those sub-folders (identity = file-name prefix,
    shared across sub-folders), each with its own ``keypoints/`` and ``labels/``."""
    root = Path(root)
    records = _read_market_images(root, subset)
    if records is not None:
        return records
    records = []
    found = False
    for sub in sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []:
        part = _read_market_images(sub, subset)
        if part is not None:
            found = True
            records += part
    if not found:
        raise InputError(f"no image folder (images/, {MARKET_SUBSETS.get(subset, subset)}/) with images, "
                         "nor sub-folders holding one", root)
    return records


def _read_market_images(root: Path, subset: str) -> list[dict] | None:
    """One Market-style folder's records; None when it has no image folder."""
    candidates = [root / "images", root / MARKET_SUBSETS.get(subset, subset), root / subset, root]
    image_dir = next((d for d in candidates if d.is_dir() and any(
        p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())), None)
    if image_dir is None:
        return None
    kp_dirs = [root / "keypoints" / image_dir.name, root / "keypoints", image_dir.parent / "keypoints"]
    mask_dirs = [root / "masks" / "pifpaf_maskrcnn_filtering" / image_dir.name, root / "labels" / image_dir.name,
                 root / "labels"]
    records = []
    for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        identity = _pid_of(image.stem)
        if identity is None:
            continue
        kp_file = next((d / n for d in kp_dirs for n in (f"{image.stem}.json", f"{image.name}.json")
                        if (d / n).is_file()), None)
        positive, negatives = _people(kp_file) if kp_file else (np.zeros((17, 3), np.float32),
                                                               np.zeros((0, 17, 3), np.float32))
        label = next((d / f"{image.stem}.npy" for d in mask_dirs if (d / f"{image.stem}.npy").is_file()), None)
        records.append({"image": image, "identity": identity, "keypoints": positive, "negatives": negatives,
                        "label_file": label})
    return records


def read_reid_dataset(dataset_dir: Path, split: str = "train", labels_dir: Path | None = None) -> list[dict]:
    from kprtrack.reid.evaluate import crop_keypoints, load_split
    from kprtrack.reid.labels import label_path

    dataset_dir = Path(dataset_dir)
    labels_dir = Path(labels_dir) if labels_dir else dataset_dir / "labels"
    path = dataset_dir / "splits" / f"{split}.json"
    out = []
    for record in load_split(dataset_dir, split):
        positive, negatives = crop_keypoints(record, path)
        label = label_path(labels_dir, record["file"])
        out.append({"image": dataset_dir / record["file"], "identity": str(record["identity"]),
                    "keypoints": positive, "negatives": negatives, "label_file": label if label.is_file() else None})
    return out


class ReidTrainSet:
    """Training crops of either layout; ``ds[i]`` -> dict(image uint8 RGB [h, w, 3], keypoints [17, 3],
    negatives [M, 17, 3], labels uint8 [h, w] or None, pid, identity, index)."""

    def __init__(self, root: str | Path, split: str = "train", scheme: str = "eight", keypoint_labels: bool = True,
                 labels_dir: str | Path | None = None):
        root = Path(root).expanduser()
        if (root / "splits" / f"{split}.json").is_file():
            raw = read_reid_dataset(root, split, Path(labels_dir) if labels_dir else None)
            self.layout = "reid-dataset"
        else:
            raw = read_market_folder(root, split)
            self.layout = "market"
        if not raw:
            raise InputError(f"no {split} crops found", root)
        self.root, self.scheme, self.keypoint_labels = root, scheme, keypoint_labels
        identities = sorted({r["identity"] for r in raw}, key=lambda s: (len(s), s))
        self.identities = identities
        index = {identity: i for i, identity in enumerate(identities)}
        self.records = [TrainRecord(r["image"], index[r["identity"]], r["identity"], r["keypoints"],
                                    r["negatives"], r["label_file"]) for r in raw]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    @property
    def labels(self) -> list[int]:
        return [r.pid for r in self.records]

    def __getitem__(self, i: int) -> dict:
        import cv2

        from kprtrack.data.posetrack import read_image
        from kprtrack.reid.labels import keypoint_part_labels, read_label_file

        record = self.records[i]
        image = cv2.cvtColor(read_image(record.image), cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        if record.label_file is not None:
            labels = read_label_file(record.label_file, (height, width), self.scheme)
        elif self.keypoint_labels:
            labels = keypoint_part_labels(record.keypoints, height, width, self.scheme)
        else:
            labels = None
        return {"image": image, "keypoints": record.keypoints.copy(), "negatives": record.negatives.copy(),
                "labels": labels, "pid": record.pid, "identity": record.identity, "index": i}


# ---------------------------------------------------------------- PK sampler

class PKSampler:
    """Batches of P identities x K images (a batch sampler: yields lists of data set indices).

    Per epoch (``set_epoch``; the order depends only on seed and epoch): identities are shuffled
    and cut into groups of P; every identity appears exactly once per epoch, the last group is
    filled with other randomly chosen identities. Each identity gives K of its images, without
    replacement when it has >= K, with replacement otherwise. With DDP each rank yields its
    contiguous slice ``[rank * n, (rank + 1) * n)`` (n = P*K / world_size) of every global batch,
    so the ranks' batches are disjoint and together make the global P x K batch.
    """

    def __init__(self, labels: Sequence[int], p: int = 16, k: int = 4, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.labels = np.asarray(labels, np.int64)
        self.p, self.k, self.seed, self.rank, self.world_size = int(p), int(k), int(seed), int(rank), int(world_size)
        self.by_id = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        if self.p < 1 or self.k < 1:
            raise ValueError(f"PK sampler needs p >= 1 and k >= 1, got p={p}, k={k}")
        if len(self.by_id) < self.p:
            raise ValueError(f"PK sampler: p={self.p} identities per batch but the data set has {len(self.by_id)}")
        if not 0 <= self.rank < self.world_size or (self.p * self.k) % self.world_size:
            raise ValueError(f"PK sampler: batch {self.p}x{self.k} must split evenly over world_size="
                             f"{self.world_size} (rank {self.rank})")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.by_id) // self.p)

    def global_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        ids = np.array(sorted(self.by_id))
        order = ids[rng.permutation(len(ids))]
        batches = []
        for start in range(0, len(order), self.p):
            group = list(order[start:start + self.p])
            if len(group) < self.p:
                rest = np.setdiff1d(ids, group)
                group += list(rng.choice(rest, self.p - len(group), replace=False))
            batch = []
            for pid in group:
                pool = self.by_id[int(pid)]
                batch += rng.choice(pool, self.k, replace=len(pool) < self.k).tolist()
            batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        n = self.p * self.k // self.world_size
        for batch in self.global_batches():
            yield batch[self.rank * n:(self.rank + 1) * n]


# ---------------------------------------------------------------- batches

@dataclass
class BatchConfig:
    height: int = 256
    width: int = 128
    train: bool = True  # False: resize + normalise only
    prompts: bool = True
    prompt_parts: str = "cck8"
    use_negative: bool = True
    vis_thresh: float = 0.3
    scheme: str = "eight"
    padding: int = augment.PADDING
    erasing_p: float = 0.5
    bipo_p: float = augment.BIPO_P
    flip_p: float = 0.0  # upstream KPR does not flip ('rf' is not in its default transforms)


def as_batch_config(cfg=None) -> BatchConfig:
    if cfg is None or isinstance(cfg, BatchConfig):
        return cfg or BatchConfig()
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    defaults = BatchConfig()
    return BatchConfig(**{f.name: type(getattr(defaults, f.name))(get(f.name, getattr(defaults, f.name)))
                          for f in fields(BatchConfig)})


def _normalise(image: np.ndarray) -> np.ndarray:
    return ((image.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32))
            / np.asarray(IMAGENET_STD, np.float32))


def augment_views(samples: Sequence[dict], cfg: BatchConfig, rng: np.random.Generator) -> list[dict]:
    """Resize + normalise every sample, then (train) crop, erase, flip and BIPO (occluder = another
    identity of the batch, taken resized and normalised but otherwise un-augmented)."""
    size = (cfg.height, cfg.width)
    base = []
    for s in samples:
        view = augment.resize({"image": s["image"], "keypoints": s["keypoints"], "negatives": s["negatives"],
                               "labels": s.get("labels")}, size)
        view["image"] = _normalise(view["image"])
        if view.get("labels") is None:
            view["labels"] = np.zeros(size, np.uint8)
        base.append(view)
    if not cfg.train:
        return base
    out = []
    pids = [s["pid"] for s in samples]
    for i, view in enumerate(base):
        view = augment.random_crop(view, rng, cfg.padding)
        view = augment.random_erasing(view, rng, cfg.erasing_p)
        if cfg.flip_p > 0 and rng.random() < cfg.flip_p:
            view = augment.horizontal_flip(view, cfg.scheme)
        others = [j for j, pid in enumerate(pids) if pid != pids[i]]
        if others and cfg.bipo_p > 0:
            view = augment.bipo(view, base[int(rng.choice(others))], rng, cfg.bipo_p, scheme=cfg.scheme)
        out.append(view)
    return out


def make_batch(samples: Sequence[dict], cfg=None, rng: np.random.Generator | None = None) -> dict:
    """Torch batch (see module doc) from ``ReidTrainSet`` items; augmentation (train) happens first,
    so prompts and part labels follow the image transforms."""
    import torch

    from kprtrack.reid.prompts import build_prompt

    cfg = as_batch_config(cfg)
    rng = rng if rng is not None else np.random.default_rng()
    views = augment_views(samples, cfg, rng)
    size = (cfg.height, cfg.width)
    images = np.stack([v["image"].transpose(2, 0, 1) for v in views]).astype(np.float32)
    batch = {
        "images": torch.from_numpy(np.ascontiguousarray(images)),
        "pids": torch.as_tensor([int(s["pid"]) for s in samples], dtype=torch.int64),
        "part_labels": torch.from_numpy(np.stack([v["labels"] for v in views]).astype(np.int64)),
        "keypoints": torch.from_numpy(np.stack([v["keypoints"] for v in views]).astype(np.float32)),
        "negatives": [torch.from_numpy(v["negatives"].astype(np.float32)) for v in views],
        "bipo": torch.as_tensor([v.get("bipo") is not None for v in views], dtype=torch.bool),
        "index": torch.as_tensor([int(s.get("index", -1)) for s in samples], dtype=torch.int64),
        "prompts": None,
    }
    if cfg.prompts:
        prompts = np.stack([build_prompt(v["keypoints"], v["negatives"], size, cfg.prompt_parts, cfg.use_negative,
                                         cfg.vis_thresh) for v in views])
        batch["prompts"] = torch.from_numpy(prompts)
    return batch


class Collate:
    """``DataLoader(collate_fn=Collate(cfg, seed))``: a picklable collate with its own generator
    (seeded per worker process by ``seed`` and the worker id when used in workers)."""

    def __init__(self, cfg=None, seed: int | None = None):
        self.cfg = as_batch_config(cfg)
        self.seed = seed
        self._rng = None

    def __call__(self, samples: Sequence[dict]) -> dict:
        if self._rng is None:
            import torch.utils.data as tud

            info = tud.get_worker_info()
            self._rng = np.random.default_rng(None if self.seed is None else [self.seed, info.id if info else 0])
        return make_batch(samples, self.cfg, self._rng)
