"""metrics.json, report.md and a self-contained report.html (plots embedded as base64 PNG)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from kprtrack.io import write_json, write_text

SUMMARY_FIELDS = ("HOTA", "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr",
                  "MOTA", "MOTP", "IDF1", "IDP", "IDR", "IDSW", "CLR_FP", "CLR_FN", "Frag", "MT", "ML")
KEYPOINT_FIELDS = ("HOTA", "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr", "FragA", "RHOTA", "FA-HOTA")
PROTOCOL_NOTES = {"kit": "the official PoseTrack21 kit's definition (published numbers)",
                  "corrected": "kprtrack's corrected definition (not comparable with published numbers)",
                  "trackeval": "official TrackEval (MOTChallenge)"}
COUNT_FIELDS = {"IDSW", "CLR_FP", "CLR_FN", "Frag", "MT", "ML", "PT", "CLR_TP"}
LABELS = {"CLR_FP": "FP", "CLR_FN": "FN"}


def json_safe(value):
    """numpy scalars to Python numbers, NaN/inf to null: metrics.json is strict JSON."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def fmt(field: str, value) -> str:
    if value is None:
        return "-"
    return f"{int(round(value))}" if field in COUNT_FIELDS else f"{100 * value:.2f}"


def _rows(result: dict) -> list[tuple[str, dict, dict | None]]:
    """(sequence, box scalars, keypoint scalars) per sequence."""
    box = result["box"]["per_sequence"]
    kp = result.get("keypoints", {}).get("per_sequence", {})
    return [(seq, box.get(seq, {}), kp.get(seq)) for seq in result["sequences"]]


def worst_sequences(result: dict, n: int) -> list[str]:
    key = (lambda r: r[2]["HOTA"]) if "keypoints" in result else (lambda r: r[1].get("HOTA", 0.0))
    return [r[0] for r in sorted(_rows(result), key=key)[:n]]


def _table(header: list[str], rows: list[list[str]]) -> tuple[str, str]:
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return "\n".join(md), f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _tables(result: dict, worst: int) -> list[tuple[str, str, str]]:
    """(title, markdown, html) for every table of the report."""
    out = []
    combined = result["box"]["combined"]
    fields = [f for f in SUMMARY_FIELDS if f in combined]
    if "keypoints" in result:
        fields += [f for f in KEYPOINT_FIELDS if f not in fields and f in result["keypoints"]["combined"]]
    rows = [["box (combined)"] + [fmt(f, combined.get(f)) for f in fields]]
    if "keypoints" in result:
        kc = result["keypoints"]["combined"]
        rows.append(["keypoints (combined)"] + [fmt(f, kc.get(f)) if f in KEYPOINT_FIELDS else "-" for f in fields])
    protocol = result.get("protocol", "?")
    out.append((f"Combined (protocol: {protocol})", *_table(["", *[LABELS.get(f, f) for f in fields]], rows)))

    seq_fields = ["HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW"]
    header = ["sequence", *[f"box {f}" for f in seq_fields]]
    if "keypoints" in result:
        header += ["kp HOTA", "kp DetA", "kp AssA"]

    def seq_row(seq, box, kp):
        row = [seq] + [fmt(f, box.get(f)) for f in seq_fields]
        return row + ([fmt(f, kp.get(f)) for f in ("HOTA", "DetA", "AssA")] if kp is not None else [])

    by_name = {r[0]: r for r in _rows(result)}
    out.append((f"Worst {worst} sequences", *_table(header, [seq_row(*by_name[s]) for s in
                                                             worst_sequences(result, worst)])))
    out.append(("Per sequence", *_table(header, [seq_row(*r) for r in _rows(result)])))
    if "keypoints" in result:
        joints = result["keypoints"]["per_joint"]
        out.append(("Keypoint HOTA per joint (combined)", *_table(
            ["joint", *KEYPOINT_FIELDS], [[j, *[fmt(f, v.get(f)) for f in KEYPOINT_FIELDS]] for j, v in joints.items()])))
    if "comparison" in result:
        out.append(_comparison_table(result["comparison"]))
    return out


def _comparison_table(comparison: dict) -> tuple[str, str, str]:
    a, b = comparison["protocols"]
    header = ["sequence"] + [f"{part} HOTA {name}" for part in ("kp", "box") for name in (a, b, f"{a}-{b}")]

    def row(name, parts):
        cells = [name]
        for part in ("keypoints", "box"):
            values = parts.get(part, {})
            cells += [fmt("HOTA", values.get(a)), fmt("HOTA", values.get(b))]
            diff = values.get("difference")
            cells.append("-" if diff is None else f"{100 * diff:+.4f}")
        return cells

    rows = [row("combined", comparison["combined"])]
    rows += [row(seq, parts) for seq, parts in comparison["per_sequence"].items()]
    return (f"Protocols compared: {a} vs {b}", *_table(header, rows))


def _figures(result: dict) -> list[tuple[str, bytes]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figures = []
    rows = _rows(result)
    names = [r[0] for r in rows]
    width = min(40.0, max(6.0, 0.35 * len(names) + 2))

    def png(fig) -> bytes:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        return buffer.getvalue()

    series = [("box HOTA", [r[1].get("HOTA", 0.0) for r in rows]), ("MOTA", [r[1].get("MOTA", 0.0) for r in rows]),
              ("IDF1", [r[1].get("IDF1", 0.0) for r in rows])]
    if "keypoints" in result:
        series.append(("keypoint HOTA", [r[2]["HOTA"] if r[2] else 0.0 for r in rows]))
    fig, ax = plt.subplots(figsize=(width, 4))
    x = np.arange(len(names))
    step = 0.8 / len(series)
    for k, (label, values) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * step, 100 * np.asarray(values), step, label=label)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("%")
    ax.set_ylim(min(0.0, 100 * min(min(v) for _, v in series) - 5), 125)  # MOTA can be negative
    ax.legend(loc="upper center", ncol=len(series), fontsize=8)
    ax.set_title("Per-sequence HOTA / MOTA / IDF1")
    figures.append(("Per-sequence scores", png(fig)))

    fig, ax = plt.subplots(figsize=(6, 4))
    alphas = result["alphas"]
    for section, style in (("box", "-"), ("keypoints", "--")):
        curves = result.get(section, {}).get("alpha", {}).get("combined", {})
        for field in ("HOTA", "DetA", "AssA"):
            if field in curves:
                ax.plot(alphas, 100 * np.asarray(curves[field]), style, label=f"{section} {field}")
    ax.set_xlabel("localisation threshold alpha")
    ax.set_ylabel("%")
    ax.set_ylim(-2, 102)  # keep curves at 0 and 100 visible
    ax.legend(fontsize=8)
    ax.set_title("HOTA, DetA, AssA vs alpha (combined)")
    figures.append(("HOTA vs alpha", png(fig)))

    fig, ax = plt.subplots(figsize=(width, 3.5))
    ax.bar(x, [r[1].get("IDSW", 0) for r in rows], color="tab:red")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("identity switches (box CLEAR)")
    ax.set_title("Identity switches per sequence")
    figures.append(("Identity switches", png(fig)))
    return figures


def _protocol_line(result: dict) -> str:
    protocol = result.get("protocol", "?")
    line = f"{protocol}, {PROTOCOL_NOTES.get(protocol, '')}".rstrip(", ")
    if "other_protocol" in result:
        line += f"; compared with {result['other_protocol']['protocol']} below"
    return line


def write_reports(result: dict, out_dir: Path, html_report: bool = True, worst: int = 5):
    """Write the three reports atomically; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out_dir / "metrics.json", json_safe(result), indent=1)]
    tables = _tables(result, worst)
    title = f"kprtrack evaluation ({result['format']})"
    md = [f"# {title}", "", f"- ground truth: `{result['gt']}`", f"- predictions: `{result['pred']}`",
          f"- sequences: {len(result['sequences'])}", f"- protocol: {_protocol_line(result)}",
          "- values in percent except counts", ""]
    for name, table_md, _ in tables:
        md += [f"## {name}", "", table_md, ""]
    paths.append(write_text(out_dir / "report.md", "\n".join(md)))
    if html_report:
        body = [f"<h1>{html.escape(title)}</h1>",
                f"<p>ground truth: <code>{html.escape(result['gt'])}</code><br>predictions: "
                f"<code>{html.escape(result['pred'])}</code><br>protocol: {html.escape(_protocol_line(result))}"
                "<br>values in percent except counts</p>"]
        for name, data in _figures(result):
            body.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                        f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
        for name, _, table_html in tables:
            body.append(f"<h2>{html.escape(name)}</h2>{table_html}")
        style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
                 "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}img{max-width:100%}")
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
        paths.append(write_text(out_dir / "report.html", page))
    return paths
