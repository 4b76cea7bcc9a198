"""Human-parsing labels for KPR training (the part-prediction loss), and ``python -m kprtrack reid-labels``.

Label file format written by ``reid-labels`` (and read by ``kprtrack.reid.train.data.ReidTrainSet``):
``<output>/<crop file without extension>.npy``, one per crop of ``splits/{train,query,gallery}.json``
(``output`` defaults to ``<dataset_dir>/labels``; e.g. ``images/train/v/x.jpg`` ->
``labels/images/train/v/x.npy``): with ``method=keypoints`` a ``uint8`` array ``[h, w]`` of the crop's own
size, 0 = background,
``1..K`` = the parts of the scheme in ``PART_SCHEMES`` order (eight: head, left_arm, right_arm, torso,
left_leg, right_leg, left_feet, right_feet); with ``method=sam_pifpaf`` float32 PifPaf fields as below.
``<output>/labels.json`` records scheme, part names and method.

Also read: BPBReID / KPR released label files (``masks/pifpaf_maskrcnn_filtering/<subset>/<image stem>.npy``),
float PifPaf confidence fields ``[36, h, w]`` (17 keypoint "pif" fields in COCO order, then 19
"paf" association fields), grouped at load time into K parts by max over each part's fields
(upstream ``CombinePifPafIntoEightBodyMasks`` / ``...FiveVerticalParts``), background = clamp(1 - sum of
parts) (upstream ``AddBackgroundMask`` 'sum'). ``read_label_file`` accepts either layout (a 3-D array
with 36 channels first or last is taken as fields and reduced to argmax labels).

Backends (``method=``): ``keypoints`` (model-free, always works: each part's skeleton segments drawn
thick inside the crop, parts drawn in ``DRAW_ORDER`` so later ones cover earlier ones); ``sam_pifpaf``
(the seed's pipeline, ``SamPifPafLabeller``): openpifpaf's 36 confidence fields of the crop (as
BPBReID's ``get_labels.py``), multiplied by the target's mask from Segment Anything prompted with the
target's keypoints (other people's keypoints as negative points with ``sam_pifpaf.negatives=true``);
written as float32 ``[36, h', w']`` field arrays at the same per-crop paths (``read_label_file`` groups
them into parts). It needs the pip packages ``segment-anything`` and ``openpifpaf`` (extra
``kprtrack[labels]``; both need torchvision) and downloads SAM's official checkpoint (``SAM_WEIGHTS``)
and openpifpaf's own; without the packages the command stops with one InputError.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from kprtrack.errors import InputError
from kprtrack.io import atomic_open, write_json
from kprtrack.reid.body_parts import EIGHT_PARTS, PART_SCHEMES  # label value = 1 + the part's index
from kprtrack.weights import WeightSpec, resolve_weights

# Skeleton segments (PoseTrack keypoint index pairs; (i, i) = a disc) per part.
SCHEME_SEGMENTS: dict[str, dict[str, list[tuple[int, int]]]] = {
    "eight": {**EIGHT_PARTS, "head": EIGHT_PARTS["head"] + [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]},
    "five_v": {  # approximates upstream's five vertical PifPaf groups with skeleton segments
        "head": EIGHT_PARTS["head"] + [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)],
        "upper_arms_torso": [(5, 6), (5, 7), (6, 8)],
        "lower_arms_torso": [(7, 9), (8, 10), (11, 12), (5, 11), (6, 12)],
        "legs": [(11, 13), (12, 14), (13, 15), (14, 16)],
        "feet": [(15, 15), (16, 16)],
    },
}
# Drawing order of the keypoint labeller: later parts cover earlier ones where they overlap.
DRAW_ORDER: dict[str, tuple[str, ...]] = {
    "eight": ("torso", "left_leg", "right_leg", "left_feet", "right_feet", "left_arm", "right_arm", "head"),
    "five_v": ("lower_arms_torso", "upper_arms_torso", "legs", "feet", "head"),
}
# Left/right part pairs (label swap under a horizontal flip).
MIRROR_PARTS = {"eight": (("left_arm", "right_arm"), ("left_leg", "right_leg"), ("left_feet", "right_feet")),
                "five_v": ()}

# PifPaf field layout of BPBReID/KPR label files: 17 COCO keypoints then 19 associations.
PIFPAF_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                    "right_knee", "left_ankle", "right_ankle")
PIFPAF_JOINTS = ("left_ankle_to_left_knee", "left_knee_to_left_hip", "right_ankle_to_right_knee",
                 "right_knee_to_right_hip", "left_hip_to_right_hip", "left_shoulder_to_left_hip",
                 "right_shoulder_to_right_hip", "left_shoulder_to_right_shoulder", "left_shoulder_to_left_elbow",
                 "right_shoulder_to_right_elbow", "left_elbow_to_left_wrist", "right_elbow_to_right_wrist",
                 "left_eye_to_right_eye", "nose_to_left_eye", "nose_to_right_eye", "left_eye_to_left_ear",
                 "right_eye_to_right_ear", "left_ear_to_left_shoulder", "right_ear_to_right_shoulder")
PIFPAF_FIELDS = PIFPAF_KEYPOINTS + PIFPAF_JOINTS
_HEAD_FIELDS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_eye_to_right_eye", "nose_to_left_eye",
                "nose_to_right_eye", "left_eye_to_left_ear", "right_eye_to_right_ear", "left_ear_to_left_shoulder",
                "right_ear_to_right_shoulder")
FIELD_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "eight": {
        "head": _HEAD_FIELDS,
        "left_arm": ("left_shoulder", "left_elbow", "left_wrist", "left_shoulder_to_left_elbow",
                     "left_elbow_to_left_wrist"),
        "right_arm": ("right_shoulder", "right_elbow", "right_wrist", "right_shoulder_to_right_elbow",
                      "right_elbow_to_right_wrist"),
        "torso": ("left_hip", "right_hip", "left_hip_to_right_hip", "left_shoulder_to_left_hip",
                  "right_shoulder_to_right_hip", "left_shoulder_to_right_shoulder"),
        "left_leg": ("left_knee", "left_ankle_to_left_knee", "left_knee_to_left_hip", "left_hip_to_right_hip"),
        "right_leg": ("right_knee", "right_ankle_to_right_knee", "right_knee_to_right_hip"),
        "left_feet": ("left_ankle",),
        "right_feet": ("right_ankle",),
    },
    "five_v": {
        "head": _HEAD_FIELDS,
        "upper_arms_torso": ("left_elbow", "right_elbow", "left_shoulder_to_left_elbow",
                             "right_shoulder_to_right_elbow", "left_shoulder", "right_shoulder",
                             "left_shoulder_to_right_shoulder"),
        "lower_arms_torso": ("left_wrist", "right_wrist", "left_elbow_to_left_wrist", "right_elbow_to_right_wrist",
                             "left_hip", "right_hip", "right_shoulder_to_right_hip"),
        "legs": ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle_to_left_knee",
                 "left_knee_to_left_hip", "right_ankle_to_right_knee", "right_knee_to_right_hip"),
        "feet": ("left_ankle", "right_ankle"),
    },
}
NUM_FIELDS = len(PIFPAF_FIELDS)  # 36
THICKNESS = 0.1  # stroke width of the keypoint labeller, as a fraction of the crop height


def _check_scheme(scheme: str) -> None:
    if scheme not in PART_SCHEMES:
        raise InputError(f"unknown part scheme {scheme!r} (known: {', '.join(PART_SCHEMES)})")


def num_parts(scheme: str) -> int:
    _check_scheme(scheme)
    return len(PART_SCHEMES[scheme])


# ---------------------------------------------------------------- model-free labeller

def keypoint_part_labels(keypoints: np.ndarray, height: int, width: int, scheme: str = "eight",
                         threshold: float = 0.3, thickness: float = THICKNESS) -> np.ndarray:
    """uint8 [height, width] part labels from one person's keypoints [17, 3] (crop pixels).

    Each part = its skeleton segments (both ends with confidence > threshold) drawn with a stroke
    ``thickness x height`` wide (discs for single points); parts drawn in ``DRAW_ORDER``.
    """
    import cv2

    _check_scheme(scheme)
    labels = np.zeros((int(height), int(width)), np.uint8)
    kps = np.asarray(keypoints, np.float32).reshape(-1, 3)
    if not np.all(np.isfinite(kps)):
        kps = np.where(np.isfinite(kps), kps, 0.0)
    good = kps[:, 2] > threshold
    radius = max(1, int(round(thickness * height / 2)))
    value_of = {name: i + 1 for i, name in enumerate(PART_SCHEMES[scheme])}
    points = np.round(kps[:, :2]).astype(np.int64)
    points = np.clip(points, -10 * max(height, width), 10 * max(height, width))  # cv2 needs sane ints
    for name in DRAW_ORDER[scheme]:
        value = value_of[name]
        for a, b in SCHEME_SEGMENTS[scheme][name]:
            if not (good[a] and good[b]):
                continue
            pa, pb = tuple(int(v) for v in points[a]), tuple(int(v) for v in points[b])
            if a == b:
                cv2.circle(labels, pa, radius, value, thickness=-1)
            else:
                cv2.line(labels, pa, pb, value, thickness=2 * radius)
    return labels


def mirror_labels(labels: np.ndarray, scheme: str = "eight") -> np.ndarray:
    """Labels of the horizontally flipped crop: flipped, with left/right part values swapped."""
    out = labels[:, ::-1].copy()
    names = PART_SCHEMES[scheme]
    flipped = out.copy()
    for left, right in MIRROR_PARTS[scheme]:
        lv, rv = names.index(left) + 1, names.index(right) + 1
        out[flipped == lv] = rv
        out[flipped == rv] = lv
    return out


# ---------------------------------------------------------------- BPBReID / KPR PifPaf field files

def _fields_first(fields: np.ndarray) -> np.ndarray:
    fields = np.asarray(fields, np.float32)
    if fields.ndim != 3:
        raise ValueError(f"PifPaf fields must be 3-D [36, h, w], got shape {fields.shape}")
    if fields.shape[0] == NUM_FIELDS:
        return fields
    if fields.shape[-1] == NUM_FIELDS:
        return np.moveaxis(fields, -1, 0)
    raise ValueError(f"PifPaf fields need {NUM_FIELDS} channels (17 pif + 19 paf), got shape {fields.shape}")


def group_pifpaf_fields(fields: np.ndarray, scheme: str = "eight") -> np.ndarray:
    """[1 + K, h, w] float: background then the K parts (max over each part's fields, clipped to [0, 1])."""
    _check_scheme(scheme)
    fields = _fields_first(fields)
    index = {name: i for i, name in enumerate(PIFPAF_FIELDS)}
    parts = [np.clip(fields[[index[f] for f in FIELD_GROUPS[scheme][p]]].max(axis=0), 0.0, 1.0)
             for p in PART_SCHEMES[scheme]]
    stack = np.stack(parts)
    background = np.clip(1.0 - stack.sum(axis=0), 0.0, 1.0)
    return np.concatenate([background[None], stack]).astype(np.float32)


def labels_from_fields(fields: np.ndarray, scheme: str = "eight", size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 [h, w] argmax labels (0 = background) of PifPaf fields; resized (bilinear on the
    grouped maps, as upstream resizes masks) to ``size`` = (height, width) when given."""
    grouped = group_pifpaf_fields(fields, scheme)
    if size is not None and tuple(grouped.shape[1:]) != tuple(size):
        import cv2

        grouped = np.stack([cv2.resize(g, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
                            for g in grouped])
    return grouped.argmax(axis=0).astype(np.uint8)


def read_label_file(path: Path, size: tuple[int, int] | None = None, scheme: str = "eight") -> np.ndarray:
    """uint8 [h, w] labels from a ``reid-labels`` file or a BPBReID/KPR PifPaf field file, resized
    (nearest for labels) to ``size`` = (height, width) when given."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read label file: {err}", path) from None
    if array.ndim == 3:
        try:
            return labels_from_fields(array, scheme, size)
        except ValueError as err:
            raise InputError(str(err), path) from None
    if array.ndim != 2:
        raise InputError(f"label file must hold [h, w] labels or [36, h, w] PifPaf fields, got {array.shape}", path)
    labels = array.astype(np.uint8)
    if labels.max(initial=0) > num_parts(scheme):
        raise InputError(f"labels go up to {labels.max()} but scheme {scheme!r} has {num_parts(scheme)} parts", path)
    if size is not None and labels.shape != tuple(size):
        import cv2

        labels = cv2.resize(labels, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
    return labels


# ---------------------------------------------------------------- SAM + PifPaf backend
#
# The seed's pipeline (KPR paper, "Keypoint and Human Parsing Annotations"): BPBReID's labels
# (``scripts/get_labels.py`` of VlSomers/bpbreid: openpifpaf ``shufflenetv2k16`` confidence fields,
# multiplied by a person mask resized to the field grid) with the person mask from Segment Anything
# prompted by the target's keypoints instead of Mask R-CNN's first instance.

_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything"
# Official SAM checkpoints (facebookresearch/segment-anything README). Upstream publishes no sha256
# (the name suffix is not one), so none is pinned here.
SAM_WEIGHTS: dict[str, WeightSpec] = {
    "vit_h": WeightSpec(f"{_SAM_URL}/sam_vit_h_4b8939.pth", meta={"arch": "vit_h"}),
    "vit_l": WeightSpec(f"{_SAM_URL}/sam_vit_l_0b3195.pth", meta={"arch": "vit_l"}),
    "vit_b": WeightSpec(f"{_SAM_URL}/sam_vit_b_01ec64.pth", meta={"arch": "vit_b"}),
}
# Channel of an openpifpaf CIF/CAF field that holds the confidence (BPBReID's get_labels: ``[:, :, 1]``).
PIFPAF_CONFIDENCE_CHANNEL = 1
_MISSING = ("method=sam_pifpaf needs the pip packages 'segment-anything' and 'openpifpaf' (pip install "
            "'kprtrack[labels]'; both need torchvision); install them or use method=keypoints")


def sam_pifpaf_available() -> bool:
    import importlib.util
    import sys

    return all(sys.modules.get(m) is not None or importlib.util.find_spec(m) is not None
               for m in ("segment_anything", "openpifpaf"))


def sam_prompt(keypoints: np.ndarray, negatives: np.ndarray | None = None, threshold: float = 0.3,
               size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SAM point prompt: ``(coords float32 [N, 2] (x, y), labels int32 [N])``, the target's keypoints
    with confidence > threshold as positives (1) then other people's as negatives (0); points outside
    the image of ``size`` = (height, width) are dropped."""
    def points(kps):
        kps = np.asarray(kps, np.float32).reshape(-1, 3)
        keep = np.isfinite(kps).all(axis=1) & (kps[:, 2] > threshold)
        if size is not None:
            keep &= (kps[:, 0] >= 0) & (kps[:, 0] < size[1]) & (kps[:, 1] >= 0) & (kps[:, 1] < size[0])
        return kps[keep, :2]

    pos = points(keypoints)
    neg = points(negatives) if negatives is not None and np.size(negatives) else np.zeros((0, 2), np.float32)
    coords = np.concatenate([pos, neg]).astype(np.float32)
    labels = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)])
    return coords, labels


def sam_target_mask(predictor, image: np.ndarray, keypoints: np.ndarray, negatives: np.ndarray | None = None,
                    threshold: float = 0.3, multimask: bool = False) -> np.ndarray | None:
    """bool [H, W] mask of the target from a ``segment_anything.SamPredictor`` prompted with its
    keypoints (see ``sam_prompt``; ``image`` RGB uint8). None when no keypoint is usable as a prompt."""
    coords, labels = sam_prompt(keypoints, negatives, threshold, image.shape[:2])
    if not (labels == 1).any():
        return None
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(point_coords=coords, point_labels=labels, multimask_output=multimask)
    masks = np.asarray(masks)
    best = int(np.argmax(np.asarray(scores).reshape(-1))) if masks.ndim == 3 and len(masks) > 1 else 0
    mask = masks[best] if masks.ndim == 3 else masks
    return np.asarray(mask).astype(bool)


def pifpaf_fields(predictor, image: np.ndarray) -> np.ndarray:
    """float32 [36, h, w] PifPaf confidence fields of ``image`` (RGB uint8) from an
    ``openpifpaf.Predictor``: 17 CIF then 19 CAF confidences, on the network's output grid (stride
    8), cut to the image's valid area (openpifpaf pads the input; BPBReID kept the padding)."""
    import openpifpaf

    data = openpifpaf.datasets.NumpyImageList([image], preprocess=predictor.preprocess, with_raw_image=True)
    _, processed, _, meta = data[0]
    cif, caf = predictor.processor.fields_batch(predictor.model, processed[None], device=predictor.device)[0][:2]
    fields = np.concatenate([np.asarray(cif)[:, PIFPAF_CONFIDENCE_CHANNEL],
                             np.asarray(caf)[:, PIFPAF_CONFIDENCE_CHANNEL]]).astype(np.float32)
    if fields.shape[0] != NUM_FIELDS:
        raise InputError(f"openpifpaf returned {fields.shape[0]} fields, expected {NUM_FIELDS} (17 CIF + 19 CAF "
                         "of a COCO-keypoint checkpoint such as shufflenetv2k16)")
    valid = (meta or {}).get("valid_area") if isinstance(meta, dict) else None
    return _crop_valid_area(fields, tuple(processed.shape[-2:]), valid)


def _crop_valid_area(fields: np.ndarray, processed_hw: tuple[int, int], valid) -> np.ndarray:
    if valid is None:
        return fields
    x, y, w, h = (float(v) for v in valid)
    gh, gw = fields.shape[1:]
    # field cell i sits on pixel i * stride (openpifpaf pads to 16 k + 1 so that (H - 1) / (h - 1) = stride)
    sy = (processed_hw[0] - 1) / (gh - 1) if gh > 1 else float(processed_hw[0])
    sx = (processed_hw[1] - 1) / (gw - 1) if gw > 1 else float(processed_hw[1])
    y0, x0 = max(0, int(np.floor(y / sy))), max(0, int(np.floor(x / sx)))
    y1, x1 = min(gh, int(np.ceil((y + h) / sy))), min(gw, int(np.ceil((x + w) / sx)))
    if y1 <= y0 or x1 <= x0:
        return fields
    return fields[:, y0:y1, x0:x1]


def masked_fields(fields: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Fields [36, h, w] times the target mask (any size; resized to the field grid as BPBReID does),
    so activations of other people are removed. ``mask`` None = no filtering."""
    fields = _fields_first(fields)
    if mask is None:
        return fields
    import cv2

    small = cv2.resize(np.asarray(mask, np.uint8), (fields.shape[2], fields.shape[1]), interpolation=cv2.INTER_LINEAR)
    return (fields * small[None].astype(np.float32)).astype(np.float32)


class SamPifPafLabeller:
    """The seed's labeller: ``labeller(image_bgr, keypoints, negatives) -> float32 [36, h, w]`` masked
    PifPaf fields. SAM (``segment_anything.sam_model_registry[sam_model]`` with the checkpoint
    ``sam_weights``: a ``SAM_WEIGHTS`` name, path or URL) and openpifpaf
    (``openpifpaf.Predictor(checkpoint=pifpaf_checkpoint)``, resolved by openpifpaf) load on first use.
    ``negatives=True`` also passes other people's keypoints as negative SAM points (the seed prompts
    with the target's keypoints only)."""

    def __init__(self, sam_model: str = "vit_h", sam_weights: str | None = None,
                 pifpaf_checkpoint: str = "shufflenetv2k16", threshold: float = 0.3, negatives: bool = False,
                 multimask: bool = False, device: str | None = None, download: bool = True):
        if not sam_pifpaf_available():
            raise InputError(_MISSING)
        self.sam_model, self.sam_weights = str(sam_model), str(sam_weights or sam_model)
        self.pifpaf_checkpoint, self.threshold = str(pifpaf_checkpoint), float(threshold)
        self.negatives, self.multimask, self.device, self.download = bool(negatives), bool(multimask), device, download
        self._sam = self._pifpaf = None
        self.unprompted = 0  # crops without a usable keypoint: fields kept unmasked

    @property
    def sam(self):
        if self._sam is None:
            import segment_anything

            if self.sam_model not in segment_anything.sam_model_registry:
                raise InputError(f"unknown SAM model {self.sam_model!r} "
                                 f"(known: {', '.join(segment_anything.sam_model_registry)})")
            path = resolve_weights(self.sam_weights, SAM_WEIGHTS, download=self.download)
            model = segment_anything.sam_model_registry[self.sam_model](checkpoint=str(path))
            device = self.device or _default_device()
            if hasattr(model, "to"):
                model = model.to(device)
            self._sam = segment_anything.SamPredictor(model)
        return self._sam

    @property
    def pifpaf(self):
        if self._pifpaf is None:
            import openpifpaf

            self._pifpaf = openpifpaf.Predictor(checkpoint=self.pifpaf_checkpoint)
        return self._pifpaf

    def __call__(self, image_bgr: np.ndarray, keypoints: np.ndarray, negatives: np.ndarray | None = None) -> np.ndarray:
        rgb = np.ascontiguousarray(np.asarray(image_bgr)[:, :, ::-1])
        fields = pifpaf_fields(self.pifpaf, rgb)
        mask = sam_target_mask(self.sam, rgb, keypoints, negatives if self.negatives else None, self.threshold,
                               self.multimask)
        if mask is None:
            self.unprompted += 1
        return masked_fields(fields, mask)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def sam_pifpaf_labeller(scheme: str = "eight", **options) -> SamPifPafLabeller:
    """``SamPifPafLabeller(**options)``; one InputError naming the pip packages when they are missing."""
    _check_scheme(scheme)
    return SamPifPafLabeller(**options)


# ---------------------------------------------------------------- command

def label_path(output: Path, crop_file: str) -> Path:
    return Path(output) / Path(crop_file).with_suffix(".npy")


def write_labels(dataset_dir: Path, output: Path, method: str = "keypoints", scheme: str = "eight",
                 threshold: float = 0.3, thickness: float = THICKNESS,
                 splits: Sequence[str] = ("train", "query", "gallery"), sam_pifpaf: dict | None = None) -> dict:
    """Label every crop of the data set's splits; returns a summary. ``method=keypoints`` writes
    uint8 [h, w] labels; ``method=sam_pifpaf`` writes float32 [36, h', w'] masked PifPaf fields (the
    BPBReID/KPR label content, grouped into parts by ``read_label_file``) at the same paths;
    ``sam_pifpaf`` = options of ``SamPifPafLabeller``."""
    from kprtrack.reid.evaluate import crop_keypoints, load_split, read_crop

    _check_scheme(scheme)
    labeller = None
    if method == "sam_pifpaf":
        labeller = sam_pifpaf_labeller(scheme, threshold=threshold, **(sam_pifpaf or {}))
    elif method != "keypoints":
        raise InputError(f"unknown labelling method {method!r} (keypoints or sam_pifpaf)")
    dataset_dir, output = Path(dataset_dir), Path(output)
    counts: dict[str, int] = {}
    pixels = np.zeros(1 + num_parts(scheme), np.int64)
    for split in splits:
        path = dataset_dir / "splits" / f"{split}.json"
        if not path.is_file():
            continue
        records = load_split(dataset_dir, split)
        for record in records:
            positive, negative = crop_keypoints(record, path)
            if labeller is not None:
                fields = labeller(read_crop(dataset_dir, record), positive, negative)
                stored = fields.astype(np.float32)
                labels = labels_from_fields(fields, scheme)
            else:
                height, width = _crop_size(dataset_dir, record)
                labels = stored = keypoint_part_labels(positive, height, width, scheme, threshold, thickness)
            with atomic_open(label_path(output, record["file"]), "wb") as handle:  # whole or absent
                np.save(handle, stored)
            pixels += np.bincount(labels.ravel(), minlength=len(pixels))[:len(pixels)]
        counts[split] = len(records)
    if not counts:
        raise InputError("no split file found; build the data set first with `python -m kprtrack reid-dataset`",
                         dataset_dir / "splits")
    fmt = ("float32 [36, h, w] PifPaf confidence fields (17 CIF + 19 CAF) masked by SAM, per crop"
           if labeller is not None else "uint8 [h, w] per crop, 0 = background, 1..K = parts")
    summary = {"format": fmt, "method": method,
               "scheme": scheme, "parts": list(PART_SCHEMES[scheme]), "threshold": threshold,
               "thickness": thickness, "crops": counts,
               "pixel_share": (pixels / max(1, pixels.sum())).round(4).tolist()}
    if labeller is not None:
        summary.update(sam_model=labeller.sam_model, sam_weights=labeller.sam_weights,
                       pifpaf_checkpoint=labeller.pifpaf_checkpoint, negatives=labeller.negatives,
                       unprompted=labeller.unprompted)
    write_json(output / "labels.json", summary, indent=2)
    return summary


def _crop_size(dataset_dir: Path, record: dict) -> tuple[int, int]:
    if record.get("height") and record.get("width"):
        return int(record["height"]), int(record["width"])
    from kprtrack.reid.evaluate import read_crop

    return read_crop(dataset_dir, record).shape[:2]


def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from kprtrack.config import compose_command

    cfg = compose_command("reid_labels", argv)
    if cfg is None:
        return 0
    if OmegaConf.is_missing(cfg, "dataset_dir"):
        raise InputError("reid-labels needs dataset_dir=<folder written by reid-dataset>")
    dataset_dir = Path(str(cfg.dataset_dir)).expanduser()
    output = Path(str(cfg.output)).expanduser() if cfg.get("output") else dataset_dir / "labels"
    sam = cfg.get("sam_pifpaf")
    sam = OmegaConf.to_container(sam, resolve=True) if sam is not None else None
    summary = write_labels(dataset_dir, output, str(cfg.method), str(cfg.scheme), float(cfg.threshold),
                           float(cfg.thickness), list(cfg.splits), sam)
    crops = ", ".join(f"{k}: {v}" for k, v in summary["crops"].items())
    print(f"{summary['method']} labels ({summary['scheme']}: {', '.join(summary['parts'])}) for {crops} crops "
          f"written to {output}")
    return 0
