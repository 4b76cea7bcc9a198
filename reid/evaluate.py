"""``python -m kprtrack reid-eval``: rank-k and mAP on an Occ-PTrack style data set.

Protocol (KPR supplementary): every query is ranked against ALL gallery crops, same video
included, no re-ranking; distance = visibility-masked part distance (``tracker/part_distance``).
The same backend runs with keypoint prompts (target keypoints positive, other people's keypoints
inside the crop negative) and without (empty prompt), and both are broken down per MPOL bin (Fig. 7).

"Without prompt" here is the same model fed an empty prompt, not a separately trained
non-promptable model as in the paper's Table 6.
"""
from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.errors import InputError
from kprtrack.io import write_bytes, write_json, write_text
from kprtrack.record import NUM_KEYPOINTS, Detections, Frame
from kprtrack.reid.mpol import bin_index

MODE_LABELS = {"on": "with prompt", "off": "w/o prompt"}


# ---------------------------------------------------------------- data set

def load_split(dataset_dir: Path, name: str) -> list[dict]:
    path = dataset_dir / "splits" / f"{name}.json"
    if not path.is_file():
        raise InputError(f"split file not found; build the data set first with "
                         f"`python -m kprtrack reid-dataset output_dir={dataset_dir}`", path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read split file: {err}", path) from None
    if not isinstance(records, list):
        raise InputError("split file must hold a list of crop records", path)
    for i, record in enumerate(records):
        missing = [k for k in ("file", "identity", "keypoints") if not isinstance(record, dict) or k not in record]
        if missing:
            raise InputError(f"record {i} lacks {', '.join(missing)}", path)
    return records


def crop_keypoints(record: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(positive [17, 3], negative [M, 17, 3]) in crop pixels, validated."""
    try:
        positive = np.asarray(record["keypoints"], np.float32).reshape(NUM_KEYPOINTS, 3)
        negative = np.asarray(record.get("negative_keypoints") or [], np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    except ValueError:
        raise InputError(f"{record['file']}: keypoints must be 17 x (x, y, score) per person", path) from None
    return positive, negative


def read_crop(dataset_dir: Path, record: dict) -> np.ndarray:
    from kprtrack.data.posetrack import read_image

    return read_image(dataset_dir / record["file"])


# ---------------------------------------------------------------- embedding

class EmbeddingRunner:
    """Feeds crops to any ReID backend, with or without keypoint prompts.

    Backends with ``embed_crops(images, keypoints_pos, keypoints_neg)`` (KPR, ONNX KPR) take crops
    directly. Others go through the pipeline contract ``embed(frame, detections)`` with the crop as
    the frame, the target as row 0 and, for prompts, the other people as extra rows. A backend
    takes prompts when it says so (``supports_prompts``) or has ``embed_crops``.
    """

    def __init__(self, backend, batch_size: int = 32):
        self.backend = backend
        self.name = type(backend).__name__
        self.batch_size = max(1, int(batch_size))
        self.has_crops_api = callable(getattr(backend, "embed_crops", None))
        self.supports_prompts = bool(getattr(backend, "supports_prompts", self.has_crops_api))

    def embed(self, crops: Sequence[np.ndarray], positives: Sequence[np.ndarray],
              negatives: Sequence[np.ndarray], prompts: bool) -> tuple[np.ndarray, np.ndarray]:
        if self.has_crops_api:
            return self._embed_crops(crops, positives, negatives, prompts)
        rows = [self._embed_one(c, p, n, prompts) for c, p, n in zip(crops, positives, negatives)]
        return _stack(rows, self.name)

    def _embed_crops(self, crops, positives, negatives, prompts):
        parts = []
        for start in range(0, len(crops), self.batch_size):
            stop = start + self.batch_size
            pos = np.stack(positives[start:stop]).astype(np.float32)
            neg = [n.astype(np.float32) for n in negatives[start:stop]]
            if not prompts:  # an empty prompt: every keypoint below any threshold
                pos = np.zeros_like(pos)
                neg = [np.zeros((0, NUM_KEYPOINTS, 3), np.float32) for _ in neg]
            embeddings, visibility = self.backend.embed_crops(list(crops[start:stop]), pos, neg)
            parts.append((np.asarray(embeddings, np.float32), np.asarray(visibility, np.float32)))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _embed_one(self, crop, positive, negative, prompts):
        height, width = crop.shape[:2]
        boxes = [[0.0, 0.0, float(width), float(height)]]
        keypoints = [positive]
        if prompts and self.supports_prompts:
            for person in negative:
                boxes.append(_keypoint_box(person, width, height))
                keypoints.append(person)
        elif not prompts and self.supports_prompts:
            keypoints = [np.zeros_like(positive)]
        dets = Detections(boxes=np.asarray(boxes, np.float32), scores=np.ones(len(boxes), np.float32),
                          keypoints=np.stack(keypoints).astype(np.float32))
        out = self.backend.embed(Frame(sequence="reid-eval", index=0, image=crop), dets)
        if out.embeddings is None or out.visibility is None:
            raise InputError(f"ReID backend {self.name} returned no embeddings/visibility")
        return out.embeddings[0], out.visibility[0]


def _keypoint_box(person: np.ndarray, width: int, height: int) -> list[float]:
    visible = person[person[:, 2] > 0, :2]
    if not len(visible):
        return [0.0, 0.0, float(width), float(height)]
    low, high = visible.min(axis=0), visible.max(axis=0) + 1.0
    return [float(max(0, low[0])), float(max(0, low[1])), float(min(width, high[0])), float(min(height, high[1]))]


def _stack(rows, name):
    shapes = {np.shape(e) for e, _ in rows}
    if len(shapes) > 1:
        raise InputError(f"ReID backend {name} returned embeddings of different shapes {sorted(shapes)}")
    return (np.stack([np.asarray(e, np.float32) for e, _ in rows]),
            np.stack([np.asarray(v, np.float32) for _, v in rows]))


# ---------------------------------------------------------------- metrics

@dataclass
class QueryResults:
    """Per query: 0-based rank of the first correct gallery crop (-1: none) and average precision."""

    first_hit: np.ndarray  # [Q] int
    average_precision: np.ndarray  # [Q] float, nan when the identity has no gallery crop

    @property
    def valid(self) -> np.ndarray:
        return self.first_hit >= 0

    def summary(self, ranks: Sequence[int], mask: np.ndarray | None = None) -> dict:
        valid = self.valid if mask is None else self.valid & mask
        count = int(valid.sum())
        out = {"queries": count}
        for k in ranks:
            out[f"rank{k}"] = float(100.0 * np.mean(self.first_hit[valid] < k)) if count else float("nan")
        out["mAP"] = float(100.0 * np.mean(self.average_precision[valid])) if count else float("nan")
        return out


def rank_queries(distance: np.ndarray, query_ids: Sequence[str], gallery_ids: Sequence[str]) -> QueryResults:
    """CMC first-hit ranks and average precision; ties keep gallery order (stable sort)."""
    distance = np.asarray(distance, np.float64)
    labels = {name: i for i, name in enumerate(sorted(set(query_ids) | set(gallery_ids)))}
    q = np.asarray([labels[x] for x in query_ids])
    g = np.asarray([labels[x] for x in gallery_ids])
    first_hit = np.full(len(q), -1, np.int64)
    average_precision = np.full(len(q), np.nan)
    for i in range(len(q)):
        matches = g[np.argsort(distance[i], kind="stable")] == q[i]
        hits = np.flatnonzero(matches)
        if not len(hits):
            continue
        first_hit[i] = hits[0]
        # Precision at each correct position, averaged over the correct positions.
        average_precision[i] = np.mean(np.arange(1, len(hits) + 1) / (hits + 1))
    return QueryResults(first_hit, average_precision)


@dataclass
class SplitInput:
    """A split's crops, read from disk batch by batch (a full Occ-PTrack split does not fit in memory)."""

    dataset_dir: Path
    name: str
    records: list[dict]

    @property
    def ids(self) -> list[str]:
        return [str(r["identity"]) for r in self.records]

    def batches(self, size: int):
        path = self.dataset_dir / "splits" / f"{self.name}.json"
        for start in range(0, len(self.records), size):
            chunk = self.records[start:start + size]
            keypoints = [crop_keypoints(r, path) for r in chunk]
            yield ([read_crop(self.dataset_dir, r) for r in chunk], [k[0] for k in keypoints],
                   [k[1] for k in keypoints])


def embed_split(runner: EmbeddingRunner, split: SplitInput, prompts: bool) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    parts = []
    with tqdm(total=len(split.records), desc=f"reid-eval {split.name} ({'with' if prompts else 'w/o'} prompt)",
              unit="crop", disable=None) as progress:
        for crops, positives, negatives in split.batches(max(runner.batch_size, 64)):
            parts.append(runner.embed(crops, positives, negatives, prompts=prompts))
            progress.update(len(crops))
    return _stack_batches(parts, runner.name)


def _stack_batches(parts, name):
    shapes = {p[0].shape[1:] for p in parts}
    if len(shapes) > 1:
        raise InputError(f"ReID backend {name} returned embeddings of different shapes {sorted(shapes)}")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def evaluate_mode(runner: EmbeddingRunner, prompts: bool, query: SplitInput, gallery: SplitInput) -> QueryResults:
    from kprtrack.tracker.part_distance import part_distance

    q_emb, q_vis = embed_split(runner, query, prompts)
    g_emb, g_vis = embed_split(runner, gallery, prompts)
    distance = part_distance(q_emb, q_vis, g_emb, g_vis)
    return rank_queries(distance, query.ids, gallery.ids)


# ---------------------------------------------------------------- report

def bin_labels(edges: Sequence[float]) -> list[str]:
    return [f"{100 * a:.0f}-{100 * b:.0f}%" for a, b in zip(edges[:-1], edges[1:])]


def plot_mpol(per_bin: dict, edges: Sequence[float], counts: Sequence[int], title: str) -> bytes:
    """Fig. 7 style: rank-1 and mAP per query-MPOL bin, one line per prompt mode; PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    labels = [f"{name}\n(n={n})" for name, n in zip(bin_labels(edges), counts)]
    x = np.arange(len(labels))
    figure = Figure(figsize=(10, 4), dpi=100)
    for column, (metric, axis_title) in enumerate((("rank1", "Rank-1 (%)"), ("mAP", "mAP (%)"))):
        axis = figure.add_subplot(1, 2, column + 1)
        width = 0.8 / max(1, len(per_bin))
        for m, (mode, rows) in enumerate(per_bin.items()):
            values = np.asarray([row[metric] for row in rows], np.float64)
            offset = (m - (len(per_bin) - 1) / 2) * width
            bars = axis.bar(x + offset, np.nan_to_num(values), width, label=MODE_LABELS[mode])
            for bar, value in zip(bars, values):  # empty bins get no bar and no number
                if value == value:
                    axis.annotate(f"{value:.0f}", (bar.get_x() + bar.get_width() / 2, value), ha="center",
                                  va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
        axis.set_xticks(x, labels, fontsize=8)
        axis.set_xlabel("query multi-person occlusion level (MPOL)")
        axis.set_ylabel(axis_title)
        axis.set_ylim(0, 108)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"  # nan -> "-"


def markdown_report(metrics: dict, image_name: str) -> str:
    ranks = metrics["ranks"]
    lines = [f"# ReID evaluation: {metrics['backend']}", "",
             f"Data set `{metrics['dataset_dir']}`: {metrics['num_query']} queries, {metrics['num_gallery']} gallery "
             "crops. Every query vs all gallery crops (same video included), no re-ranking, "
             "visibility-masked part distance.", ""]
    header = "| Prompt | " + " | ".join(f"R-{k}" for k in ranks) + " | mAP | queries |"
    lines += [header, "|---" * (len(ranks) + 3) + "|"]
    for mode, row in metrics["overall"].items():
        lines.append(f"| {MODE_LABELS[mode]} | " + " | ".join(_fmt(row[f'rank{k}']) for k in ranks)
                     + f" | {_fmt(row['mAP'])} | {row['queries']} |")
    lines += ["", "## Per query MPOL bin (Fig. 7)", "",
              "| MPOL | queries | " + " | ".join(f"R-1 {MODE_LABELS[m]} | mAP {MODE_LABELS[m]}"
                                                for m in metrics["per_bin"]) + " |",
              "|---|---:" + "|---:" * (2 * len(metrics["per_bin"])) + "|"]
    for b, label in enumerate(metrics["bins"]):
        cells = []
        for rows in metrics["per_bin"].values():
            cells += [_fmt(rows[b]["rank1"]), _fmt(rows[b]["mAP"])]
        lines.append(f"| {label} | {metrics['bin_counts'][b]} | " + " | ".join(cells) + " |")
    lines += ["", f"![rank-1 and mAP per MPOL bin]({image_name})", ""]
    lines += [f"- {note}" for note in metrics["notes"]]
    return "\n".join(lines) + "\n"


def html_report(markdown: str, png: bytes, image_name: str) -> str:
    """The markdown report as a self-contained page: tables rendered, the plot embedded."""
    body, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            rest = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rest}</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            data = base64.b64encode(png).decode("ascii")
            body.append(f'<img alt="{html.escape(image_name)}" src="data:image/png;base64,{data}">')
        elif line.startswith("- "):
            body.append(f"<p>&bull; {html.escape(line[2:])}</p>")
        elif line.strip():
            body.append("<p>" + re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(line)) + "</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ReID evaluation</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---------------------------------------------------------------- command

def run(cfg, backend=None) -> dict:
    """Evaluate; ``backend`` overrides ``cfg.reid`` (tests). Returns the metrics written."""
    from omegaconf import OmegaConf

    from kprtrack.config import instantiate

    dataset_dir = Path(str(cfg.dataset_dir)).expanduser()
    out_dir = Path(str(cfg.output_dir)).expanduser()
    mode_choice = str(cfg.prompts)
    if mode_choice not in ("both", "on", "off"):
        raise InputError(f"prompts must be both, on or off, got '{mode_choice}'")
    edges = [float(e) for e in cfg.mpol_bins]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise InputError(f"mpol_bins must be at least 2 increasing edges, got {edges}")
    ranks = [int(k) for k in cfg.ranks]

    query_records, gallery_records = load_split(dataset_dir, "query"), load_split(dataset_dir, "gallery")
    if not query_records or not gallery_records:
        raise InputError("the data set has no query or no gallery crop (identities need >= 5 crops to give a "
                         "query at query_ratio 0.2: rebuild with more crops or a larger query_ratio)",
                         dataset_dir / "splits")
    if backend is None:
        backend = instantiate(cfg.reid)
    runner = EmbeddingRunner(backend, batch_size=int(cfg.batch_size))

    notes = []
    modes = ["on", "off"] if mode_choice == "both" else [mode_choice]
    if not runner.supports_prompts:
        if "on" in modes:
            notes.append(f"backend {runner.name} takes no keypoint prompts: evaluated without prompt only "
                         "(it still gets the target's own keypoints where it uses them, as in tracking)")
        modes = ["off"]
    else:
        notes.append("'w/o prompt' = the same model with an empty prompt (not a separately trained "
                     "non-promptable model as in the paper's Table 6)")

    query = SplitInput(dataset_dir, "query", query_records)
    gallery = SplitInput(dataset_dir, "gallery", gallery_records)
    query_mpol = np.asarray([float(r.get("mpol", 0.0)) for r in query_records])
    bins = bin_index(query_mpol, edges)
    results = {mode: evaluate_mode(runner, mode == "on", query, gallery) for mode in modes}
    missing = int((~next(iter(results.values())).valid).sum())
    if missing:
        notes.append(f"{missing} queries have no gallery crop of their identity and are left out")

    metrics = {
        "backend": runner.name, "reid_config": OmegaConf.to_container(cfg.reid, resolve=True),
        "dataset_dir": str(dataset_dir), "num_query": len(query_records), "num_gallery": len(gallery_records),
        "ranks": ranks, "protocol": "all queries vs all gallery (same video included), no re-ranking, "
                                    "visibility-masked part distance",
        "overall": {m: r.summary(ranks) for m, r in results.items()},
        "bins": bin_labels(edges), "bin_edges": edges,
        "bin_counts": [int(((bins == b) & next(iter(results.values())).valid).sum()) for b in range(len(edges) - 1)],
        "per_bin": {m: [r.summary([1], bins == b) for b in range(len(edges) - 1)] for m, r in results.items()},
        "notes": notes,
    }
    png = plot_mpol(metrics["per_bin"], edges, metrics["bin_counts"],
                    f"{runner.name}: performance vs query MPOL")
    markdown = markdown_report(metrics, "mpol.png")
    write_bytes(out_dir / "mpol.png", png)
    write_text(out_dir / "report.md", markdown)
    write_text(out_dir / "report.html", html_report(markdown, png, "mpol.png"))
    write_json(out_dir / "metrics.json", _json_safe(metrics), indent=2)
    return metrics


def _json_safe(value):
    """NaN is not JSON: empty bins are written as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def main(argv: list[str]) -> int:
    from kprtrack.config import compose_command

    cfg = compose_command("reid_eval", argv)
    if cfg is None:
        return 0
    metrics = run(cfg)
    ranks = metrics["ranks"]
    print(f"{'prompt':<12}" + "".join(f"{'R-' + str(k):>8}" for k in ranks) + f"{'mAP':>8}{'queries':>9}")
    for mode, row in metrics["overall"].items():
        print(f"{MODE_LABELS[mode]:<12}" + "".join(f"{_fmt(row[f'rank{k}']):>8}" for k in ranks)
              + f"{_fmt(row['mAP']):>8}{row['queries']:>9}")
    for note in metrics["notes"]:
        print(f"note: {note}")
    print(f"report: {Path(str(cfg.output_dir)).expanduser() / 'report.html'}")
    return 0
