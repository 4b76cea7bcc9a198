"""The stage contracts. Backends are chosen by Hydra ``_target_`` (see ``configs/``).

Every capability the pipeline relies on is declared here, so a new backend knows what to offer
and a wrong composition fails before the first frame is decoded (``check_composition``):

- what a stage reads (``requires``) and fills (``provides``): fields of the per-frame record
  (``boxes``, ``keypoints``, ``embeddings``...), the frame's pixels (``IMAGE``) or the data set's
  ground truth (``GROUND_TRUTH``). The tracker needs embeddings when its appearance cue is on, KPR
  needs keypoints when prompted, the video writer needs pixels;
- ``weights_path``: the model file whose checksum keys the stage cache (None: no file);
- the data set's ground truth (``has_ground_truth``, ``gt_dir``), where it reads (``path``) and,
  when it keeps one file per sequence, ``files`` (a file that cannot be opened is then skipped
  alone under ``run.on_error=skip``);
- a sequence's ``fingerprint`` of its content (the stage cache's input key), its ``meta`` for the
  writers and ``frames(decode)``;
- a writer's ``filtered`` (gets the tracks that pass ``output.filters`` when the sequence ends,
  rather than every frame as it comes) and ``abort`` (drops a failed sequence's partial files);
- ReID backends used by ReID evaluation also embed ready-cut crops (``CropReID``).
"""
from __future__ import annotations

from pathlib import Path
from typing import AbstractSet, Iterable, Iterator, Protocol, Sequence, runtime_checkable

from kprtrack.errors import InputError
from kprtrack.record import Detections, Frame

# What a stage may need besides the record's fields (see Detections).
IMAGE = "image"  # the decoded frame (Frame.image)
GROUND_TRUTH = "ground truth"  # the data set's annotations (Frame.gt)
RECORD_FIELDS = frozenset({"boxes", "scores", "keypoints", "embeddings", "visibility", "track_ids", "person_ids"})


@runtime_checkable
class Source(Protocol):
    """One sequence (a video, a folder of frames, a PoseTrack sequence)."""

    name: str
    meta: dict  # handed to the writers' begin_sequence: fps, source, PoseTrack images...

    def __len__(self) -> int: ...  # frames (0 if unknown)

    def frames(self, decode: bool = True) -> Iterator[Frame]:
        """The frames in order; ``decode=False`` leaves ``Frame.image`` None (cached model outputs)."""
        ...

    def fingerprint(self) -> str:
        """Identifies the content (not the path or mtime) for the stage cache."""
        ...


@runtime_checkable
class Dataset(Protocol):
    has_ground_truth: bool  # frames carry Frame.gt, and the run is evaluated against gt_dir
    gt_dir: Path | None  # PoseTrack21 <seq>.json ground truth for evaluation; None without it
    path: Path | None  # where it reads from, named in errors
    # One file per sequence where the data set has them: sequences() yields them in this order, and a
    # copy whose files are any sub-list yields just those (a file that cannot be opened is then
    # skipped alone under run.on_error=skip, and a shard never opens another shard's files).
    files: list[Path] | None

    def sequences(self) -> Iterator[Source]: ...


@runtime_checkable
class Stage(Protocol):
    requires: AbstractSet[str]  # record fields, IMAGE or GROUND_TRUTH
    provides: AbstractSet[str]  # record fields it fills
    weights_path: str | Path | None  # keyed into the stage cache by checksum


@runtime_checkable
class Detector(Stage, Protocol):
    """Finds people. Batched over frames. Must keep low-confidence boxes (tracker round 2)."""

    def detect(self, frames: Sequence[Frame]) -> list[Detections]: ...


@runtime_checkable
class PoseEstimator(Stage, Protocol):
    """Fills ``keypoints`` [N, 17, 3] (PoseTrack order) for all people of one frame at once."""

    def estimate(self, frame: Frame, detections: Detections) -> Detections: ...


@runtime_checkable
class ReID(Stage, Protocol):
    """Fills ``embeddings`` [N, 1+K, D] and ``visibility`` [N, 1+K] for one frame.

    Other people's keypoints in the same frame are available in ``detections`` (negative prompts).
    """

    def embed(self, frame: Frame, detections: Detections) -> Detections: ...


@runtime_checkable
class CropReID(ReID, Protocol):
    """A ReID that also embeds ready-cut crops (ReID evaluation feeds it data set crops)."""

    supports_prompts: bool  # takes keypoint prompts (else the "with prompt" column would be a copy)

    def embed_crops(self, images: list, keypoints_pos=None, keypoints_neg=None) -> tuple: ...


@runtime_checkable
class Tracker(Protocol):
    """Assigns ``track_ids`` (-1 for detections not reported as a track in this frame)."""

    requires: AbstractSet[str]
    provides: AbstractSet[str]
    uses_appearance: bool  # reads embeddings (TrackLab's adapter skips its ReID columns otherwise)

    def update(self, detections: Detections) -> Detections: ...

    def reset(self) -> None: ...


@runtime_checkable
class Writer(Protocol):
    """Writes one sequence's tracks. Files appear atomically in ``end_sequence``."""

    requires: AbstractSet[str]  # IMAGE: the frames are decoded for it even when every model output is cached
    filtered: bool  # True: gets the sequence's tracks through output.filters when it ends

    def begin_sequence(self, name: str, meta: dict) -> None: ...

    def write(self, frame: Frame, detections: Detections) -> None: ...

    def end_sequence(self) -> list:  # the paths written
        ...

    def abort(self) -> None:
        """The sequence failed: drop buffers and partial files."""
        ...


def _name(stage: object) -> str:
    return type(stage).__name__


def protocol_members(protocol: type) -> list[str]:
    """The attributes and methods a protocol declares, its bases' included (typing keeps its own
    list private before Python 3.12)."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if getattr(base, "_is_protocol", False) and base is not Protocol:
            names |= set(vars(base).get("__annotations__", {}))
            names |= {n for n, v in vars(base).items() if callable(v) and (not n.startswith("_") or n == "__len__")}
    return sorted(names)


def contract_gap(stage: object, protocol: type) -> str | None:
    """``"<class> is not a <protocol> (it lacks ...)"``, or None when ``stage`` has every member."""
    missing = [name for name in protocol_members(protocol) if not hasattr(stage, name)]
    return f"{_name(stage)} is not a {protocol.__name__} (it lacks {', '.join(missing)})" if missing else None


def check_composition(dataset: object, chain: Iterable[tuple[str, object, type]]) -> None:
    """One clear error before any frame is decoded when a stage does not fulfil its contract, or
    needs something nothing before it provides. ``chain``: (role, stage, protocol) in pipeline order
    (writers last: each sees what every model stage and the tracker provide)."""
    chain = list(chain)
    problems = []
    for role, stage, protocol in [("dataset", dataset, Dataset), *chain]:
        gap = contract_gap(stage, protocol)
        if gap:
            problems.append(f"{role}: {gap}")
    if problems:
        raise InputError("the composed pipeline does not fit together:\n  " + "\n  ".join(problems))
    available = {IMAGE} | ({GROUND_TRUTH} if dataset.has_ground_truth else set())
    for role, stage, protocol in chain:
        needed = set(stage.requires) - available
        for need in sorted(needed):
            problems.append(f"{role} ({_name(stage)}) needs {need}, which "
                            + (f"the data set ({_name(dataset)}) does not have (oracle stages need annotations, "
                               "e.g. dataset=posetrack21; or use a model, e.g. detector=yolox_onnx pose=hrnet)"
                               if need == GROUND_TRUTH
                               else "no stage before it provides"))
        available |= set(getattr(stage, "provides", ()))  # writers provide nothing
    if problems:
        raise InputError("the composed pipeline does not fit together:\n  " + "\n  ".join(problems))


def needs_images(stages: Iterable[object]) -> bool:
    """Whether any of these stages reads the frame's pixels (else frames are not decoded)."""
    return any(IMAGE in stage.requires for stage in stages)
