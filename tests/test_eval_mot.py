"""MOTChallenge evaluation: regression against official TrackEval / py-motmetrics values, bad input."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from kprtrack.cli import main as cli_main
from kprtrack.errors import InputError
from kprtrack.eval import evaluate_mot
from tests.conftest import shared_file

# py-motmetrics' own test values for these files (shared/README.md)
MOTMETRICS = {"TUD-Campus": {"MOTA": 0.526462, "IDF1": 0.557659},
              "TUD-Stadtmitte": {"MOTA": 0.564014, "IDF1": 0.644619}}


@pytest.fixture(scope="module")
def tud_result(tmp_path_factory):
    data = shared_file("data/mot/tud/data")
    return evaluate_mot(data, data, tmp_path_factory.mktemp("tud"), {"progress": False})


def _expected_rows() -> dict[str, dict[str, float]]:
    path = shared_file("data/mot/tud/expected_official_trackeval_12c8791_detailed.csv")
    with open(path) as handle:
        return {row.pop("seq"): {k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)}


def test_reproduces_official_trackeval_per_sequence_and_combined(tud_result):
    expected = _expected_rows()
    ours = dict(tud_result["box"]["per_sequence"], COMBINED=tud_result["box"]["combined"])
    alpha = dict(tud_result["box"]["alpha"]["per_sequence"], COMBINED=tud_result["box"]["alpha"]["combined"])
    checked = 0
    for seq, row in expected.items():
        for column, value in row.items():
            field, _, suffix = column.partition("___")
            if not suffix or suffix == "AUC":
                if field == "CLR_Frames" and seq == "COMBINED":
                    continue
                assert ours[seq][field] == pytest.approx(value, abs=1e-6), (seq, column)
            else:
                index = int(suffix) // 5 - 1  # HOTA___5 -> alpha 0.05
                assert alpha[seq][field][index] == pytest.approx(value, abs=1e-6), (seq, column)
            checked += 1
    assert checked > 500
    for field in ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW"):
        assert field in ours["COMBINED"]


def test_summary_file_values(tud_result):
    lines = shared_file("data/mot/tud/expected_official_trackeval_12c8791_summary.txt").read_text().split("\n")
    summary = dict(zip(lines[0].split(), map(float, lines[1].split())))
    combined = tud_result["box"]["combined"]
    for field in ("HOTA", "DetA", "AssA", "MOTA", "IDF1"):
        assert 100 * combined[field] == pytest.approx(summary[field], abs=1e-3)
    assert combined["IDSW"] == summary["IDSW"] == 14


def test_matches_py_motmetrics(tud_result):
    for seq, values in MOTMETRICS.items():
        for field, value in values.items():
            assert tud_result["box"]["per_sequence"][seq][field] == pytest.approx(value, abs=1e-6)


def test_cli_writes_reports_and_motchallenge_layout(tmp_path, capsys):
    data = shared_file("data/mot/tud/data")
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for seq in MOTMETRICS:  # official layout: <seq>/gt/gt.txt + seqinfo.ini, predictions <seq>.txt
        (gt / seq / "gt").mkdir(parents=True)
        shutil.copy(data / seq / "gt.txt", gt / seq / "gt" / "gt.txt")
        shutil.copy(data / seq / "seqinfo.ini", gt / seq / "seqinfo.ini")
        pred.mkdir(exist_ok=True)
        shutil.copy(data / seq / "test.txt", pred / f"{seq}.txt")
    out = tmp_path / "out"
    assert cli_main(["eval", "format=mot", f"gt={gt}", f"pred={pred}", f"out={out}", "progress=false"]) == 0
    printed = capsys.readouterr().out
    assert "HOTA 40.00" in printed and "MOTA 55.51" in printed and "IDSW 14" in printed
    assert {p.name for p in out.iterdir()} == {"metrics.json", "report.md", "report.html"}


def _tud_copy(tmp_path: Path) -> Path:
    data = shared_file("data/mot/tud/data")
    root = tmp_path / "data"
    shutil.copytree(data, root)
    for f in root.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    return root


def test_empty_predictions_evaluate_to_zeros(tmp_path):
    root = _tud_copy(tmp_path)
    for seq in MOTMETRICS:
        (root / seq / "test.txt").write_text("")
    combined = evaluate_mot(root, root, None, {"progress": False})["box"]["combined"]
    assert combined["HOTA"] == 0 and combined["DetA"] == 0 and combined["IDF1"] == 0
    assert combined["CLR_FN"] == 359 + 1156 and combined["CLR_FP"] == 0


@pytest.mark.parametrize("content, message", [
    ("1,1,10,10,20,20,-1,-1,-1,-1\n1,x,1,1,1,1,-1,-1,-1,-1\n", "line 2: non-numeric"),
    ("1,4,10,10,20,20,-1,-1,-1,-1\n1,4,30,30,20,20,-1,-1,-1,-1\n", "duplicate id 4 in frame 1 (lines 1, 2)"),
    ("1,4,10,10\n", "line 1: 4 columns"),
    ("999,4,10,10,20,20,-1,-1,-1,-1\n", "beyond the sequence length 71"),
])
def test_bad_prediction_rows_name_file_and_line(tmp_path, content, message):
    root = _tud_copy(tmp_path)
    bad = root / "TUD-Campus" / "test.txt"
    bad.write_text(content)
    with pytest.raises(InputError) as err:
        evaluate_mot(root, root, None, {"progress": False})
    assert message in str(err.value) and str(bad) in str(err.value)


def test_missing_sequence_prediction(tmp_path):
    root = _tud_copy(tmp_path)
    (root / "TUD-Stadtmitte" / "test.txt").unlink()
    with pytest.raises(InputError, match="no prediction for sequence TUD-Stadtmitte"):
        evaluate_mot(root, root, None, {"progress": False})


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert cli_main(["eval", "format=mot", f"gt={tmp_path / 'nope'}", f"pred={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ground-truth folder not found" in err
