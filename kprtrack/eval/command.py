"""``python -m kprtrack eval format=posetrack|mot gt=<folder> pred=<folder> out=<folder>``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from kprtrack.errors import InputError


def summary_lines(result: dict) -> list[str]:
    box = result["box"]["combined"]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    lines = [f"{len(result['sequences'])} sequence(s), {result['format']} format, protocol {result.get('protocol')}",
             "box:       HOTA {} DetA {} AssA {} MOTA {} IDF1 {} IDSW {}".format(
                 pct(box.get("HOTA")), pct(box.get("DetA")), pct(box.get("AssA")), pct(box.get("MOTA")),
                 pct(box.get("IDF1")), int(box.get("IDSW", 0)))]
    if "keypoints" in result:
        kp = result["keypoints"]["combined"]
        lines.append("keypoints: HOTA {} DetA {} AssA {} LocA {}".format(
            pct(kp.get("HOTA")), pct(kp.get("DetA")), pct(kp.get("AssA")), pct(kp.get("LocA"))))
    if "comparison" in result:
        other = result["other_protocol"]["protocol"]
        kp = result["other_protocol"]["keypoints"]["combined"]
        lines.append(f"keypoints ({other} protocol): HOTA {pct(kp.get('HOTA'))} DetA {pct(kp.get('DetA'))} "
                     f"AssA {pct(kp.get('AssA'))}")
    return lines


def main(argv: Sequence[str]) -> int:
    from kprtrack.config import compose_command
    from kprtrack.eval.api import evaluate_mot, evaluate_posetrack

    cfg = compose_command("eval", argv)
    if cfg is None:
        return 0
    for key in ("gt", "pred"):
        if not cfg.get(key):
            raise InputError(f"missing {key}=<folder> (usage: python -m kprtrack eval format=posetrack|mot "
                             "gt=<folder> pred=<folder> out=<folder>)")
    run = {"posetrack": evaluate_posetrack, "mot": evaluate_mot}.get(cfg.format)
    if run is None:
        raise InputError(f"format must be 'posetrack' or 'mot', not {cfg.format!r}")
    out = Path(cfg.out).expanduser() if cfg.get("out") else None
    result = run(Path(cfg.gt), Path(cfg.pred), out, cfg)
    for line in summary_lines(result):
        print(line)
    if out is not None:
        print(f"reports written to {out}/ (metrics.json, report.md{', report.html' if cfg.report.html else ''})")
    return 0
