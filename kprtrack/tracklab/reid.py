"""``modules/reid=kprtrack_kpr``: our ReID (KPR with keypoint prompts by default) for TrackLab.

A detection-level module, like TrackLab's own ReID wrappers, but the embedding of a person is
computed from the WHOLE frame's detections: KPR's negative prompt is the other people's
keypoints inside the person's crop, so every person of an image is embedded together (once per
image; batches that cut an image in two reuse the cached result). TrackLab's own KPR wrapper
only looks at a ``negative_kps`` column that no TrackLab module produces, so it never prompts
with other people. Any of our ReID backends can be chosen (``backend: part_colors``).
"""
from __future__ import annotations

from collections.abc import Mapping

import cv2
import pandas as pd
from tracklab.pipeline import DetectionLevelModule

from kprtrack.errors import InputError
from kprtrack.record import Frame
from kprtrack.tracklab.columns import BOX, EMBEDDINGS, VISIBILITY, detections_from_rows, reid_columns
from kprtrack.tracklab.datapipe import IdsDatapipe
from kprtrack.tracklab.stage_config import build_kprtrack_stage


class KPRReIDModule(DetectionLevelModule):
    input_columns = [BOX]  # keypoints_xyc is used when present (prompts, part regions)
    output_columns = [EMBEDDINGS, VISIBILITY]

    def __init__(self, backend="kpr", overrides: Mapping | None = None, batch_size: int = 64, device=None,
                 **kwargs):
        super().__init__(batch_size=int(batch_size))
        overrides = dict(overrides or {})
        if device is not None and _default_device(backend) and "device" not in overrides:
            overrides["device"] = str(device)  # follow TrackLab's device unless the config pins one
        self.backend = build_kprtrack_stage("reid", backend, overrides)
        self._per_image: dict[int, pd.DataFrame] = {}

    @property
    def datapipe(self):
        if self._datapipe is None:
            self._datapipe = IdsDatapipe(self)
        return self._datapipe

    def reset(self) -> None:
        self._per_image.clear()

    def preprocess(self, image, detection: pd.Series, metadata: pd.Series):
        return {"image_id": int(detection.image_id)}

    def process(self, batch, detections: pd.DataFrame, metadatas: pd.DataFrame, **kwargs):
        parts = []
        for image_id in pd.unique(detections.image_id):
            embedded = self._per_image.get(image_id)
            if embedded is None:
                embedded = self._embed_image(image_id, metadatas.loc[image_id], detections)
            rows = detections.index[detections.image_id == image_id]
            parts.append(embedded.loc[rows])
            remaining = embedded.index.difference(rows)
            if len(remaining):
                self._per_image[image_id] = embedded.loc[remaining]
            else:
                self._per_image.pop(image_id, None)
        return pd.concat(parts) if parts else []

    def _embed_image(self, image_id, metadata: pd.Series, batch_rows: pd.DataFrame) -> pd.DataFrame:
        people = self._people_of(image_id, batch_rows)
        path = str(metadata.file_path)
        image = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR, as every kprtrack stage expects
        if image is None:
            raise InputError("cannot read this image for ReID", path)
        frame = Frame(sequence=str(metadata.get("video_id", "")), index=int(metadata.get("frame", 1)) - 1,
                      image=image, image_id=int(image_id), file_name=path)
        embedded = self.backend.embed(frame, detections_from_rows(people))
        return reid_columns(embedded, people.index)

    def _people_of(self, image_id, batch_rows: pd.DataFrame) -> pd.DataFrame:
        """Every detection of the image (for negative prompts), in TrackLab's row order."""
        everyone = self.datapipe.detections
        if everyone is None or "image_id" not in everyone:
            everyone = batch_rows
        people = everyone[everyone.image_id == image_id]
        missing = batch_rows.index[batch_rows.image_id == image_id].difference(people.index)
        if len(missing):  # the engine handed rows the datapipe does not know: embed them too
            people = pd.concat([people, batch_rows.loc[missing]])
        return people


def _default_device(backend) -> bool:
    """Whether the backend picks its device itself (``device: auto``) and so may follow TrackLab's."""
    from kprtrack.tracklab.stage_config import stage_node

    node = stage_node("reid", backend)
    return "device" in node and str(node.device) == "auto"
