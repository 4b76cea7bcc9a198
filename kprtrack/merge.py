"""``python -m kprtrack merge <shard run> ... output.dir=<folder>``: the shards of a sharded run as one run folder.

The shards are run folders of ``run`` with ``dataset.shard=I dataset.num_shards=N`` (kprtrack/shards.py).
Each records in its ``state.json`` what it is (``shard``: index, count, the hash of the config without
the shard keys, every sequence name of the data set, the ground-truth folder), so the merge checks
them without the data set: one configuration (only ``dataset.shard`` differs), one ``num_shards``,
every shard 0..N-1 exactly once, each finished (no failed or missing sequence, its files on disk, not
running), and the union of their finished sequences is the data set's list with no sequence twice.
Anything else is one error naming the problem and the folders (exit 2), and nothing is written.

The merged folder is what the unsharded run would have written: every shard's track files and rendered
videos (hard-linked where the file system allows, else copied; a later run in a shard folder replaces
its files by rename, so the links never change under the merge), ``config.yaml`` (the shards' config
with ``dataset.shard``/``num_shards`` null), ``state.json`` (the unsharded run's config hash: ``run
run.resume=true output.dir=<merged>`` with the same settings finds every sequence finished), the
output filters' counts, and, when the data set has ground truth and ``run.evaluate`` is on, the
evaluation of the union, computed by ``run``'s own code (``pipeline.evaluate``): the same numbers as an
unsharded run. ``merge.json`` says what was merged from where.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

from kprtrack.errors import InputError, OutputError
from kprtrack.shards import Shard

STATE, CONFIG, MERGE = "state.json", "config.yaml", "merge.json"
# Config keys that differ between the shards of one run (what the shard is, where it writes, how it
# is shown or resumed): left out when the merge names the keys on which two runs differ.
PER_SHARD_KEYS = ("dataset.shard", "dataset.num_shards", "output.dir", "run.resume", "run.progress")
USAGE = "python -m kprtrack merge <shard run folder> ... [root=<folder of shard runs>] output.dir=<folder>"
SHOWN = 4  # names listed in a message before "..."


def _defaults() -> dict:
    """``merge``'s options (``python -m kprtrack merge --help``); the run folders come as plain arguments."""
    return {"root": None,  # a folder whose sub-folders holding a state.json are the shard runs
            "output.dir": None,  # the merged run folder (required): new, empty, or an earlier merge with force=true
            "run.evaluate": None,  # null: evaluate when the shards' config says so (and the data set has GT)
            "run.progress": True,
            "link": True,  # hard-link the shards' files where possible (false: copy them)
            "force": False}  # replace an earlier merge in output.dir


@dataclass
class ShardRun:
    folder: Path  # as given
    state: dict
    shard: Shard
    config_hash: str  # of the config without the shard keys
    sequences: list[str] | None  # the whole data set's, once the shard's run went through it
    ground_truth: str | None


def _names(names, limit: int = SHOWN) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _flag(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InputError(f"merge option {key} must be true or false, not {value!r}")


def parse_args(argv: Sequence[str]) -> tuple[list[Path], dict]:
    """(run folders, options): ``key=value`` for the options, anything else is a run folder."""
    options = _defaults()
    folders = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.removeprefix("+")
        if not sep or (key not in options and Path(arg).expanduser().exists()):
            folders.append(Path(arg).expanduser())
            continue
        if key not in options:
            raise InputError(f"unknown merge option {key!r} (options: {', '.join(options)}; usage: {USAGE})")
        options[key] = value
    for key in ("run.progress", "link", "force"):
        if isinstance(options[key], str):
            options[key] = _flag(key, options[key])
    if options["run.evaluate"] is not None and str(options["run.evaluate"]).lower() not in ("null", "none", ""):
        options["run.evaluate"] = _flag("run.evaluate", str(options["run.evaluate"]))
    else:
        options["run.evaluate"] = None
    if not options["output.dir"]:
        raise InputError(f"missing output.dir=<folder for the merged run> (usage: {USAGE})")
    out = Path(options["output.dir"]).expanduser()
    if options["root"]:
        root = Path(options["root"]).expanduser()
        if not root.is_dir():
            raise InputError("root= folder not found", root)
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            same = sub.resolve() == out.resolve() or (sub / MERGE).is_file()  # the merge itself, or an earlier one
            if (sub / STATE).is_file() and not same:
                folders.append(sub)
        if not folders:
            raise InputError("no run folders (sub-folders holding a state.json) in root=", root)
    if not folders:
        raise InputError(f"no run folders given (usage: {USAGE})")
    return folders, options


def load_shard(folder: Path) -> ShardRun:
    from kprtrack.io import read_input_text

    if not folder.is_dir():
        raise InputError("run folder not found", folder)
    path = folder / STATE
    if not path.is_file():
        raise InputError("not a run folder (no state.json): give the run folders of the shards", folder)
    try:
        state = json.loads(read_input_text(path, "state file"))
    except json.JSONDecodeError:
        raise InputError("state file is damaged (not JSON)", path) from None
    info = state.get("shard") if isinstance(state, dict) else None
    if not isinstance(info, dict):
        if (folder / MERGE).is_file():
            raise InputError("this is a merged folder, not a shard: give the shards' run folders", folder)
        raise InputError("not a shard: this run was not started with dataset.shard=<I> dataset.num_shards=<N>",
                         folder)
    index, count = info.get("index"), info.get("count")
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count)) and 0 <= index < count
    sequences = info.get("sequences")
    if not ok or not isinstance(info.get("unsharded_config_hash"), str) or not isinstance(state.get("finished"), dict) \
            or not (sequences is None or isinstance(sequences, list) and all(isinstance(s, str) for s in sequences)):
        raise InputError("state file is damaged (its 'shard' or 'finished' entry is not what run writes)", path)
    return ShardRun(folder, state, Shard(index, count), info["unsharded_config_hash"], sequences,
                    info.get("ground_truth"))


def _running(folder: Path) -> str | None:
    """The pid of a run holding the folder's lock (see pipeline.RunLock), None when none does."""
    import fcntl

    from kprtrack.pipeline import LOCK_NAME

    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _config_difference(runs: list[ShardRun]) -> str:
    """The config keys (from each run's config.yaml) whose values differ, e.g.
    ``tracker.match_thresh is 0.4 in a, b; 0.3 in c``; empty when the files do not tell."""
    from omegaconf import OmegaConf

    flat = {}
    for run in runs:
        try:
            flat[run.folder] = _flatten(OmegaConf.to_container(OmegaConf.load(run.folder / CONFIG), resolve=False))
        except Exception:  # noqa: BLE001 - a missing or unreadable config.yaml: fall back to the hashes
            return ""
    keys = sorted({k for values in flat.values() for k in values} - set(PER_SHARD_KEYS))
    parts = []
    for key in keys:
        by_value: dict[str, list[Path]] = {}
        for folder, values in flat.items():
            shown = json.dumps(values[key], default=str) if key in values else "(absent)"
            by_value.setdefault(shown, []).append(folder)
        if len(by_value) > 1:
            parts.append(f"{key} is " + "; ".join(f"{value} in {_names(folders)}"
                                                  for value, folders in by_value.items()))
    return "; ".join(parts[:SHOWN]) + (f" (and {len(parts) - SHOWN} more keys)" if len(parts) > SHOWN else "")


def check_shards(runs: list[ShardRun]) -> tuple[list[ShardRun], list[str]]:
    """The shards in index order and the data set's sequence names, or one InputError naming the
    problem and the folders: different configs or shard counts, a shard missing or given twice, a
    shard not finished, shards that list different data sets, a sequence missing or finished twice."""
    hashes: dict[str, list[Path]] = {}
    for run in runs:
        hashes.setdefault(run.config_hash, []).append(run.folder)
    if len(hashes) > 1:
        difference = _config_difference(runs) or "; ".join(
            f"config hash {h[:12]} in {_names(folders)}" for h, folders in hashes.items())
        raise InputError("the runs are not shards of one configuration (only dataset.shard may differ): "
                         + difference)
    counts: dict[int, list[Path]] = {}
    for run in runs:
        counts.setdefault(run.shard.count, []).append(run.folder)
    if len(counts) > 1:
        raise InputError("the runs split the data set differently: " + "; ".join(
            f"dataset.num_shards={count} in {_names(folders)}" for count, folders in sorted(counts.items())))
    count = runs[0].shard.count
    by_index: dict[int, list[ShardRun]] = {}
    for run in runs:
        by_index.setdefault(run.shard.index, []).append(run)
    twice = {index: group for index, group in sorted(by_index.items()) if len(group) > 1}
    if twice:
        raise InputError("; ".join(f"shard {index} is given {len(group)} times: {_names([r.folder for r in group])}"
                                   for index, group in twice.items()) + " (one run folder per shard)")
    missing = [index for index in range(count) if index not in by_index]
    if missing:
        given = ", ".join(f"{index} ({by_index[index][0].folder})" for index in sorted(by_index))
        raise InputError(f"shard(s) {_names(missing, 8)} of dataset.num_shards={count} missing: the merge needs "
                         f"every shard 0..{count - 1} (given: {given})")
    ordered = [by_index[index][0] for index in range(count)]

    problems = []
    for run in ordered:
        pid = _running(run.folder)
        state = run.state
        if pid is not None:
            problems.append(f"shard {run.shard.index} ({run.folder}): still running (pid {pid})")
            continue
        if run.sequences is None:
            problems.append(f"shard {run.shard.index} ({run.folder}): its run ended before the last sequence")
            continue
        mine = run.shard.select(run.sequences)
        failed = state.get("failed") or {}
        if failed:
            problems.append(f"shard {run.shard.index} ({run.folder}): {len(failed)} sequence(s) failed: "
                            + "; ".join(f"{name}: {reason}" for name, reason in list(failed.items())[:SHOWN]))
        absent = [name for name in mine if name not in state["finished"] and name not in failed]
        if absent:
            problems.append(f"shard {run.shard.index} ({run.folder}): not finished: {_names(absent)}")
        lost = [f for name in mine for f in state["finished"].get(name, []) if not (run.folder / f).is_file()]
        if lost:
            problems.append(f"shard {run.shard.index} ({run.folder}): finished files missing: {_names(lost)}")
    if problems:
        raise InputError("not every shard has finished (resume one with its settings and run.resume=true "
                         "output.dir=<its folder>):\n  " + "\n  ".join(problems))

    full = ordered[0].sequences
    differ = [run.folder for run in ordered if run.sequences != full]
    if differ:
        raise InputError(f"the shards list different sequences (did the data set change between them?): "
                         f"{len(full)} in {ordered[0].folder}, other lists in {_names(differ)}")
    repeated = [name for name, n in Counter(full).items() if n > 1]
    if repeated:
        raise InputError(f"the data set has several sequences named {_names(repeated)}: their files overwrite "
                         f"each other (rename them)", ordered[0].folder)
    owners: dict[str, list[Path]] = {}
    for run in ordered:
        for name in run.state["finished"]:
            owners.setdefault(name, []).append(run.folder)
    twice_done = {name: folders for name, folders in owners.items() if len(folders) > 1}
    if twice_done:
        raise InputError("sequence(s) finished in more than one shard: " + "; ".join(
            f"{name} in {_names(folders)}" for name, folders in list(twice_done.items())[:SHOWN]))
    foreign = {name: folders[0] for name, folders in owners.items() if name not in set(full)}
    if foreign:
        raise InputError("sequence(s) not in the data set's list: " + "; ".join(
            f"{name} in {folder}" for name, folder in list(foreign.items())[:SHOWN]))
    unfinished = [name for name in full if name not in owners]
    if unfinished:
        raise InputError(f"no shard finished {_names(unfinished)}")
    return ordered, list(full)


def _safe_relative(name: str, folder: Path) -> Path:
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise InputError(f"state file names a file outside the run folder: {name!r}", folder / STATE)
    return path


def _place(source: Path, target: Path, link: bool) -> bool:
    """``source`` at ``target`` (atomically: a temporary name, then a rename); True when hard-linked."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        linked = False
        if link:
            try:
                os.link(source, temporary)
                linked = True
            except OSError:  # another file system, no hard links there, too many links: copy
                pass
        if not linked:
            shutil.copy2(source, temporary)
        os.replace(temporary, target)
        return linked
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _clear_earlier_merge(out: Path) -> None:
    """Remove what an earlier merge wrote in ``out`` (the files its merge.json lists, eval/, its state)."""
    try:
        earlier = json.loads((out / MERGE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise InputError("output.dir holds a damaged merge.json: remove the folder yourself", out) from None
    files = [out / _safe_relative(f, out) for f in earlier.get("files", [])]
    for path in files + [out / STATE, out / CONFIG]:
        path.unlink(missing_ok=True)
    shutil.rmtree(out / "eval", ignore_errors=True)
    for folder in sorted({p.parent for p in files}, key=lambda p: len(p.parts), reverse=True):
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    (out / MERGE).unlink()


def _prepare_output(out: Path, runs: list[ShardRun], force: bool) -> None:
    from kprtrack.pipeline import LOCK_NAME

    resolved = out.resolve()
    for run in runs:
        folder = run.folder.resolve()
        if resolved == folder or resolved in folder.parents:
            raise InputError(f"output.dir holds the shard run {run.folder}: choose a folder of its own", out)
    if out.exists() and not out.is_dir():
        raise OutputError("output.dir is a file, not a folder", out)
    entries = [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []
    if not entries:
        return
    if not (out / MERGE).is_file():
        raise InputError("output.dir is not empty (and not an earlier merge): choose a new folder", out)
    if not force:
        raise InputError("output.dir holds an earlier merge: add force=true to replace it, or choose a new folder", out)


def merge(runs: list[ShardRun], out: Path, options: dict) -> dict:
    """Check the shards, write the merged run folder, evaluate it; returns a summary."""
    from omegaconf import OmegaConf

    from kprtrack.io import remove_partials, write_json, write_text
    from kprtrack.output_filters import summarise
    from kprtrack.pipeline import RunLock, evaluate, filter_config

    ordered, full = check_shards(runs)
    _prepare_output(out, ordered, bool(options["force"]))
    first = ordered[0]
    config_path = first.folder / CONFIG
    try:
        cfg = OmegaConf.load(config_path)
    except FileNotFoundError:
        raise InputError("config.yaml missing from the shard's run folder", first.folder) from None
    except Exception as err:  # noqa: BLE001 - YAML errors come in several types
        raise InputError(f"config.yaml cannot be read: {err}".replace("\n", " "), config_path) from None
    cfg.dataset.shard = None
    cfg.dataset.num_shards = None
    cfg.output.dir = str(out)
    cfg.run.progress = bool(options["run.progress"])
    # run.evaluate=true|false on merge's command line decides for this evaluation only: config.yaml
    # stays the shards' (its hash is state.json's).
    evaluate_now = options["run.evaluate"]
    eval_cfg = cfg if evaluate_now is None else OmegaConf.merge(cfg, {"run": {"evaluate": evaluate_now}})

    # What comes from where, in the data set's order.
    finished, per_sequence, plan = {}, {}, []
    for run in ordered:
        stats = (run.state.get("output_filters") or {}).get("per_sequence") or {}
        for name in run.shard.select(full):
            files = [str(_safe_relative(f, run.folder)) for f in run.state["finished"][name]]
            finished[name] = files
            plan += [(run.folder / f, f) for f in files]
            if name in stats:
                per_sequence[name] = stats[name]
    record = {"merged": False, "count": len(ordered), "config_hash": first.config_hash, "sequences": full,
              "shards": [{"index": run.shard.index, "folder": str(run.folder.resolve()),
                          "sequences": run.shard.select(full)} for run in ordered],
              "files": [f for _, f in plan], "ground_truth": first.ground_truth}

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError.from_os_error(err, out, "cannot create the merged folder") from None
    lock = RunLock(out)
    try:
        if (out / MERGE).is_file():
            _clear_earlier_merge(out)
        for folder in {out} | {(out / f).parent for _, f in plan}:
            remove_partials(folder)  # a killed merge's temporary files
        write_json(out / MERGE, record, indent=1)  # first: a killed merge is still known as one (force=true)
        linked = sum(_place(source, out / f, bool(options["link"])) for source, f in plan)
        write_text(out / CONFIG, OmegaConf.to_yaml(cfg))
        filters = summarise(filter_config(cfg), per_sequence)
        write_json(out / STATE, {"config_hash": first.config_hash, "finished": finished, "failed": {},
                                 "output_filters": filters}, indent=1)
        dataset = SimpleNamespace(has_ground_truth=first.ground_truth is not None,
                                  gt_dir=Path(first.ground_truth) if first.ground_truth else None, path=None)
        metrics = evaluate(eval_cfg, dataset, out, full)
        record.update(merged=True, linked=linked, copied=len(plan) - linked, evaluated=metrics is not None)
        write_json(out / MERGE, record, indent=1)
    except OSError as err:
        raise OutputError.from_os_error(err, out, "cannot write the merged folder") from None
    finally:
        lock.release()
    return {"folder": out, "sequences": full, "shards": len(ordered), "linked": linked,
            "copied": len(plan) - linked, "output_filters": filters, "metrics": metrics}


def main(argv: Sequence[str]) -> int:
    from kprtrack.output_filters import describe
    from kprtrack.pipeline import headline

    folders, options = parse_args(argv)
    runs = [load_shard(folder) for folder in folders]
    out = Path(options["output.dir"]).expanduser()
    result = merge(runs, out, options)
    if result["output_filters"]["enabled"]:
        print(describe(result["output_filters"]))
    if result["metrics"]:
        print(headline(result["metrics"]))
    print(f"merged {result['shards']} shard(s): {len(result['sequences'])} sequence(s); "
          f"{result['linked']} file(s) hard-linked, {result['copied']} copied")
    print(f"run folder: {out.resolve()}")
    return 0
