"""``dataset=demo``: the synthetic demo, generated once into a cache, read by the PoseTrack21 loader."""
from __future__ import annotations

from kprtrack.data.posetrack import PoseTrackDataset


def demo_dataset(root: str | None = None, split: str = "val", sequences: list[str] | None = None,
                 **generator_params) -> PoseTrackDataset:
    from kprtrack.data.demo import ensure_demo

    path = ensure_demo(root, **generator_params)
    return PoseTrackDataset(str(path), split=split, annotations_dir="posetrack_data", sequences=sequences)
