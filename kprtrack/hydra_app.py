"""The commands as Hydra apps: Hydra's flags and run modes with kprtrack's contracts.

``python -m kprtrack run [flags] [overrides]`` runs ``pipeline.run_job`` through ``hydra.main``, so it
has what Hydra users know: ``--cfg job|hydra|all`` (``--cfg`` alone = ``--cfg job``), ``--resolve``,
``--info``, ``--hydra-help``, ``--shell-completion``, ``hydra.run.dir`` / ``hydra.sweep.dir``, and
``-m`` / ``--multirun`` with any launcher (``hydra/launcher=joblib|submitit_local|submitit_slurm|ray``)
and sweeper (``hydra/sweeper=tracker|optuna``) plugin that is installed. The other commands that
compose a config (eval, export, reid-dataset, reid-eval) go through here for those flags only
(``config.compose_command``); without one they compose directly, as before.

What stays kprtrack's: ``--help`` is the command's own usage (``cli.command_usage``); a bad flag or
override is one line and exit 2 (checked with ``config.compose`` before Hydra starts, which would
print several lines and exit 1); an InputError of a single run goes up to the command line (one
line, its exit code); SIGTERM is ``terminated`` and 143. A single run's folder is Hydra's
``hydra.run.dir`` (configs/run.yaml: ``outputs/<date>/<time>_<dataset>``, ``+2``, ``+3``... when
taken) or ``output.dir`` when given; a run that fails before writing anything leaves no folder
behind (Hydra's ``.hydra/`` included). Every job of a sweep is one run folder
(``<hydra.sweep.dir>/<job num>``); a job that fails is one line and a failed row in the sweep summary
(kprtrack/sweep.py), and the sweep exits 2 when any job failed.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

from kprtrack.errors import InputError, OutputError, Terminated
from kprtrack.sweep import JobResult, one_line

# Hydra's flags that take a value (``--info`` takes an optional one).
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--experimental-rerun"}
CFG_TYPES = ("job", "hydra", "all")
INFO_TYPES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags with their values, overrides), in their order; ``--cfg`` alone becomes ``--cfg job``."""
    flags, overrides = [], []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or "=" in arg.split("-", 1)[0]:
            overrides.append(arg)
        elif arg in ("--cfg", "-c") and (i + 1 == len(args) or args[i + 1] not in CFG_TYPES):
            flags += [arg, "job"]  # kprtrack's `--cfg` (before Hydra): the job's config
        elif arg in VALUE_FLAGS and i + 1 < len(args):
            flags += [arg, args[i + 1]]
            i += 1
        elif arg in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in INFO_TYPES:
            flags += [arg, args[i + 1]]
            i += 1
        else:
            flags.append(arg)
        i += 1
    return flags, overrides


def parse_args(flags: list[str], overrides: list[str]):
    """Hydra's own argument parser, with its errors as one InputError line."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str):
        raise InputError(f"{message} (see --help)")

    parser.error = error  # argparse would print its usage and exit
    args = parser.parse_args([*flags, *overrides])
    modes = [name for name, on in (("-m", args.multirun), ("--cfg", args.cfg), ("--info", args.info),
                                   ("--shell-completion", args.shell_completion)) if on]
    if len(modes) > 1:
        raise InputError(f"give one of -m, --cfg, --info, --shell-completion (got {', '.join(modes)})")
    if args.resolve and not args.cfg:
        raise InputError("--resolve goes with --cfg")
    return args


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


def command_settings(command: str, overrides: Sequence[str]) -> list[str]:
    """Hydra settings of a command without a ``hydra:`` section of its own (all but run, whose config is
    also a part of run's), as overrides; the user's own override of the same key wins."""
    if command == "run":  # configs/run.yaml has its hydra: section
        return []
    keys = {_key(o) for o in overrides}
    settings = {"hydra/job_logging": "kprtrack", "hydra/hydra_logging": "kprtrack", "hydra.job.chdir": "false",
                "hydra.job.name": command.replace("-", "_"),
                "hydra.sweep.dir": f"multirun/${{now:%Y-%m-%d}}/${{now:%H-%M-%S}}_{command}"}
    out = [f"{k}={v}" for k, v in settings.items() if k not in keys]
    if not any(k.startswith("hydra.callbacks") for k in keys):
        out.append("++hydra.callbacks.sweep_summary._target_=kprtrack.sweep.SweepSummary")
    return out


def quote(value: str) -> str:
    """``value`` as a Hydra override value (plain where Hydra reads it back unchanged, else quoted)."""
    from hydra.errors import HydraException

    from kprtrack.config import _parse_override

    for text in (value, "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"):
        try:
            if _parse_override(f"k={text}").value() == value:
                return text
        except HydraException:
            continue
    raise InputError(f"cannot hand the folder {value!r} to Hydra: choose another name")


class RunFolder:
    """A single run's folder, decided before Hydra creates it, so that a run that fails before writing
    anything can remove it again (with Hydra's ``.hydra/``): what did not exist, and what was there."""

    def __init__(self, path: Path | None, name: str = "the run folder"):
        self.path = path
        self.created: list[Path] = []
        self.before: set[str] = set()
        self.had_hydra = False
        if path is None:
            return
        path = path.absolute()
        self.path = path
        if path.exists() and not path.is_dir():
            raise OutputError(f"{name} is a file, not a folder", path)
        self.created = [p for p in (path, *path.parents) if not p.exists()][::-1]
        if path.is_dir():
            self.before = set(os.listdir(path))
            self.had_hydra = ".hydra" in self.before

    def remove_if_untouched(self) -> None:
        """The run failed: when it wrote nothing, remove what Hydra wrote and the folders it created."""
        if self.path is None or not self.path.is_dir():
            return
        try:
            now = set(os.listdir(self.path))
            if now - {".hydra"} != self.before - {".hydra"}:
                return  # the run wrote something: keep it all
            if not self.had_hydra and (self.path / ".hydra").is_dir():
                shutil.rmtree(self.path / ".hydra", ignore_errors=True)
            for folder in reversed(self.created):
                folder.rmdir()
        except OSError:
            pass


def _run_folder(command: str, config_name: str, overrides: list[str]) -> tuple[list[str], RunFolder]:
    """A single run: check the overrides (one line each), pick the run folder (``output.dir``, the
    user's ``hydra.run.dir``, or configs/run.yaml's pattern with ``+N`` when taken) and hand it to Hydra."""
    from omegaconf import OmegaConf

    from kprtrack.config import compose

    cfg = compose(config_name, overrides, require_values=True, with_hydra=True)
    given = any(_key(o) == "hydra.run.dir" for o in overrides)
    output_dir = OmegaConf.select(cfg, "output.dir", default=None) if command == "run" else None
    try:
        from hydra.core.utils import setup_globals

        setup_globals()  # the ${now:} resolver
        pattern = str(OmegaConf.select(cfg, "hydra.run.dir"))
    except Exception:  # noqa: BLE001 - an interpolation only a running Hydra resolves: Hydra's own folder
        pattern = None
    if given:  # the user's hydra.run.dir: Hydra makes it (known here unless only a running Hydra resolves it)
        return overrides, RunFolder(Path(pattern) if pattern else None)
    if output_dir:
        folder = Path(str(output_dir)).expanduser()
    elif pattern is None:
        return overrides, RunFolder(None)
    else:
        folder = Path(pattern)
        suffix = 1
        while folder.exists():  # two runs in the same second: never share a folder
            suffix += 1
            folder = folder.with_name(f"{Path(pattern).name}+{suffix}")
    run_folder = RunFolder(folder, "output.dir" if output_dir else "the run folder")
    return [*overrides, f"hydra.run.dir={quote(str(folder.absolute()))}"], run_folder


class Task:
    """The task function Hydra calls, once (a run) or per job (a sweep, possibly in another process:
    it pickles by reference). ``job(cfg, job_dir)`` returns a JobResult or raises an InputError."""

    def __init__(self, command: str, job: Callable):
        self.command = command
        self.job = job
        self.result: JobResult | None = None
        self.error: Exception | None = None  # a single run's, raised again once Hydra is done
        self.started = False

    def __call__(self, cfg):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra = HydraConfig.get()
        job_dir = str(hydra.runtime.output_dir)
        self.started = True
        if hydra.mode != RunMode.MULTIRUN:
            try:
                self.result = self.job(cfg, job_dir)
            except Exception as error:  # noqa: BLE001 - not through Hydra, which adds a line ("Error executing job")
                self.error = error
            return self.result
        started = time.perf_counter()
        num = hydra.job.num
        try:
            result = self.job(cfg, job_dir)
        except InputError as error:
            print(f"kprtrack {self.command}: job {num}: error: {error}", file=sys.stderr, flush=True)
            result = JobResult(exit_code=error.exit_code, error=one_line(str(error)), run_dir=job_dir)
        except Exception as error:  # noqa: BLE001 - one job's bug does not end the sweep; its traceback is shown
            traceback.print_exc()
            result = JobResult(exit_code=1, error=one_line(f"internal error {type(error).__name__}: {error}"),
                               run_dir=job_dir)
        if not isinstance(result, JobResult):
            result = JobResult(exit_code=int(result or 0), run_dir=job_dir)
        result.wall_s = time.perf_counter() - started
        return result


class CommandJob:
    """A job of a command that composes its own config (eval, export, ...): the command itself, run
    with the job's overrides (picklable, for launchers that run jobs in other processes)."""

    def __init__(self, command: str):
        self.command = command

    def __call__(self, cfg, job_dir: str | None) -> JobResult:
        from hydra.core.hydra_config import HydraConfig

        from kprtrack.cli import COMMANDS, _load

        overrides = [str(o) for o in HydraConfig.get().overrides.task]
        code = _load(COMMANDS[self.command][0])(overrides)
        return JobResult(exit_code=int(code or 0), run_dir=job_dir)


@contextmanager
def _hydra_errors_raised(argv: list[str]):
    """Hydra reads sys.argv; with HYDRA_FULL_ERROR its errors come up as exceptions (not printed, exit 1)."""
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = argv
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env


def _on_sigterm(signum, frame):
    raise Terminated()


@contextmanager
def _sigterm_raises():
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def hydra_main(command: str, argv: Sequence[str], job: Callable) -> int:
    """Run ``command`` (with its Hydra flags and overrides) as a Hydra app; returns the exit code of a
    single run (its InputError goes up), 0 otherwise (a sweep with a failed job raises an InputError)."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from kprtrack import sweep
    from kprtrack.cli import COMMAND_OPTIONS, command_usage
    from kprtrack.config import _readable_override, config_dir, hydra_error, validate_sweep

    config_name = COMMAND_OPTIONS[command]
    flags, overrides = split_args(argv)
    args = parse_args(flags, overrides)
    if args.help:
        print(command_usage(command))
        return 0
    overrides = [*command_settings(command, overrides), *(_readable_override(o) for o in overrides)]
    single = not (args.multirun or args.cfg or args.info or args.shell_completion or args.hydra_help
                  or args.experimental_rerun)
    folder = RunFolder(None)
    if single:
        overrides, folder = _run_folder(command, config_name, overrides)
    elif args.multirun or args.cfg or args.info:
        validate_sweep(config_name, overrides, require_values=bool(args.multirun))
    task = Task(command, job)
    sweep.LAST = sweep.STARTED = None
    try:
        with _hydra_errors_raised(["kprtrack", *flags, *overrides]), _sigterm_raises():
            hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(task)()
    except Terminated:
        print(f"kprtrack {command}: terminated", file=sys.stderr)
        if single:
            folder.remove_if_untouched()
        return 128 + signal.SIGTERM
    except BaseException as error:
        if single:
            folder.remove_if_untouched()
        if isinstance(error, (HydraException, OmegaConfBaseException)) and not task.started:
            raise InputError(f"bad configuration for '{config_name}': {hydra_error(error)}") from None
        if isinstance(error, OSError) and single and not task.started:  # Hydra could not create the run folder
            raise OutputError.from_os_error(error, folder.path, "cannot create the run folder") from None
        if args.multirun and sweep.STARTED and sweep.LAST is None and isinstance(error, Exception):
            # the sweeper stopped (Optuna with no trial that has a value): the jobs that ran, then one line
            summary = sweep.finish(*sweep.STARTED)
            raise InputError(f"the sweep stopped after {len(summary['jobs'])} job(s): {one_line(str(error))} "
                             f"(see {Path(summary['sweep_dir']) / 'sweep.md'})") from None
        raise
    if single:
        if task.error is not None:
            folder.remove_if_untouched()
            raise task.error
        return task.result.exit_code if isinstance(task.result, JobResult) else int(task.result or 0)
    summary = sweep.LAST
    if args.multirun and summary and summary["failed"]:
        failed = summary["failed"]
        raise InputError(f"{len(failed)} of {len(summary['jobs'])} job(s) failed (job "
                         + ", ".join(str(r["job"]) for r in failed) + "; see "
                         + str(Path(summary["sweep_dir"]) / "sweep.md") + ")")
    return 0
