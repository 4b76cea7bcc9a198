"""reid-eval: ranking metrics, prompt plumbing, per-MPOL report, on a synthetic Occ-PTrack build."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kprtrack.cli import main as cli_main
from kprtrack.config import compose
from kprtrack.reid import evaluate
from test_reid_dataset import build_fixture_dataset


@pytest.fixture(scope="module")
def occ_dir(tmp_path_factory):
    return build_fixture_dataset(tmp_path_factory.mktemp("occ"))


def test_rank_and_average_precision_by_hand():
    # Query "a": gallery sorted by distance is b, a, b, a -> first hit at rank 2, AP = (1/2 + 2/4) / 2.
    # Query "b": b first -> rank 1, AP = (1/1 + 2/3) / 2. Query "c": no gallery crop -> left out.
    distance = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.9, 0.2, 0.05], [0.5, 0.5, 0.5, 0.5]])
    gallery = ["b", "a", "b", "a"]
    results = evaluate.rank_queries(distance, ["a", "b", "c"], gallery)
    assert results.first_hit.tolist() == [1, 1, -1]  # query b: a(0.05) comes first
    np.testing.assert_allclose(results.average_precision[:2], [0.5, (1 / 2 + 2 / 3) / 2])
    summary = results.summary([1, 2, 5])
    assert summary["queries"] == 2 and summary["rank1"] == 0.0 and summary["rank2"] == 100.0
    np.testing.assert_allclose(summary["mAP"], 100 * (0.5 + 7 / 12) / 2)
    assert np.isnan(results.summary([1], np.array([False, False, True]))["rank1"])


def test_ties_keep_gallery_order():
    results = evaluate.rank_queries(np.zeros((1, 3)), ["x"], ["y", "x", "x"])
    assert results.first_hit.tolist() == [1]


def test_cli_with_part_colors_writes_report(occ_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli_main(["reid-eval", f"dataset_dir={occ_dir}", f"output_dir={out}", "reid=part_colors"]) == 0
    printed = capsys.readouterr().out
    assert "w/o prompt" in printed and "takes no keypoint prompts" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["overall"]) == ["off"] and metrics["num_query"] == 8 and metrics["num_gallery"] == 32
    row = metrics["overall"]["off"]
    assert row["queries"] == 8 and row["rank1"] <= row["rank5"] <= row["rank10"] <= 100
    assert row["rank1"] >= 50  # distinct clothing colours: far above the 25% of chance with 4 ids
    assert sum(metrics["bin_counts"]) == 8 and len(metrics["per_bin"]["off"]) == 5
    assert (out / "mpol.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    md = (out / "report.md").read_text()
    assert "| w/o prompt |" in md and "mpol.png" in md and "## Per query MPOL bin" in md


class FakePromptedReID:
    """A promptable backend: part 1 = mean colour around the positive keypoints (invisible without them),
    part 2 = mean colour around the negative keypoints. Records what it was given."""

    def __init__(self):
        self.calls = []

    def embed_crops(self, images, keypoints_pos, keypoints_neg):
        self.calls.append((keypoints_pos.copy(), [n.copy() for n in keypoints_neg]))
        n = len(images)
        emb = np.zeros((n, 3, 3), np.float32)
        vis = np.zeros((n, 3), np.float32)
        for i, image in enumerate(images):
            emb[i, 0], vis[i, 0] = image.reshape(-1, 3).mean(axis=0), 1
            for part, people in ((1, keypoints_pos[i][None]), (2, keypoints_neg[i])):
                points = people.reshape(-1, 3)
                points = points[points[:, 2] > 0]
                if len(points):
                    xs = np.clip(points[:, 0].astype(int), 0, image.shape[1] - 1)
                    ys = np.clip(points[:, 1].astype(int), 0, image.shape[0] - 1)
                    emb[i, part], vis[i, part] = image[ys, xs].mean(axis=0), 1
        return emb, vis


def test_prompted_backend_runs_both_modes_and_gets_empty_prompts_when_off(occ_dir, tmp_path):
    cfg = compose("reid_eval", [f"dataset_dir={occ_dir}", f"output_dir={tmp_path / 'e'}", "batch_size=5"])
    backend = FakePromptedReID()
    metrics = evaluate.run(cfg, backend=backend)
    assert list(metrics["overall"]) == ["on", "off"]
    assert any("empty prompt" in note for note in metrics["notes"])
    # 40 crops in batches of 5, twice (on, off): query and gallery each batched separately.
    assert len(backend.calls) == 2 * (8 // 5 + 1) + 2 * (32 // 5 + 1)
    on_calls, off_calls = backend.calls[: len(backend.calls) // 2], backend.calls[len(backend.calls) // 2:]
    assert all(pos.shape[1:] == (17, 3) for pos, _ in on_calls)
    assert sum((pos[..., 2] > 0).sum() for pos, _ in on_calls) == 40 * 15
    assert sum(sum(len(n) for n in neg) for _, neg in on_calls) > 0  # occluders reach the backend
    assert all(not pos.any() and all(len(n) == 0 for n in neg) for pos, neg in off_calls)
    md = (tmp_path / "e/report.md").read_text()
    assert "| with prompt |" in md and "| w/o prompt |" in md and "R-1 with prompt" in md


@pytest.mark.slow
def test_bad_inputs_exit_2(occ_dir, tmp_path, capsys):
    assert cli_main(["reid-eval", f"dataset_dir={tmp_path / 'missing'}"]) == 2
    assert "query.json" in capsys.readouterr().err
    assert cli_main(["reid-eval", f"dataset_dir={occ_dir}", "prompts=maybe", f"output_dir={tmp_path}"]) == 2
    assert "prompts" in capsys.readouterr().err
    assert cli_main(["reid-eval", f"dataset_dir={occ_dir}", "mpol_bins=[0.5,0.1]", f"output_dir={tmp_path}"]) == 2
    broken = tmp_path / "broken"
    (broken / "splits").mkdir(parents=True)
    (broken / "splits/query.json").write_text("[{\"file\": 1}]")
    (broken / "splits/gallery.json").write_text("[]")
    assert cli_main(["reid-eval", f"dataset_dir={broken}"]) == 2
    assert "lacks identity" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_dataset_end_to_end(tmp_path, capsys):
    """The issue's check: reid-dataset + reid-eval on the demo data give the table and the MPOL plot."""
    from kprtrack.data.demo import ensure_demo

    root = ensure_demo(tmp_path / "demo", num_frames=30)
    occ, out = tmp_path / "occ", tmp_path / "eval"
    assert cli_main(["reid-dataset", f"root={root}", f"output_dir={occ}"]) == 0
    assert "| Subset | # Ids | # Imgs | # Videos |" in (occ / "table.md").read_text()
    assert cli_main(["reid-eval", f"dataset_dir={occ}", f"output_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["off"]["queries"] == metrics["num_query"] > 0
    assert sum(metrics["bin_counts"]) == metrics["num_query"]
    assert (out / "mpol.png").stat().st_size > 10_000
    assert "w/o prompt" in capsys.readouterr().out


class FakePipelineReID:
    """Prompt support through the pipeline contract embed(frame, detections): other people = extra rows."""

    supports_prompts = True

    def __init__(self):
        self.seen = []

    def embed(self, frame, detections):
        self.seen.append((len(detections), float(detections.keypoints[0, :, 2].sum())))
        mean = frame.image.reshape(-1, 3).mean(axis=0).astype(np.float32)
        emb = np.tile(mean, (len(detections), 2, 1))
        return detections.with_(embeddings=emb, visibility=np.ones((len(detections), 2), np.float32))


def test_pipeline_contract_backend_gets_occluders_as_extra_rows(occ_dir, tmp_path):
    cfg = compose("reid_eval", [f"dataset_dir={occ_dir}", f"output_dir={tmp_path / 'e'}"])
    backend = FakePipelineReID()
    metrics = evaluate.run(cfg, backend=backend)
    assert list(metrics["overall"]) == ["on", "off"]
    on, off = backend.seen[:40], backend.seen[40:]
    records = json.loads((occ_dir / "splits/query.json").read_text()) + \
        json.loads((occ_dir / "splits/gallery.json").read_text())
    assert [rows for rows, _ in on] == [1 + len(r["negative_keypoints"]) for r in records]
    assert all(visible == 15 for _, visible in on)
    assert off == [(1, 0.0)] * 40  # no prompt: the target alone, no keypoints
