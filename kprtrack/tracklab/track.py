"""``modules/track=kprtrack``: our KPRTracker as a TrackLab online tracking module.

An image-level module with batches of one image, in frame order (TrackLab's offline and video
engines both feed a video's images in order and call ``reset`` before each video). Every frame
updates the tracker, also frames without detections: the tracker counts frames for its lost-track
buffer and for confirming new tracks, as in our own engine.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from tracklab.pipeline import ImageLevelModule

from kprtrack.tracklab.columns import BOX, EMBEDDINGS, TRACK_ID, VISIBILITY, detections_from_rows, track_columns
from kprtrack.tracklab.datapipe import IdsDatapipe
from kprtrack.tracklab.stage_config import build_kprtrack_stage


class KPRTrackModule(ImageLevelModule):
    input_columns = [BOX, EMBEDDINGS, VISIBILITY]
    output_columns = [TRACK_ID]

    def __init__(self, tracker="kprtrack", overrides: Mapping | None = None, device=None, **kwargs):
        super().__init__(batch_size=1)  # one frame at a time, in order
        self.tracker_config, self.overrides = tracker, overrides
        self.device = device  # the tracker runs in numpy; TrackLab passes a device to every module
        self.tracker = build_kprtrack_stage("tracker", tracker, overrides)
        if not getattr(self.tracker, "uses_appearance", True):
            self.input_columns = [BOX]  # box-only tracking needs no ReID module before it

    @property
    def datapipe(self):
        if self._datapipe is None:
            self._datapipe = IdsDatapipe(self)
        return self._datapipe

    def reset(self) -> None:
        """A new video: forget every track; ids restart at 1."""
        self.tracker.reset()

    def preprocess(self, image, detections, metadata: pd.Series):
        return {"frame": int(metadata.get("frame", 0))}

    def process(self, batch, detections: pd.DataFrame, metadatas: pd.DataFrame):
        if len(metadatas) != 1:
            raise ValueError(f"KPRTrackModule tracks one frame per batch, got {len(metadatas)}")
        if len(detections) == 0:
            self.tracker.update(detections_from_rows(detections))
            return []
        # TrackLab has already filtered the rows of this image, in its detection order.
        tracked = self.tracker.update(detections_from_rows(detections))
        if not np.any(tracked.track_ids >= 0):
            return []
        return track_columns(tracked, detections.index)
