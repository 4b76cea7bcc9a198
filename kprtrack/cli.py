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
}


def usage() -> str:
    lines = ["usage: python -m kprtrack <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<13} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Hydra overrides follow the command, e.g. `run dataset=video dataset.path=clip.mp4`.",
              "`--cfg` after the command prints the composed configuration and exits."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command = "run" if not argv or "=" in argv[0] else argv.pop(0)
    if command not in COMMANDS:
        print(f"kprtrack: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[command][0].split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        return int(function(argv) or 0)
    except InputError as err:
        print(f"kprtrack {command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"kprtrack {command}: interrupted", file=sys.stderr)
        return 130
