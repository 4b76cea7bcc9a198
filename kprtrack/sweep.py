"""Sweeps (``python -m kprtrack run -m ...``): what one job returns, and the sweep summary.

Every job of a sweep returns a ``JobResult``: its exit code, one-line error, run folder, the
evaluation's headline numbers and the objective (``run.objective``). ``float(result)`` is the
objective, or a ValueError when the job failed or did not evaluate: Optuna's sweeper then marks the
trial failed (the plugin refuses a NaN it is told).

``SweepSummary`` is a Hydra callback (``hydra.callbacks`` in configs/run.yaml). Each job, in the
process that runs it (a joblib worker, a SLURM node), writes its record to ``<sweep dir>/.jobs/<num>.json``;
when the sweep ends, the main process writes ``sweep.csv`` and ``sweep.md`` into the sweep dir: one
row per job (overrides -> pose HOTA, DetA, AssA, box HOTA, IDF1, MOTA, IDSW, objective, time,
status), the best job by the objective, and the failed jobs with their one-line errors.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

# (column, section of eval/metrics.json, key): the numbers the run prints after evaluating (pipeline.headline)
METRICS = (("pose_HOTA", "keypoints", "HOTA"), ("pose_DetA", "keypoints", "DetA"), ("pose_AssA", "keypoints", "AssA"),
           ("box_HOTA", "box", "HOTA"), ("IDF1", "box", "IDF1"), ("MOTA", "box", "MOTA"), ("IDSW", "box", "IDSW"))
COUNTS = ("IDSW",)  # not a fraction: shown as is, not in percent
COLUMNS = ("job", "overrides", "status", *(name for name, _, _ in METRICS), "objective", "time_s", "run_dir", "error")
JOBS_DIR = ".jobs"

# The last sweep that ended in this process (set by SweepSummary.on_multirun_end): hydra_app reads it
# for the sweep's exit code. STARTED: (sweep dir, direction) of the sweep running in this process, for
# a summary of the jobs that ran when the sweeper stops early (Optuna, when no trial has a value).
LAST: dict | None = None
STARTED: tuple[Path, str] | None = None


@dataclass
class JobResult:
    exit_code: int = 0
    run_dir: str | None = None
    metrics: dict | None = None      # {column: fraction (count for IDSW)} of METRICS, None without evaluation
    objective: float | None = None   # run.objective's value; None when the job failed or did not evaluate
    objective_key: str | None = None
    error: str | None = None         # one line
    wall_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __float__(self) -> float:
        if self.ok and self.objective is not None and not math.isnan(self.objective):
            return float(self.objective)
        raise ValueError(str(self))

    def __str__(self) -> str:
        if not self.ok:
            return f"failed (exit {self.exit_code}): {self.error or 'see its output'}"
        if self.objective is None:
            return f"no objective: {self.objective_key or 'run.objective'} is not in the evaluation (none ran?)"
        return f"{self.objective_key} = {self.objective}"


def headline_numbers(metrics: dict | None) -> dict | None:
    """METRICS out of an evaluation's result (eval/metrics.json), None without one."""
    if not metrics:
        return None
    numbers = {}
    for name, section, key in METRICS:
        value = ((metrics.get(section) or {}).get("combined") or {}).get(key)
        numbers[name] = None if value is None else float(value)
    return numbers


def select_number(metrics: dict | None, key: str) -> float | None:
    """A number in eval/metrics.json by its dotted path (``keypoints.combined.HOTA``), None if absent."""
    node: Any = metrics
    for part in str(key).split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    try:
        return float(node)
    except (TypeError, ValueError):
        return None


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _metrics_on_disk(run_dir: str | None) -> dict | None:
    """A job that does not report its numbers (``eval -m ... out=${hydra:runtime.output_dir}``): its metrics.json."""
    if not run_dir:
        return None
    for path in (Path(run_dir) / "eval" / "metrics.json", Path(run_dir) / "metrics.json"):
        try:
            return headline_numbers(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return None


def _direction(config) -> str:
    """maximize (the default: HOTA) or minimize, from an Optuna sweeper's ``direction``."""
    from omegaconf import OmegaConf

    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction):
        direction = direction[0] if len(direction) else None
    text = str(getattr(direction, "name", direction) or "maximize").lower()
    return "minimize" if "min" in text else "maximize"


class SweepSummary(Callback):
    """Hydra callback writing ``sweep.csv`` / ``sweep.md`` in the sweep dir when a multirun ends."""

    def on_multirun_start(self, config, **kwargs) -> None:
        global STARTED
        STARTED = (Path(str(config.hydra.sweep.dir)), _direction(config))
        folder = STARTED[0] / JOBS_DIR
        for old in folder.glob("*.json") if folder.is_dir() else []:  # an earlier sweep into the same folder
            old.unlink(missing_ok=True)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        result = job_return._return_value  # the property raises for a job that raised
        if not isinstance(result, JobResult):
            error = one_line(f"{type(result).__name__}: {result}") if isinstance(result, BaseException) else None
            result = JobResult(exit_code=1 if error else 0, error=error)
        record = {"job": int(config.hydra.job.num), "overrides": list(job_return.overrides or []),
                  **asdict(result), "run_dir": result.run_dir or str(config.hydra.runtime.output_dir)}
        folder = Path(str(config.hydra.sweep.dir)) / JOBS_DIR
        try:
            from kprtrack.io import write_json

            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / f"{record['job']}.json", record)
        except OSError as err:
            print(f"kprtrack: warning: cannot record job {record['job']} for the sweep summary: {err}", file=sys.stderr)

    def on_multirun_end(self, config, **kwargs) -> None:
        finish(Path(str(config.hydra.sweep.dir)), _direction(config))


def finish(sweep_dir: Path, direction: str = "maximize") -> dict:
    """Gather the jobs' records, write sweep.csv and sweep.md, print the summary (and keep it in LAST)."""
    global LAST
    records = []
    for path in (sweep_dir / JOBS_DIR).glob("*.json") if (sweep_dir / JOBS_DIR).is_dir() else []:
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    records.sort(key=lambda r: r["job"])
    for record in records:
        if record.get("metrics") is None:
            record["metrics"] = _metrics_on_disk(record.get("run_dir"))
    LAST = summary = summarise(records, sweep_dir, direction)
    try:
        write_summary(summary, sweep_dir)
    except OSError as err:
        print(f"kprtrack: warning: cannot write the sweep summary in {sweep_dir}: {err}", file=sys.stderr)
    print(summary_text(summary), flush=True)
    return summary


def summarise(records: list[dict], sweep_dir: Path, direction: str = "maximize") -> dict:
    scored = [r for r in records if r.get("exit_code") == 0 and r.get("objective") is not None
              and not math.isnan(r["objective"])]
    pick = max if direction == "maximize" else min
    best = pick(scored, key=lambda r: r["objective"]) if scored else None
    failed = [r for r in records if r.get("exit_code") != 0]
    lists = [r.get("overrides") or [] for r in records]
    common = [o for o in lists[0] if all(o in other for other in lists[1:])] if len(lists) > 1 else []
    return {"sweep_dir": str(sweep_dir), "jobs": records, "best": best, "failed": failed, "direction": direction,
            "common": common}


def _swept(record: dict, summary: dict) -> str:
    """A job's overrides less those every job of the sweep has."""
    return " ".join(o for o in record.get("overrides") or [] if o not in summary.get("common", []))


def _row(record: dict, sweep_dir: Path) -> dict:
    metrics = record.get("metrics") or {}
    run_dir = record.get("run_dir") or ""
    try:
        run_dir = str(Path(run_dir).resolve().relative_to(sweep_dir.resolve()))
    except ValueError:
        pass
    row = {"job": record["job"], "overrides": " ".join(record.get("overrides") or []),
           "status": "ok" if record.get("exit_code") == 0 else f"failed (exit {record.get('exit_code')})",
           "objective": record.get("objective"), "time_s": record.get("wall_s"), "run_dir": run_dir,
           "error": record.get("error") or ""}
    for name, _, _ in METRICS:
        value = metrics.get(name)
        row[name] = None if value is None else int(value) if name in COUNTS else 100 * value
    return row


def write_summary(summary: dict, sweep_dir: Path) -> None:
    """``sweep.csv`` (every number at full precision, percent for the HOTA family) and ``sweep.md``."""
    from kprtrack.io import write_text

    rows = [_row(r, sweep_dir) for r in summary["jobs"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text(sweep_dir / "sweep.csv", buffer.getvalue())
    write_text(sweep_dir / "sweep.md", summary_markdown(summary, rows))


def _fmt(value, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_markdown(summary: dict, rows: list[dict]) -> str:
    jobs, failed, best = summary["jobs"], summary["failed"], summary["best"]
    lines = [f"# Sweep: {len(jobs)} job(s), {len(jobs) - len(failed)} ok, {len(failed)} failed", "",
             f"Folder: `{summary['sweep_dir']}`. Metrics in percent (IDSW a count); time in seconds.", ""]
    if summary.get("common"):
        lines += [f"Every job: `{' '.join(summary['common'])}`", ""]
    if best is not None:
        lines += [f"**Best** ({summary['direction']} {best.get('objective_key')}): job {best['job']} "
                  f"`{_swept(best, summary) or '(no overrides)'}` = {best['objective']:.6g}", ""]
    header = ["job", "overrides", "status", *(name for name, _, _ in METRICS), "objective", "time_s", "run_dir"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record, row in zip(jobs, rows):
        swept = _swept(record, summary)
        cells = [str(row["job"]), f"`{swept}`" if swept else "", row["status"],
                 *(_fmt(row[name], 0 if name in COUNTS else 2) for name, _, _ in METRICS),
                 _fmt(row["objective"], 4), _fmt(row["time_s"], 1), row["run_dir"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- job {r['job']} `{_swept(r, summary)}`: {r.get('error') or 'see its output'}" for r in failed]
    return "\n".join(lines) + "\n"


def summary_text(summary: dict) -> str:
    """The lines printed when a sweep ends."""
    jobs, failed, best = summary["jobs"], summary["failed"], summary["best"]
    lines = [f"sweep: {len(jobs)} job(s), {len(jobs) - len(failed)} ok, {len(failed)} failed"]
    for record in jobs:
        metrics = record.get("metrics") or {}
        numbers = "  ".join(f"{name} {_fmt(None if metrics.get(name) is None else 100 * metrics[name])}"
                            for name in ("pose_HOTA", "pose_AssA", "IDF1", "MOTA") if name in metrics)
        status = "ok" if record.get("exit_code") == 0 else f"failed: {record.get('error') or ''}"
        if status == "ok" and record.get("objective") is None and record.get("objective_key"):
            status += f" (no {record['objective_key']} in its evaluation: no objective)"
        lines.append(f"  job {record['job']} {_swept(record, summary)}: " + (numbers + "  " if numbers else "") + status)
    if best is not None:
        lines.append(f"best: job {best['job']} {_swept(best, summary)} "
                     f"({best.get('objective_key')} = {best['objective']:.6g})")
    lines.append(f"sweep summary: {Path(summary['sweep_dir']) / 'sweep.md'} (and sweep.csv)")
    return "\n".join(lines)
