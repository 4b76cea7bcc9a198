"""``python -m kprtrack <command> [key=value ...]``: one entry point, Hydra overrides after it."""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from kprtrack.errors import InputError

# command -> (module:function taking the remaining argv and returning an exit code, summary)
COMMANDS = {
    "run": ("kprtrack.pipeline:main", "detect, estimate poses, embed, track, write (and evaluate)"),
    "eval": ("kprtrack.eval.command:main", "evaluate existing predictions (PoseTrack21 JSON / MOT txt)"),
    "demo": ("kprtrack.data.demo:main", "generate the synthetic demo data set (cached) and print its folder"),
    "export": ("kprtrack.export:main", "export a model to ONNX"),
    "reid-dataset": ("kprtrack.reid.dataset:main", "build the Occluded PoseTrack-ReID data set"),
    "reid-eval": ("kprtrack.reid.evaluate:main", "rank-1/mAP with and without prompts"),
    "train-reid": ("kprtrack.reid.train.engine:main", "train KPR (torchrun for multi-GPU; docs/train_reid.md)"),
    "reid-labels": ("kprtrack.reid.labels:main", "human-parsing part labels for each reid-dataset crop"),
    "train-detector": ("kprtrack.train.engine:main_detector", "fine-tune YOLOX on PoseTrack21 person boxes (docs/train_detector_pose.md)"),
    "train-pose": ("kprtrack.train.engine:main_pose", "fine-tune HRNet on PoseTrack21 keypoints (docs/train_detector_pose.md)"),
    "merge": ("kprtrack.merge:main", "join the shards of a sharded run (<run folder> ... output.dir=<folder>) and evaluate"),
}
# Where `<command> --help` finds the options: a config name (configs/<name>.yaml), or a
# module:function returning the command's {key: default}.
COMMAND_OPTIONS = {
    "run": "run", "eval": "eval", "demo": "kprtrack.data.demo:_defaults", "export": "export",
    "reid-dataset": "reid_dataset", "reid-eval": "reid_eval", "train-reid": "train_reid",
    "reid-labels": "reid_labels", "train-detector": "train_detector", "train-pose": "train_pose",
    "merge": "kprtrack.merge:_defaults",
}
HELP_FLAGS = ("-h", "--help")


def usage() -> str:
    lines = ["usage: python -m kprtrack <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<13} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Hydra overrides follow the command, e.g. `run dataset=video dataset.path=clip.mp4`.",
              "`--cfg` after the command prints the composed configuration and exits; `-m` sweeps",
              "(`run -m tracker.match_thresh=0.3,0.5`, docs/sweeps.md);",
              "`python -m kprtrack <command> --help` lists its config groups, options and Hydra's flags."]
    return "\n".join(lines)


def hydra_usage(command: str) -> list[str]:
    """The Hydra flags of a command that composes a config (kprtrack/hydra_app.py; docs/sweeps.md)."""
    me = f"python -m kprtrack {command}"
    lines = ["", "Hydra (docs/sweeps.md):",
             f"  {me} [overrides] --cfg job|hydra|all [--resolve]   the composed configuration (--cfg = --cfg job)",
             f"  {me} [overrides] --info [config|defaults|plugins|searchpath]   how it was composed",
             f"  {me} -m key=a,b key2='range(1,4)' [hydra/launcher=joblib hydra.launcher.n_jobs=2]",
             "      a sweep: one job per combination; launchers: basic (default), joblib, submitit_local,",
             "      submitit_slurm, ray (optional plugins: pip install 'kprtrack[sweep]' or '[ray]')"]
    if command == "run":
        lines += ["      each job is one run folder, <hydra.sweep.dir>/<job>; sweep.md / sweep.csv in the sweep",
                  "      folder: overrides -> pose HOTA, DetA, AssA, box HOTA, IDF1, MOTA, time (exit 2 if a job failed)",
                  f"  {me} -m hydra/sweeper=tracker [hydra.sweeper.n_trials=20]   tune the tracker with Optuna",
                  "      (configs/hydra/sweeper/tracker.yaml), maximising run.objective (pose HOTA)",
                  "  hydra.run.dir=<folder>   the run folder (default outputs/<date>/<time>_<dataset>; output.dir wins)",
                  "  hydra.sweep.dir=<folder> hydra.sweep.subdir=<name>   a sweep's folder and its jobs' folders"]
    else:
        lines += ["      each job is the command with that job's overrides; hydra.sweep.dir=<folder>"]
    lines += [f"  {me} --hydra-help   Hydra's own help;  kprtrack {command} -sc install=bash   shell completion"]
    return lines


def _load(spec: str):
    module_name, function_name = spec.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _config_body(text: str, skip_first: bool = False) -> list[str]:
    """A config file's lines without its defaults list and package line, comments kept."""
    body, in_defaults = [], False
    for line in text.splitlines()[1 if skip_first else 0:]:
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        if in_defaults and (line.startswith((" ", "-")) or not line.strip()):
            continue
        in_defaults = False
        if not line.startswith("# @package"):
            body.append(line)
    while body and not body[0].strip():
        body.pop(0)
    return body


def _indented(lines: list[str]) -> list[str]:
    return [f"  {line}" if line.strip() else "" for line in lines]


def command_usage(command: str) -> str:
    """``<command> --help``: usage, config groups with their options, and the top-level options
    with their defaults and comments (the command's own configs/<name>.yaml)."""
    from kprtrack.config import config_dir, config_groups, config_text, packaged_configs

    summary, options = COMMANDS[command][1], COMMAND_OPTIONS[command]
    if ":" in options:  # no config file: the command's own key=value parser
        defaults = {"root": None, **_load(options)(), "force": False}
        return "\n".join([f"usage: python -m kprtrack {command} [key=value ...]", "", summary, "",
                           "options (key=default):", *(f"  {k}={v}" for k, v in defaults.items())])
    text = config_text(options)
    first = text.splitlines()[0] if text else ""
    has_usage = first.startswith("# python -m kprtrack")  # the config's first line shows how to call it
    usage_line = first.lstrip("# ") if has_usage else f"python -m kprtrack {command} [key=value ...]"
    lines = [f"usage: {usage_line}", "", summary]
    groups = config_groups(options)
    if groups:
        lines += ["", f"config groups (group=option; * = default; files in {config_dir()}/<group>/):"]
        for group, default, choices in groups:
            lines.append(f"  {group:<10} " + ", ".join(f"{o}*" if o == default else o for o in choices))
            for option, overrides in choices.items():
                if overrides:
                    picks = " ".join(f"{g}={o}" for g, o in overrides.items())
                    lines.append(f"  {'':<10}   {group}={option} also picks {picks} (the command line wins)")
    lines += ["", f"options ({config_dir() / options}.yaml; set with key=value):"]
    lines += _indented(_config_body(text, skip_first=has_usage))
    for group, default, _ in groups:
        path = config_dir() / group / f"{default}.yaml"
        if not path.is_file():  # a group without a default (group: null)
            continue
        group_text = path.read_text(encoding="utf-8")
        keys = "" if group_text.startswith("# @package _global_") else f"; keys are {group}.<key>"
        lines += ["", f"{group}={default} ({path}{keys}):", *_indented(_config_body(group_text))]
    for name, key in packaged_configs(options):
        other = [c for c, config in COMMAND_OPTIONS.items() if config == name]
        lines += ["", f"{key}.<key>: the settings of {config_dir() / name}.yaml"
                  + (f" (see `python -m kprtrack {other[0]} --help`)" if other else "")]
    lines += hydra_usage(command)
    lines += ["", f"`python -m kprtrack {command} [overrides] --cfg` prints the whole composed configuration"
                  + (" (every group's keys)." if groups else ".")]
    return "\n".join(lines)


def shell_completion(argv: list[str]) -> int:
    """``kprtrack -sc query=bash`` (Hydra's bash completion calls the program without the command):
    command names at the first word, else the command's own Hydra completion."""
    import os

    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    first_word = len(words) == 1 and line.endswith(" ") or len(words) == 2 and not line.endswith(" ")
    if any(a.startswith("query=") for a in argv) and first_word:
        typed = words[1] if len(words) == 2 else ""
        print(" ".join(c for c in COMMANDS if c.startswith(typed)))
        return 0
    command = "run"
    if len(words) > 1 and words[1] in COMMANDS:
        command = words[1]
        os.environ["COMP_LINE"] = line.replace(f" {command}", "", 1)  # what Hydra completes: the overrides
    if ":" in COMMAND_OPTIONS[command]:
        return 0  # a command without a config: nothing to complete
    from kprtrack.hydra_app import CommandJob, hydra_main

    return hydra_main(command, argv, CommandJob(command))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `kprtrack run --help | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    from kprtrack.runtime import configure_process

    configure_process()  # the entry point owns the process: opt in to kprtrack/runtime.py's settings, before numpy
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "help" and len(argv) > 1 and argv[1] in COMMANDS:
        argv = [argv[1], "--help"]  # `help <command>` = `<command> --help`
    if argv and argv[0] in (*HELP_FLAGS, "help"):
        print(usage())
        return 0
    if argv and argv[0] in ("-sc", "--shell-completion"):
        return shell_completion(argv)
    command = "run" if not argv or "=" in argv[0] or argv[0].startswith("-") else argv.pop(0)
    if command not in COMMANDS:
        print(f"kprtrack: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        if any(arg in HELP_FLAGS for arg in argv):
            print(command_usage(command))
            return 0
        return int(_load(COMMANDS[command][0])(argv) or 0)
    except InputError as err:
        print(f"kprtrack {command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"kprtrack {command}: interrupted", file=sys.stderr)
        return 130
