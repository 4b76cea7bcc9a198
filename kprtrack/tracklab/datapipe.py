"""A TrackLab datapipe that does not decode the image for every sample.

TrackLab's own datapipe reads the frame from disk once per sample (per detection for a
detection-level module) to hand it to ``preprocess``. Our modules need the whole frame once per
image (the ReID) or no pixels at all (the tracker), so samples carry ids only and the modules
read what they need.
"""
from __future__ import annotations

from tracklab.datastruct import EngineDatapipe


class IdsDatapipe(EngineDatapipe):
    def __getitem__(self, idx):
        if self.model.level == "detection":
            detection = self.detections.iloc[idx]
            metadata = self.img_metadatas.loc[detection.image_id]
            return detection.name, self.model.preprocess(image=None, detection=detection, metadata=metadata)
        if self.model.level == "image":
            metadata = self.img_metadatas.iloc[idx]
            return self.img_metadatas.index[idx], self.model.preprocess(image=None, detections=None,
                                                                        metadata=metadata)
        raise ValueError(f"IdsDatapipe serves detection- and image-level modules, not {self.model.level!r}")
