"""The stage protocols. Backends are chosen by Hydra ``_target_`` (see ``configs/``)."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from kprtrack.record import Detections, Frame


@runtime_checkable
class Detector(Protocol):
    """Finds people. Batched over frames. Must keep low-confidence boxes (tracker round 2)."""

    def detect(self, frames: Sequence[Frame]) -> list[Detections]: ...


@runtime_checkable
class PoseEstimator(Protocol):
    """Fills ``keypoints`` [N, 17, 3] (PoseTrack order) for all people of one frame at once."""

    def estimate(self, frame: Frame, detections: Detections) -> Detections: ...


@runtime_checkable
class ReID(Protocol):
    """Fills ``embeddings`` [N, 1+K, D] and ``visibility`` [N, 1+K] for one frame.

    Other people's keypoints in the same frame are available in ``detections`` (negative prompts).
    """

    def embed(self, frame: Frame, detections: Detections) -> Detections: ...


@runtime_checkable
class Tracker(Protocol):
    """Assigns ``track_ids`` (-1 for detections not reported as a track in this frame)."""

    def update(self, detections: Detections) -> Detections: ...

    def reset(self) -> None: ...


@runtime_checkable
class Writer(Protocol):
    """Writes one sequence's tracks. Files appear atomically in ``end_sequence``."""

    def begin_sequence(self, name: str, meta: dict) -> None: ...

    def write(self, frame: Frame, detections: Detections) -> None: ...

    def end_sequence(self) -> list:  # the paths written
        ...
