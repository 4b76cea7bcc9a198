"""``dataset=kprtrack_demo``: kprtrack's synthetic demo (PoseTrack21 layout) as a TrackLab data set.

The demo is generated (once, cached) exactly as ``python -m kprtrack run`` generates it, then read
by TrackLab's own PoseTrack21 reader, so both tools track the same images and annotations. Only
the ``val`` split exists (TrackLab's PoseTrack21 class insists on a train split too).
"""
from __future__ import annotations

from pathlib import Path

from tracklab.datastruct import TrackingDataset
from tracklab.wrappers.dataset.posetrack.posetrack21 import load_tracking_set

from kprtrack.data.demo import SPLIT, ensure_demo


class KPRTrackDemo(TrackingDataset):
    name = "kprtrack_demo"
    nickname = "kdemo"

    def __init__(self, dataset_path: str | None = None, seed: int = 0, num_sequences: int = 3,
                 num_frames: int = 72, width: int = 640, height: int = 360, *args, **kwargs):
        root = Path(ensure_demo(dataset_path or None, seed=seed, num_sequences=num_sequences,
                                num_frames=num_frames, width=width, height=height))
        sets = {SPLIT: load_tracking_set(root / "posetrack_data" / SPLIT, root, 21)}
        super().__init__(str(root), sets, *args, **kwargs)
