"""Reports: metrics.json with every number, report.md tables, self-contained report.html with plots."""
from __future__ import annotations

import base64
import json
import re

import pytest

from kprtrack.eval import evaluate_mot
from kprtrack.eval.report import worst_sequences
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def tud(tmp_path_factory):
    data = shared_file("data/mot/tud/data")
    out = tmp_path_factory.mktemp("report")
    return evaluate_mot(data, data, out, {"progress": False, "report": {"worst": 1}}), out


def test_metrics_json_has_every_number(tud):
    result, out = tud
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["sequences"] == ["TUD-Campus", "TUD-Stadtmitte"]
    assert saved["box"]["combined"] == pytest.approx(result["box"]["combined"])
    for field in ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "MOTA", "MOTP", "IDSW",
                  "CLR_FP", "CLR_FN", "Frag", "MT", "ML", "IDF1", "IDP", "IDR"):
        assert field in saved["box"]["per_sequence"]["TUD-Campus"]
    assert len(saved["box"]["alpha"]["combined"]["HOTA"]) == len(saved["alphas"]) == 19
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temp files


def test_markdown_tables_and_worst_sequences(tud):
    result, out = tud
    md = (out / "report.md").read_text()
    assert "## Combined" in md and "| box (combined) | 40.00 | 39.77 | 41.24 |" in md
    assert worst_sequences(result, 1) == ["TUD-Campus"]  # box HOTA 39.14 < 39.78
    worst_block = md.split("## Worst 1 sequences")[1].split("##")[0]
    assert "TUD-Campus" in worst_block and "TUD-Stadtmitte" not in worst_block


def test_html_is_self_contained_with_png_plots(tud):
    _, out = tud
    page = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page
    assert "<table>" in page and "TUD-Stadtmitte" in page
