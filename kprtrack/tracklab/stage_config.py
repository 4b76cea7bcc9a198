"""Build one of kprtrack's own stages (tracker, ReID) from its packaged config, for TrackLab.

A TrackLab config names our stage like our command line does (``tracker: kprtrack``,
``backend: kpr``: the files ``configs/<group>/<name>.yaml``) or gives a full node with a
``_target_``; ``overrides`` change single keys. Reading our own YAML keeps the defaults in one
place, so TrackLab and ``python -m kprtrack run`` track with the same settings.
"""
from __future__ import annotations

from collections.abc import Mapping

from kprtrack.config import config_dir
from kprtrack.errors import InputError


def stage_node(group: str, choice, overrides: Mapping | None = None):
    from omegaconf import OmegaConf

    if isinstance(choice, Mapping) or OmegaConf.is_dict(choice):
        node = OmegaConf.create(OmegaConf.to_container(choice, resolve=True) if OmegaConf.is_config(choice)
                                else dict(choice))
        if "_target_" not in node:
            raise InputError(f"kprtrack {group} config given as a mapping needs a _target_ key")
    else:
        path = config_dir() / group / f"{choice}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
            raise InputError(f"unknown kprtrack {group} config {choice!r} (known: {', '.join(known)})", path)
        node = OmegaConf.load(path)
        node.pop("defaults", None)
    if overrides:
        extra = OmegaConf.to_container(overrides, resolve=True) if OmegaConf.is_config(overrides) else dict(overrides)
        node = OmegaConf.merge(node, extra)
    return node


def build_kprtrack_stage(group: str, choice, overrides: Mapping | None = None):
    from kprtrack.pipeline import build_stage

    return build_stage(stage_node(group, choice, overrides))
