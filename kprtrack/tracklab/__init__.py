"""KPRTrack inside TrackLab (``pip install kprtrack[tracklab]``).

TrackLab's Hydra search-path plugin loads every ``tracklab_plugin`` entry point and appends its
``config_package`` to the config search path, which makes ``modules/track=kprtrack``,
``modules/reid=kprtrack_kpr`` and ``dataset=kprtrack_demo`` selectable. Without the entry point,
``hydra.searchpath=[pkg://kprtrack.tracklab.configs]`` on the TrackLab command line does the same.

This module must import without TrackLab (the entry point is loaded by TrackLab itself, and
kprtrack's own tests import the column mapping), so the TrackLab classes load lazily.
"""
from __future__ import annotations

config_package = "pkg://kprtrack.tracklab.configs"

_LAZY = {
    "KPRTrackModule": "kprtrack.tracklab.track",
    "KPRReIDModule": "kprtrack.tracklab.reid",
    "KPRTrackDemo": "kprtrack.tracklab.dataset",
}

__all__ = ["config_package", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kprtrack.tracklab' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
