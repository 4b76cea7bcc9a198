"""`run` (and the other commands) as Hydra apps: Hydra's flags, run folders, sweeps, Optuna, launchers
(kprtrack/hydra_app.py, kprtrack/sweep.py, docs/sweeps.md). End to end through the real entry point."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kprtrack.cli import COMMANDS, COMMAND_OPTIONS
from kprtrack.detector.groundtruth import GroundTruthDetector

TESTS = Path(__file__).resolve().parent
SMALL = ["dataset.num_sequences=2", "dataset.num_frames=40", "run.progress=false", "output.render=false"]


class CountingDetector(GroundTruthDetector):
    """The oracle detector, logging every frame it detects (``<pid> <sequence> <frame>``) to
    ``$KPRTRACK_DETECT_LOG``: how often the detector ran, across the processes of a sweep."""

    def detect(self, frames):
        with open(os.environ["KPRTRACK_DETECT_LOG"], "a") as log:
            log.writelines(f"{os.getpid()} {f.sequence} {f.index}\n" for f in frames)
        return super().detect(frames)


def kprtrack(*args, cwd=None, env=None, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
    return subprocess.run([sys.executable, "-m", "kprtrack", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def one_error_line(stderr: str, command: str = "run") -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    [line] = [l for l in stderr.splitlines() if l.startswith(f"kprtrack {command}: error:")]
    return line


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval" / "metrics.json").read_text())


def track_files(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): p.read_bytes() for sub in ("posetrack21/sequences", "mot")
            for p in sorted((run_dir / sub).glob("*"))}


def sweep_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- flags
@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command_through_the_real_entry_point(command):
    result = kprtrack(command, "--help")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith(f"usage: python -m kprtrack {command}")
    if ":" not in COMMAND_OPTIONS[command]:  # a command that composes a config: Hydra's flags are listed
        assert "Hydra (docs/sweeps.md):" in result.stdout and " -m " in result.stdout and "--cfg job" in result.stdout
    hydra_help = kprtrack(command, "--hydra-help") if ":" not in COMMAND_OPTIONS[command] else None
    if hydra_help is not None:
        assert hydra_help.returncode == 0 and "Hydra" in hydra_help.stdout and "--multirun" in hydra_help.stdout


@pytest.mark.slow
def test_cfg_job_cfg_alone_cfg_hydra_and_info():
    job = kprtrack("run", "tracker.match_thresh=0.3", "--cfg", "job")
    alone = kprtrack("run", "--cfg", "tracker.match_thresh=0.3")  # before Hydra: `--cfg` printed the job's config
    assert job.returncode == alone.returncode == 0, job.stderr + alone.stderr
    assert job.stdout == alone.stdout and "match_thresh: 0.3" in job.stdout and "hydra:" not in job.stdout
    hydra = kprtrack("run", "--cfg", "hydra")
    assert hydra.returncode == 0 and "outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}_${oc.select:dataset.name,run}" in hydra.stdout
    info = kprtrack("run", "--info", "defaults")
    assert info.returncode == 0 and "tracker/kprtrack" in info.stdout and "hydra/job_logging/kprtrack" in info.stdout
    other = kprtrack("eval", "--cfg", "job", "format=mot")
    assert other.returncode == 0 and "format: mot" in other.stdout


@pytest.mark.slow
def test_bad_overrides_and_flags_are_one_line_and_exit_2(tmp_path):
    cases = {("tracker.match_thresh=abc",): "must be a number",
             ("nosuch.key=1",): "nosuch.key",
             ("hydra/launcher=nosuch",): "pip install 'kprtrack[",
             ("-m", "tracker.match_thresh=0.3,abc"): "must be a number",
             ("-m", "tracker=kprtrack,nosuch"): "nosuch",
             ("--cfg", "job", "-m"): "give one of",
             ("--frobnicate",): "unrecognized arguments"}
    for args, words in cases.items():
        result = kprtrack("run", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert words in one_error_line(result.stderr), (args, result.stderr)
    assert not list(tmp_path.iterdir())  # nothing was run, no folder made


def test_shell_completion_names_commands_and_keys():
    from kprtrack.cli import COMMANDS

    result = kprtrack("-sc", "query=bash", env={"COMP_LINE": "kprtrack re"})
    assert result.returncode == 0 and result.stdout.split() == sorted(c for c in COMMANDS if c.startswith("re"))
    assert "reid-eval" in result.stdout.split() and "run" not in result.stdout.split()
    result = kprtrack("-sc", "query=bash", env={"COMP_LINE": "kprtrack run tracker.match"})
    assert result.returncode == 0 and result.stdout.split() == ["tracker.match_thresh="], result.stderr
    result = kprtrack("run", "-sc", "install=bash")
    assert result.returncode == 0 and "complete -o nospace -o default -F hydra_bash_completion kprtrack" in result.stdout


# --------------------------------------------------------------------------- the run folder
@pytest.mark.slow
def test_hydra_run_dir_is_the_run_folder_and_a_failed_start_leaves_none(tmp_path):
    run_dir = tmp_path / "runs" / "mine"
    result = kprtrack("run", *SMALL, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"run folder: {run_dir}" in result.stdout
    assert (run_dir / "eval/metrics.json").is_file() and (run_dir / ".hydra/overrides.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no outputs/ beside it
    # the default folder: outputs/<date>/<time>_<dataset> under the current folder
    result = kprtrack("run", *SMALL, "run.evaluate=false", cwd=tmp_path)
    [folder] = tmp_path.glob("outputs/*/*")
    assert result.returncode == 0 and folder.name.endswith("_demo") and f"run folder: {folder}" in result.stdout
    # a run that fails before writing anything removes the folder Hydra made (its .hydra/ too)
    bad = tmp_path / "new" / "run"
    result = kprtrack("run", "dataset=video", "dataset.path=/does/not/exist.mp4", f"hydra.run.dir={bad}", cwd=tmp_path)
    assert result.returncode == 2 and "video not found" in one_error_line(result.stderr)
    assert "Error executing job" not in result.stderr  # Hydra's own report of a failed job: not for a run
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- sweeps
@pytest.mark.slow
def test_2x2_joblib_sweep_equals_four_single_runs_and_runs_the_detector_once_per_sequence(tmp_path):
    log = tmp_path / "detect.log"
    stub = [f"detector._target_={__name__}.CountingDetector", f"run.cache_dir={tmp_path / 'cache'}"]
    env = {"KPRTRACK_DETECT_LOG": str(log)}
    sweep_dir = tmp_path / "sweep"
    result = kprtrack("run", "-m", "tracker.match_thresh=0.3,0.5", "tracker.track_buffer=10,300", *SMALL, *stub,
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep_dir.iterdir() if not p.name.startswith(".")) == [
        "0", "1", "2", "3", "multirun.yaml", "sweep.csv", "sweep.md"]
    # the jobs ran in two processes, and the shared stage cache made the detector run once per sequence
    lines = log.read_text().split()
    pids, frames = set(lines[0::3]), list(zip(lines[1::3], lines[2::3]))
    assert len(frames) == len(set(frames)) == 2 * 40, (len(frames), len(pids))
    assert "sweep: 4 job(s), 4 ok, 0 failed" in result.stdout and "best: job" in result.stdout

    rows = sweep_rows(sweep_dir)
    assert [row["job"] for row in rows] == ["0", "1", "2", "3"] and {row["status"] for row in rows} == {"ok"}
    for row in rows:
        overrides = [o for o in row["overrides"].split() if o.startswith("tracker.")]
        single = tmp_path / f"single{row['job']}"
        one = kprtrack("run", *overrides, *SMALL, f"output.dir={single}", env=env)
        assert one.returncode == 0, one.stderr[-3000:]
        ours = metrics(single)
        kps, box = ours["keypoints"]["combined"], ours["box"]["combined"]
        assert float(row["pose_HOTA"]) == 100 * kps["HOTA"] and float(row["pose_AssA"]) == 100 * kps["AssA"]
        assert float(row["pose_DetA"]) == 100 * kps["DetA"] and float(row["box_HOTA"]) == 100 * box["HOTA"]
        assert float(row["IDF1"]) == 100 * box["IDF1"] and float(row["MOTA"]) == 100 * box["MOTA"]
        assert float(row["objective"]) == kps["HOTA"] and float(row["time_s"]) > 0
        assert track_files(single) == track_files(sweep_dir / row["job"])
    assert len(log.read_text().split()) == 3 * 2 * 40  # the single runs found the cache too
    md = (sweep_dir / "sweep.md").read_text()
    assert "| job | overrides | status | pose_HOTA" in md and "**Best**" in md


@pytest.mark.slow
def test_a_failed_job_is_a_row_one_line_and_exit_2(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = kprtrack("run", "-m", "tracker.ema_alpha=0.9,2", *SMALL, "dataset.num_sequences=1",
                      f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "kprtrack run: job 1: error: bad configuration for kprtrack.tracker.KPRTracker: ema_alpha" in result.stderr
    assert one_error_line(result.stderr).endswith(f"1 of 2 job(s) failed (job 1; see {sweep_dir / 'sweep.md'})")
    rows = sweep_rows(sweep_dir)
    assert [r["status"] for r in rows] == ["ok", "failed (exit 2)"] and "ema_alpha" in rows[1]["error"]
    assert rows[1]["pose_HOTA"] == "" and float(rows[0]["pose_HOTA"]) > 50
    assert "## Failed jobs" in (sweep_dir / "sweep.md").read_text()


@pytest.mark.slow
def test_optuna_tunes_the_tracker_in_four_trials_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "tune"
    result = kprtrack("run", "-m", "hydra/sweeper=tracker", "hydra.sweeper.n_trials=4", *SMALL,
                      f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = sweep_rows(sweep_dir)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert all("tracker.match_thresh=" in r["overrides"] and "tracker.track_buffer=" in r["overrides"] for r in rows)
    best = max(rows, key=lambda r: float(r["objective"]))
    optuna = (sweep_dir / "optimization_results.yaml").read_text()
    assert f"best_value: {best['objective']}" in optuna
    assert f"best: job {best['job']} " in result.stdout and "Best parameters" in result.stdout
    assert f"job {best['job']}" in (sweep_dir / "sweep.md").read_text().split("**Best**")[1].splitlines()[0]


@pytest.mark.slow
def test_a_trial_without_evaluation_fails_its_trial_not_the_study(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = kprtrack("run", "-m", "hydra/sweeper=tracker", "hydra.sweeper.n_trials=2", *SMALL,
                      "dataset.num_sequences=1", "run.objective=no.such.number", f"hydra.sweep.dir={tmp_path / 's'}")
    # every trial ran and has no objective: Optuna records failed trials, then has no best and stops;
    # the jobs that ran are summarised and the sweep ends with one line
    assert result.returncode == 2 and "no objective" in result.stdout
    assert "the sweep stopped after 2 job(s): No trials are completed yet." in one_error_line(result.stderr)
    assert [r["objective"] for r in sweep_rows(tmp_path / "s")] == ["", ""]


@pytest.mark.slow
def test_eval_sweeps_over_prediction_folders(tmp_path):
    run_dir = tmp_path / "run"
    assert kprtrack("run", *SMALL, f"output.dir={run_dir}").returncode == 0
    gt = metrics(run_dir)["gt"]
    pred = run_dir / "posetrack21" / "sequences"
    sweep_dir = tmp_path / "evals"
    result = kprtrack("eval", "-m", f"gt={gt}", f"pred={pred}", "protocol=kit,corrected", "progress=false",
                      "out=${hydra:runtime.output_dir}", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = sweep_rows(sweep_dir)
    assert [r["overrides"].split()[2] for r in rows] == ["protocol=kit", "protocol=corrected"]
    assert float(rows[0]["pose_HOTA"]) == 100 * metrics(run_dir)["keypoints"]["combined"]["HOTA"]


def test_ray_launcher_is_an_optional_extra():
    import importlib.util

    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        result = kprtrack("run", "hydra/launcher=ray", "--cfg", "hydra")
        assert result.returncode == 2 and "pip install 'kprtrack[" in one_error_line(result.stderr)
        pytest.skip("hydra-ray-launcher is not installed (pip install 'kprtrack[ray]')")
    result = kprtrack("run", "hydra/launcher=ray", "--cfg", "hydra")
    assert result.returncode == 0 and "RayLauncher" in result.stdout


# --------------------------------------------------------------------------- sharding on a launcher
@pytest.mark.slow
def test_submitit_local_shards_merge_to_the_unsharded_run(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "shards"
    result = kprtrack("run", "-m", "dataset.shard=0,1", "dataset.num_shards=2", "dataset.num_sequences=3", *SMALL[1:],
                      "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["status"] for r in sweep_rows(sweep_dir)] == ["ok", "ok"]
    merged = tmp_path / "merged"
    result = kprtrack("merge", str(sweep_dir / "0"), str(sweep_dir / "1"), f"output.dir={merged}")
    assert result.returncode == 0, result.stderr[-3000:]
    whole = tmp_path / "whole"
    result = kprtrack("run", "dataset.num_sequences=3", *SMALL[1:], f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics(merged)["keypoints"]["combined"] == metrics(whole)["keypoints"]["combined"]
    assert metrics(merged)["box"]["combined"] == metrics(whole)["box"]["combined"]
    assert track_files(merged) == track_files(whole)
