"""Data-set sharding (dataset.shard / dataset.num_shards) and `python -m kprtrack merge`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kprtrack import merge as merge_module
from kprtrack.config import compose
from kprtrack.errors import InputError
from kprtrack.pipeline import RunState, _sources, build_stage
from kprtrack.pipeline import main as run_main
from kprtrack.shards import Shard, check, select

PLUGINS = Path(__file__).parent / "plugins"
KILLER = "+output.writers.killer._target_=kill_switch.KillSwitch"
NAMES = [f"seq{k:02d}" for k in range(11)]


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("count", range(1, 14))
def test_select_covers_every_sequence_once_in_order(count):
    parts = [select(NAMES, index, count) for index in range(count)]
    assert sorted(n for part in parts for n in part) == NAMES  # each exactly once
    for index, part in enumerate(parts):
        assert part == [n for k, n in enumerate(NAMES) if k % count == index]  # round robin, data set order
        assert part == select(list(NAMES), index, count)  # deterministic
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_unsharded_selects_everything():
    assert select(NAMES, None, None) == NAMES
    assert select(NAMES, None, 1) == NAMES
    assert check(None, None) is None and check(None, 1) is None
    assert check(0, 1) == Shard(0, 1)
    assert check(2.0, 3) == Shard(2, 3)  # an integral float is an integer
    assert select([], 0, 2) == []


@pytest.mark.parametrize("shard, count, message", [
    (2, 2, r"dataset.shard=2 is out of range for dataset.num_shards=2 \(shards are numbered 0..1\)"),
    (-1, 4, r"dataset.shard=-1 is out of range"),
    (0, 0, r"dataset.num_shards must be an integer >= 1, not 0"),
    (0, "two", r"dataset.num_shards must be an integer >= 1, not 'two'"),
    (0, True, r"dataset.num_shards must be an integer >= 1, not True"),
    ("a", 2, r"dataset.shard must be an integer \(0-based\), not 'a'"),
    (0.5, 2, r"dataset.shard must be an integer"),
    (1, None, r"dataset.shard=1 needs dataset.num_shards="),
    (None, 3, r"dataset.num_shards=3 needs dataset.shard=<0..2>"),
])
def test_bad_shard_settings_are_one_line(shard, count, message):
    with pytest.raises(InputError, match=message) as error:
        select(NAMES, shard, count)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- configs and data sets


@pytest.mark.parametrize("dataset, extra", [("demo", []), ("posetrack21", []), ("video", ["dataset.path=x.mp4"]),
                                            ("images", ["dataset.path=frames"])])
def test_every_dataset_config_takes_the_shard_keys(dataset, extra):
    cfg = compose("run", [f"dataset={dataset}", *extra], require_values=False)
    assert cfg.dataset.shard is None and cfg.dataset.num_shards is None
    cfg = compose("run", [f"dataset={dataset}", *extra, "dataset.shard=1", "dataset.num_shards=3"],
                  require_values=False)
    assert (cfg.dataset.shard, cfg.dataset.num_shards) == (1, 3)


def _frames(folder: Path) -> None:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / "000000.png"), np.zeros((8, 8, 3), np.uint8))


def test_shard_keys_are_not_constructor_arguments(tmp_path):
    _frames(tmp_path / "frames")
    dataset = build_stage({"_target_": "kprtrack.data.video.ImageFolderDataset", "path": str(tmp_path),
                           "name": "images", "shard": 0, "num_shards": 2})
    assert len(dataset) == 1  # built whole: the pipeline applies the shard


class FileDataset:
    """A data set with ``files``: records which files its sequences opened."""

    has_ground_truth, gt_dir, path = False, None, None

    def __init__(self, names):
        self.files = [Path(f"/nowhere/{n}.json") for n in names]
        self.opened = []

    def sequences(self):
        for path in self.files:
            self.opened.append(path.stem)
            yield type("Source", (), {"name": path.stem})()


def test_a_shard_never_opens_other_shards_files():
    dataset = FileDataset(NAMES)
    listing = []
    names = [name for name, _ in _sources(dataset, Shard(1, 3), listing)]
    assert names == NAMES[1::3] and dataset.opened == NAMES[1::3]
    assert listing == NAMES  # the whole data set, for merge's completeness check
    assert dataset.files == [Path(f"/nowhere/{n}.json") for n in NAMES]  # the data set is not changed


def test_images_without_files_are_sharded_as_they_come(tmp_path):
    from kprtrack.data.auto import ImageFiles

    for name in ("c", "a", "d", "b", "e"):
        _frames(tmp_path / "shots" / name)
    dataset = ImageFiles(str(tmp_path / "shots"))
    assert dataset.files is None
    for index, expected in enumerate([["a", "c", "e"], ["b", "d"]]):
        listing = []
        assert [name for name, _ in _sources(dataset, Shard(index, 2), listing)] == expected
        assert listing == ["a", "b", "c", "d", "e"]  # sorted by name


def test_state_hash_without_shards_is_unchanged(tmp_path):
    """The null keys leave an unsharded run's config hash as before (old runs still resume); each
    shard's own hash differs, the unsharded one is shared by every shard and the unsharded run."""
    from omegaconf import OmegaConf

    cfg = compose("run", [])
    plain = RunState(tmp_path, cfg, False)
    old = OmegaConf.create(OmegaConf.to_container(cfg))
    del old.dataset["shard"], old.dataset["num_shards"]
    assert RunState(tmp_path, old, False).config_hash == plain.config_hash
    hashes = []
    for index in range(2):
        sharded = compose("run", [f"dataset.shard={index}", "dataset.num_shards=2"])
        state = RunState(tmp_path, sharded, False, Shard(index, 2))
        assert state.unsharded_hash == plain.config_hash
        hashes.append(state.config_hash)
    assert len({*hashes, plain.config_hash}) == 3


# --------------------------------------------------------------------------- end to end on the demo


def outputs(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for sub in ("posetrack21/sequences", "mot", "render")
            for p in sorted((run_dir / sub).glob("*"))}


def metrics(run_dir: Path) -> dict:
    data = json.loads((run_dir / "eval" / "metrics.json").read_text())
    data.pop("pred")  # the folder it read
    return data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Shards 0 and 1 of 2 and the unsharded run of the demo (3 sequences), same settings."""
    base = tmp_path_factory.mktemp("shards")
    common = ["run.progress=false", f"dataset.root={base / 'demo'}", f"run.cache_dir={base / 'cache'}"]
    runs = {"full": base / "full", 0: base / "shard0", 1: base / "shard1"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPRTRACK_HOME", str(base / "home"))
        assert run_main([*common, f"output.dir={runs['full']}"]) == 0
        for index in (0, 1):
            assert run_main([*common, f"dataset.shard={index}", "dataset.num_shards=2",
                             f"output.dir={runs[index]}"]) == 0
    return base, common, runs


@pytest.mark.slow
def test_merged_shards_equal_the_unsharded_run(demo, tmp_path, capsys):
    base, common, runs = demo
    states = [json.loads((runs[i] / "state.json").read_text()) for i in (0, 1)]
    assert [list(s["finished"]) for s in states] == [["900001_demo_val", "900003_demo_val"], ["900002_demo_val"]]
    full_state = json.loads((runs["full"] / "state.json").read_text())
    for index, state in enumerate(states):
        assert state["shard"]["index"] == index and state["shard"]["count"] == 2
        assert state["shard"]["sequences"] == list(full_state["finished"])
        assert state["shard"]["unsharded_config_hash"] == full_state["config_hash"]
        assert state["shard"]["ground_truth"] == str((base / "demo/posetrack_data/val").resolve())

    merged = tmp_path / "merged"
    assert merge_module.main([str(runs[1]), str(runs[0]), f"output.dir={merged}"]) == 0  # any order
    out = capsys.readouterr().out
    assert "pose HOTA" in out and f"run folder: {merged}" in out and "9 file(s) hard-linked" in out
    assert metrics(merged) == metrics(runs["full"])  # every number
    assert outputs(merged) == outputs(runs["full"]) and len(outputs(merged)) == 9  # byte-identical files
    # state.json is the unsharded run's: same config hash, same finished files and filter counts
    assert json.loads((merged / "state.json").read_text()) == full_state
    record = json.loads((merged / "merge.json").read_text())
    assert record["merged"] and record["count"] == 2 and record["linked"] == 9
    assert [s["folder"] for s in record["shards"]] == [str(runs[0]), str(runs[1])]
    assert "shard: null" in (merged / "config.yaml").read_text()

    # the merged folder is a finished unsharded run: resuming it with the same settings tracks nothing
    assert run_main([*common, "run.resume=true", f"output.dir={merged}"]) == 0
    assert "finished earlier, kept" in capsys.readouterr().err
    assert metrics(merged) == metrics(runs["full"])

    # copies instead of links, root= instead of listing the folders, force=true over an earlier merge
    with pytest.raises(InputError, match="not a shard"):
        merge_module.main([f"root={base}", f"output.dir={merged}", "force=true"])  # root holds full/ too
    shards_only = tmp_path / "sweep"
    for index in (0, 1):
        shutil.copytree(runs[index], shards_only / str(index))
    with pytest.raises(InputError, match="earlier merge: add force=true"):
        merge_module.main([f"root={shards_only}", f"output.dir={merged}"])
    assert merge_module.main([f"root={shards_only}", f"output.dir={merged}", "force=true", "link=false"]) == 0
    assert "0 file(s) hard-linked, 9 copied" in capsys.readouterr().out
    assert metrics(merged) == metrics(runs["full"]) and outputs(merged) == outputs(runs["full"])


@pytest.mark.slow
def test_merge_refuses_a_missing_or_duplicated_shard_or_another_config(demo, tmp_path):
    base, common, runs = demo
    out = tmp_path / "merged"
    with pytest.raises(InputError, match=r"shard\(s\) 1 of dataset.num_shards=2 missing") as error:
        merge_module.main([str(runs[0]), f"output.dir={out}"])
    assert str(runs[0]) in str(error.value)
    with pytest.raises(InputError, match="shard 0 is given 2 times") as error:
        merge_module.main([str(runs[0]), str(runs[0]), str(runs[1]), f"output.dir={out}"])
    copy = tmp_path / "copy_of_shard0"
    shutil.copytree(runs[0], copy)
    with pytest.raises(InputError, match="shard 0 is given 2 times") as error:
        merge_module.main([str(runs[0]), str(copy), str(runs[1]), f"output.dir={out}"])
    assert str(runs[0]) in str(error.value) and str(copy) in str(error.value)
    with pytest.raises(InputError, match="not a shard"):
        merge_module.main([str(runs[0]), str(runs["full"]), f"output.dir={out}"])

    other = tmp_path / "shard1_other"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPRTRACK_HOME", str(base / "home"))
        assert run_main([*common, "dataset.shard=1", "dataset.num_shards=2", "tracker.match_thresh=0.3",
                         f"output.dir={other}"]) == 0
    with pytest.raises(InputError, match="not shards of one configuration") as error:
        merge_module.main([str(runs[0]), str(other), f"output.dir={out}"])
    assert "tracker.match_thresh is 0.4 in" in str(error.value) and str(other) in str(error.value)

    three = tmp_path / "of_three"  # another split of the same data set
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPRTRACK_HOME", str(base / "home"))
        assert run_main([*common, "dataset.shard=2", "dataset.num_shards=3", f"output.dir={three}"]) == 0
    with pytest.raises(InputError, match=r"split the data set differently: dataset.num_shards=2 in .*; "
                                         r"dataset.num_shards=3 in"):
        merge_module.main([str(runs[0]), str(runs[1]), str(three), f"output.dir={out}"])
    assert not out.exists()  # nothing written on a refusal

    from kprtrack.pipeline import RunLock

    lock = RunLock(runs[1])  # a run in progress in shard 1's folder
    try:
        with pytest.raises(InputError, match=rf"shard 1 \({runs[1]}\): still running \(pid {os.getpid()}\)"):
            merge_module.main([str(runs[0]), str(runs[1]), f"output.dir={out}"])
    finally:
        lock.release()

    failed = tmp_path / "failed_shard1"
    shutil.copytree(runs[1], failed)
    state = json.loads((failed / "state.json").read_text())
    state["failed"] = {"900002_demo_val": "cannot read image"}
    del state["finished"]["900002_demo_val"]
    (failed / "state.json").write_text(json.dumps(state))
    with pytest.raises(InputError, match=r"not every shard has finished.*\n  shard 1 \(.*failed_shard1\): 1 "
                                         r"sequence\(s\) failed: 900002_demo_val: cannot read image"):
        merge_module.main([str(runs[0]), str(failed), f"output.dir={out}"])


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kprtrack", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PLUGINS), **(env or {})}, timeout=300)


@pytest.mark.slow
def test_merge_refuses_an_unfinished_shard_until_it_is_resumed(demo, tmp_path):
    base, common, runs = demo
    common = [*common, "output.render=false", KILLER]
    env = {"KPRTRACK_HOME": str(base / "home")}
    killed, other = tmp_path / "shard0", tmp_path / "shard1"
    result = cli("run", *common, "dataset.shard=0", "dataset.num_shards=2", f"output.dir={killed}",
                 env={**env, "KPRTRACK_KILL_AT": "1"})  # killed when its second sequence begins
    assert result.returncode == -9
    assert list(json.loads((killed / "state.json").read_text())["finished"]) == ["900001_demo_val"]
    assert cli("run", *common, "dataset.shard=1", "dataset.num_shards=2", f"output.dir={other}",
               env=env).returncode == 0
    out = tmp_path / "merged"
    result = cli("merge", str(killed), str(other), f"output.dir={out}")
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.startswith("kprtrack merge: error: not every shard has finished")
    assert f"shard 0 ({killed}): its run ended before the last sequence" in result.stderr

    resumed = cli("run", *common, "dataset.shard=0", "dataset.num_shards=2", f"output.dir={killed}",
                  "run.resume=true", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = cli("merge", str(killed), str(other), f"output.dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert metrics(out) == metrics(runs["full"])  # rendering off and a writer more: the same numbers
    full = {k: v for k, v in outputs(runs["full"]).items() if not k.startswith("render")}
    assert outputs(out) == full


@pytest.mark.slow
def test_more_shards_than_sequences_and_evaluation_left_to_the_merge(demo, tmp_path, capsys):
    base, common, runs = demo
    common = [*common, "run.evaluate=false", "output.render=false"]
    shards = [tmp_path / f"shard{index}" for index in range(4)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPRTRACK_HOME", str(base / "home"))
        for index, folder in enumerate(shards):
            assert run_main([*common, f"dataset.shard={index}", "dataset.num_shards=4", f"output.dir={folder}"]) == 0
    assert "dataset.shard=3 of dataset.num_shards=4: no sequences in this shard (the data set has 3)" \
        in capsys.readouterr().err
    assert not (shards[0] / "eval").exists()
    state = json.loads((shards[3] / "state.json").read_text())
    assert state["finished"] == {} and len(state["shard"]["sequences"]) == 3
    out = tmp_path / "merged"
    assert merge_module.main([*map(str, shards), f"output.dir={out}"]) == 0
    assert not (out / "eval").exists()  # the shards' run.evaluate=false
    assert merge_module.main([*map(str, shards), f"output.dir={out}", "force=true", "run.evaluate=true"]) == 0
    assert metrics(out) == metrics(runs["full"])
    assert "evaluate: false" in (out / "config.yaml").read_text()  # the shards' config, whose hash state.json has


def test_merge_arguments_are_checked(tmp_path):
    with pytest.raises(InputError, match="missing output.dir="):
        merge_module.main([str(tmp_path)])
    with pytest.raises(InputError, match="no run folders given"):
        merge_module.main([f"output.dir={tmp_path / 'm'}"])
    with pytest.raises(InputError, match="unknown merge option 'tracker.match_thresh'"):
        merge_module.main([str(tmp_path), "tracker.match_thresh=0.3", f"output.dir={tmp_path / 'm'}"])
    with pytest.raises(InputError, match="not a run folder"):
        merge_module.main([str(tmp_path), f"output.dir={tmp_path / 'm'}"])
    with pytest.raises(InputError, match="link must be true or false"):
        merge_module.main([str(tmp_path), "link=maybe", f"output.dir={tmp_path / 'm'}"])
