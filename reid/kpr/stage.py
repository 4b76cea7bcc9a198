"""``reid=kpr``: the KPR ReID stage (prompts from the frame's keypoints, batched inference)."""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch

from kprtrack.errors import InputError, MissingModelError
from kprtrack.record import Detections, Frame
from kprtrack.stages import IMAGE
from kprtrack.reid.body_parts import PART_SCHEMES
from kprtrack.reid.crops import IMAGENET_MEAN, IMAGENET_STD, crop_boxes, normalise, resize_images
from kprtrack.reid.kpr.checkpoint import checkpoint_settings, load_strict, read_checkpoint, unsupported_features
from kprtrack.reid.kpr.model import GLOBAL_EMBEDDINGS, KPR, PART_EMBEDDINGS, KPRArch
from kprtrack.reid.kpr.registry import KPR_WEIGHTS
from kprtrack.reid.kpr.solider import SOLIDER_SPECS
from kprtrack.reid.kpr.swin import SWIN_SPECS
from kprtrack.reid.prompts import PROMPT_GROUPS, build_prompt, frame_prompts
from kprtrack.runtime import reuse_freed_memory_for_cpu_inference
from kprtrack.weights import resolve_weights

class KPRReID:
    """Keypoint Promptable ReID. Constructor keywords are the ``reid`` config keys."""

    def __init__(self, weights: str | None = "kpr_occ_pt_IN",
                 backbone: str = "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k",
                 parts: str = "eight", prompt_parts: str = "cck8", dim: int = 512,
                 height: int = 256, width: int = 128,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 prompts: bool = True, use_negative_keypoints: bool = True, vis_thresh: float = 0.3,
                 test_embeddings: Sequence[str] | None = None, binary_visibility: bool | None = None,
                 semantic_weight: float | None = None,
                 batch_size: int = 32, device: str = "auto", config_conflicts: str = "error",
                 download: bool = True, cpu_malloc: str = "reuse"):
        if cpu_malloc not in ("reuse", "system"):
            raise InputError(f"reid.cpu_malloc must be 'reuse' or 'system', got {cpu_malloc!r}")
        if config_conflicts not in ("error", "use_checkpoint"):
            raise InputError(f"reid.config_conflicts must be 'error' or 'use_checkpoint', got {config_conflicts!r}")
        settings = dict(backbone=backbone, parts=parts, prompt_parts=prompt_parts, dim=int(dim), height=int(height),
                        width=int(width), mean=[float(v) for v in mean], std=[float(v) for v in std],
                        use_negative_keypoints=bool(use_negative_keypoints), prompts=bool(prompts),
                        vis_thresh=float(vis_thresh),
                        test_embeddings=None if test_embeddings is None else [str(v) for v in test_embeddings],
                        binary_visibility=None if binary_visibility is None else bool(binary_visibility),
                        semantic_weight=None if semantic_weight is None else float(semantic_weight))
        state = None
        self.weights_path = None
        if weights:
            spec = KPR_WEIGHTS.get(str(weights))
            manual = spec is not None and spec.meta.get("manual_download")
            try:
                self.weights_path = resolve_weights(weights, KPR_WEIGHTS, download=download and not manual)
            except InputError as err:
                raise InputError(f"{err} (or track with a ReID that needs no KPR weights: reid=part_colors, "
                                 f"or reid=onnx reid.model=<file.onnx>)") from None
            state, stored = read_checkpoint(self.weights_path)
            unsupported = unsupported_features(stored)
            if unsupported:
                raise InputError("checkpoint uses KPR options kprtrack does not implement: " + "; ".join(unsupported),
                                 self.weights_path)
            settings = _reconcile(settings, checkpoint_settings(state, stored), config_conflicts, self.weights_path)
        else:
            warnings.warn("reid=kpr without weights: random initialisation, embeddings carry no identity "
                          "information (fine for tests and benchmarks only)", stacklevel=2)
        self.settings = settings
        self.arch = _arch(settings, state)
        self.model = KPR(self.arch)
        if state is not None:
            load_strict(self.model, state, self.weights_path)
        self.device = _device(device)
        if self.device.type == "cpu" and cpu_malloc == "reuse":
            # glibc's malloc settings are process-wide: a constructor must not change them on its own. This
            # asks for them; granted only where the process opted in (the CLI does; kprtrack/runtime.py).
            reuse_freed_memory_for_cpu_inference()
        self.model.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))
        self.part_names = ("foreground",) + PART_SCHEMES.get(settings["parts"], tuple(
            f"part{i}" for i in range(1, self.arch.parts_num + 1)))

    provides = frozenset({"embeddings", "visibility"})

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({IMAGE, "boxes", "keypoints"} if self.supports_prompts else {IMAGE, "boxes"})

    @property
    def supports_prompts(self) -> bool:
        """Read by ReID evaluation: with prompts off the "with prompt" column would be a copy."""
        return bool(self.settings["prompts"])

    @property
    def size(self) -> tuple[int, int]:
        return self.arch.height, self.arch.width

    def embed(self, frame: Frame, detections: Detections) -> Detections:
        """Fill embeddings [N, 1+K, D] and visibility [N, 1+K] for every person of the frame."""
        if len(detections) == 0:
            emb, vis = self._run(np.zeros((0, *self.size, 3), np.uint8), None)
            return detections.with_(embeddings=emb, visibility=vis)
        crops, valid, clipped = crop_boxes(frame.image, detections.boxes, self.size)
        prompts = None
        if self.settings["prompts"] and detections.keypoints is not None:
            prompts = frame_prompts(detections.keypoints, clipped, self.size, self.settings["prompt_parts"],
                                    self.arch.use_negative_keypoints, self.settings["vis_thresh"])
        emb, vis = self._run(crops, prompts)
        if not valid.all():
            # No pixel of the box is in the frame: no appearance; zero visibility keeps the tracker
            # from matching on it instead of matching on a black crop.
            emb[~valid] = 0.0
            vis[~valid] = 0.0
        return detections.with_(embeddings=emb, visibility=vis)

    def embed_crops(self, images: list[np.ndarray], keypoints_pos: np.ndarray | list | None = None,
                    keypoints_neg: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embed already-cut person crops (BGR uint8, any size).

        keypoints_pos: [N, 17, 3] (x, y, conf) in each crop's own pixels, or None (no prompts);
        keypoints_neg: N arrays [M_i, 17, 3] of other people's keypoints in the same crop pixels
        (M_i may be 0), or None. Keypoints outside the crop are ignored.
        Returns (embeddings [N, 1+K, D] float32, visibility [N, 1+K] float32).
        """
        crops = resize_images(images, self.size)
        prompts = None
        if self.settings["prompts"] and keypoints_pos is not None:
            if len(keypoints_pos) != len(images) or (keypoints_neg is not None and len(keypoints_neg) != len(images)):
                raise InputError(f"{len(images)} crops but {len(keypoints_pos)} positive / "
                                 f"{'no' if keypoints_neg is None else len(keypoints_neg)} negative keypoint sets")
            prompts = np.stack([
                build_prompt(_scale(keypoints_pos[i], images[i], self.size),
                             None if keypoints_neg is None else _scale(keypoints_neg[i], images[i], self.size),
                             self.size, self.settings["prompt_parts"], self.arch.use_negative_keypoints,
                             self.settings["vis_thresh"])
                for i in range(len(images))])
        return self._run(crops, prompts)

    @torch.inference_mode()
    def _run(self, crops: np.ndarray, prompts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if len(crops) == 0:  # no people: the layout of a frame with people, [0, 1+K, D] / [0, 1+K]
            parts = 1 + self.arch.parts_num
            return np.zeros((0, parts, self.arch.dim_reduce_output), np.float32), np.zeros((0, parts), np.float32)
        x = normalise(crops, self.settings["mean"], self.settings["std"], to_rgb=True)
        embs, viss = [], []
        for start in range(0, len(x), self.batch_size):
            images = torch.from_numpy(x[start:start + self.batch_size]).to(self.device)
            prompt = None if prompts is None else torch.from_numpy(prompts[start:start + self.batch_size]).to(self.device)
            emb, vis = self.model(images, prompt)
            embs.append(emb.float().cpu().numpy())
            viss.append(vis.float().cpu().numpy())
        return np.concatenate(embs).astype(np.float32), np.concatenate(viss).astype(np.float32)


def _scale(keypoints, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop-pixel keypoints -> model-input pixels; outside the crop -> confidence 0."""
    k = np.array(keypoints, np.float32, copy=True).reshape(-1, 17, 3) if keypoints is not None and len(keypoints) \
        else np.zeros((0, 17, 3), np.float32)
    h, w = image.shape[:2]
    inside = (k[..., 0] >= 0) & (k[..., 0] < w) & (k[..., 1] >= 0) & (k[..., 1] < h)
    k[..., 0] *= size[1] / w
    k[..., 1] *= size[0] / h
    k[..., 2] = np.where(inside, k[..., 2], 0.0)
    return k[0] if np.ndim(keypoints) == 2 else k


def _arch_name(backbone: str) -> str:
    return str(backbone).split(".")[0]


def _same(key: str, mine, theirs) -> bool:
    if key == "backbone":
        return _arch_name(mine) == _arch_name(theirs)
    if key in ("mean", "std"):
        return len(mine) == len(theirs) and all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(mine, theirs))
    if isinstance(mine, float) or isinstance(theirs, float):
        return math.isclose(float(mine), float(theirs), abs_tol=1e-6)
    return mine == theirs


def _reconcile(settings: dict, stored: dict, policy: str, path) -> dict:
    stored = dict(stored)
    # Test-time options left unset take the checkpoint's (as upstream runs it); set ones are compared.
    for key in UNSET_FROM_CHECKPOINT:
        if settings.get(key) is None and stored.get(key) is not None:
            settings = {**settings, key: stored.pop(key)}
    trained_with_prompts = stored.pop("masks_prompting", True)
    settings = {**settings, "masks_prompting": bool(trained_with_prompts)}
    if settings["prompts"] and not trained_with_prompts:
        # Prompting off for a prompt-trained model is a legitimate choice (no-prompt input);
        # prompts for a model without a prompt tokenizer would be silently ignored.
        stored["prompts"] = False
    k = stored.pop("parts_num", None)
    if k is not None and "parts" not in stored:
        stored["parts"] = next((name for name, p in PART_SCHEMES.items() if len(p) == k), f"{k} parts")
    if k is not None and len(PART_SCHEMES.get(stored["parts"], ())) not in (0, k):
        stored["parts"] = f"{stored['parts']} ({k} parts)"
    conflicts = [(key, settings[key], value) for key, value in stored.items()
                 if key in settings and not _same(key, settings[key], value)]
    if not conflicts:
        return settings
    listing = ", ".join(f"reid.{key}={mine!r} but checkpoint has {theirs!r}" for key, mine, theirs in conflicts)
    if policy == "error":
        preset = any(key == "backbone" and _arch_name(theirs) in SOLIDER_SPECS for key, _, theirs in conflicts)
        raise InputError(f"configuration conflicts with the checkpoint: {listing} (set these keys to the "
                         f"checkpoint's values{', e.g. with reid=kpr_sol' if preset else ''}, or "
                         f"reid.config_conflicts=use_checkpoint)", path)
    warnings.warn(f"{path}: using the checkpoint's values instead of the configuration: {listing}", stacklevel=3)
    return {**settings, **{key: theirs for key, _, theirs in conflicts}}


UNSET_FROM_CHECKPOINT = ("test_embeddings", "binary_visibility", "semantic_weight")
DEFAULT_SEMANTIC_WEIGHT = 0.2  # upstream default_config model.solider.semantic_weight
DEFAULT_TEST_EMBEDDINGS = ("bn_foreg", "parts")


def _test_embeddings(names) -> tuple[str, str]:
    names = tuple(DEFAULT_TEST_EMBEDDINGS if names is None else names)
    if len(names) != 2 or names[0] not in GLOBAL_EMBEDDINGS or names[1] not in PART_EMBEDDINGS:
        raise InputError(f"reid.test_embeddings={list(names)} is not supported: the tracker takes one global "
                         f"embedding then the K parts, [one of {', '.join(GLOBAL_EMBEDDINGS)}, one of "
                         f"{', '.join(PART_EMBEDDINGS)}]")
    return names


def _arch(settings: dict, state: dict | None) -> KPRArch:
    backbone = _arch_name(settings["backbone"])
    if backbone not in SWIN_SPECS and backbone not in SOLIDER_SPECS:
        raise MissingModelError(f"KPR backbone {settings['backbone']!r} is not implemented "
                                f"(available: {', '.join([*SWIN_SPECS, *SOLIDER_SPECS])})")
    if settings["prompt_parts"] not in PROMPT_GROUPS:
        raise InputError(f"reid.prompt_parts={settings['prompt_parts']!r} unknown (known: {', '.join(PROMPT_GROUPS)})")
    parts = PART_SCHEMES.get(settings["parts"])
    if parts is None:
        raise InputError(f"reid.parts={settings['parts']!r} unknown (known: {', '.join(PART_SCHEMES)})")
    extra = {}
    if state is not None:
        w = state.get("global_identity_classifier.classifier.weight")
        extra["num_classes"] = 0 if w is None else int(w.shape[0])
        extra["shared_parts_id_classifier"] = "parts_identity_classifier.bn.weight" in state
        sie = state.get("backbone_appearance_feature_extractor.sie_embed")
        extra["sie_tokens"] = 0 if sie is None else int(sie.shape[0])
    return KPRArch(backbone=settings["backbone"], height=settings["height"], width=settings["width"],
                   parts_num=len(parts), prompt_parts_num=len(PROMPT_GROUPS[settings["prompt_parts"]]),
                   use_negative_keypoints=settings["use_negative_keypoints"],
                   masks_prompting=settings.get("masks_prompting", True),
                   dim_reduce_output=settings["dim"], test_embeddings=_test_embeddings(settings.get("test_embeddings")),
                   binary_visibility=settings.get("binary_visibility") is not False,
                   semantic_weight=DEFAULT_SEMANTIC_WEIGHT if settings.get("semantic_weight") is None
                   else settings["semantic_weight"], **extra)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"reid.device={name!r} is not a torch device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"reid.device={name!r} but CUDA is not available (use reid.device=cpu)")
    return device
