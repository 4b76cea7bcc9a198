"""The per-frame record that flows through every stage.

Everything is a numpy array with N rows, one per person, so stages can be batched and tested
without torch. Boxes are ``x1, y1, x2, y2`` in frame pixels; keypoints are 17 x (x, y, score)
in PoseTrack order (see ``POSETRACK_KEYPOINTS``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

POSETRACK_KEYPOINTS = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(POSETRACK_KEYPOINTS)
# 1-based joint pairs, as in the PoseTrack JSON "skeleton" field.
POSETRACK_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)


@dataclass
class Detections:
    """People found in one frame. Optional fields are ``None`` until a stage fills them."""

    boxes: np.ndarray  # [N, 4] float32, x1 y1 x2 y2
    scores: np.ndarray  # [N] float32, detection confidence
    keypoints: np.ndarray | None = None  # [N, 17, 3] float32, x y score
    embeddings: np.ndarray | None = None  # [N, 1+K, D] float32, index 0 = global/foreground
    visibility: np.ndarray | None = None  # [N, 1+K] float32 in [0, 1] (bool allowed)
    track_ids: np.ndarray | None = None  # [N] int64, -1 = no track
    person_ids: np.ndarray | None = None  # [N] int64, ground truth only (global identity)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = len(self.boxes)
        if len(self.scores) != n:
            raise ValueError(f"{n} boxes but {len(self.scores)} scores")
        for name in ("keypoints", "embeddings", "visibility", "track_ids", "person_ids"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{n} boxes but {len(value)} rows of {name}")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def subset(self, index: np.ndarray | list[int] | slice) -> "Detections":
        """Rows selected by an index or boolean mask; every array field follows."""
        take = lambda a: None if a is None else a[index]  # noqa: E731
        return Detections(
            boxes=self.boxes[index], scores=self.scores[index], keypoints=take(self.keypoints),
            embeddings=take(self.embeddings), visibility=take(self.visibility),
            track_ids=take(self.track_ids), person_ids=take(self.person_ids),
        )

    def with_(self, **fields: Any) -> "Detections":
        return replace(self, **fields)

    def with_track_ids(self, track_ids: np.ndarray) -> "Detections":
        """This record with ``track_ids`` [N] int64: a shallow copy sharing every other array.

        The cheap form of ``with_(track_ids=...)`` for a tracker's every frame: the other fields were
        checked when this record was built, so only the new one is (``replace`` and ``copy.copy`` would
        re-run ``__post_init__`` or go through ``__reduce_ex__``, several microseconds).
        """
        if len(track_ids) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(track_ids)} rows of track_ids")
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.track_ids = track_ids
        return copy

    @property
    def boxes_ltwh(self) -> np.ndarray:
        out = self.boxes.copy()
        out[:, 2:] -= out[:, :2]
        return out


@dataclass
class Frame:
    """One decoded frame and what the data set knows about it."""

    sequence: str
    index: int  # 0-based position in the sequence
    image: np.ndarray | None  # HxWx3 uint8 BGR, decoded once and shared by all stages
    image_id: int | None = None  # PoseTrack image id; None for plain videos
    file_name: str | None = None
    is_labeled: bool = True
    ignore_regions: list[np.ndarray] = field(default_factory=list)  # polygons [M, 2] (x, y)
    gt: Detections | None = None  # ground truth, where the data set has it
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if self.image is not None:
            self.height, self.width = self.image.shape[:2]
