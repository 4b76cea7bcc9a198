"""``pose=hrnet``: HRNet-W32/W48 top-down heatmap pose in PyTorch (mmpose / original weights)."""
from __future__ import annotations

import logging

import numpy as np

from kprtrack.errors import InputError
from kprtrack.pose.heatmaps import decode_heatmaps, flip_back, heatmap_to_input_scale
from kprtrack.pose.hrnet_checkpoint import (
    HRNET_WEIGHTS, adapt_keys, decode_from_meta, hints_from_file_name, infer_arch, input_size_from_meta,
    layout_from_meta, load_into, read_checkpoint)
from kprtrack.pose.layouts import check_layout, flip_index
from kprtrack.pose.topdown import TopDownEstimator

log = logging.getLogger(__name__)

# ImageNet statistics on 0-255 RGB, as in mmpose's PoseDataPreprocessor.
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def normalise(crops: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] RGB crops -> float32 [N, 3, H, W] network input (ImageNet mean / std)."""
    return np.ascontiguousarray(((crops.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2))


def udp_center_scale(centers: np.ndarray, scales: np.ndarray,
                     input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """mmpose's UDP crop (``get_udp_warp_matrix``: frame point ``center - scale/2`` -> input pixel 0,
    ``center + scale/2`` -> input pixel w-1) as the (center, scale) that kprtrack.pose.topdown's
    non-UDP warp (``warp_matrices``, ``to_frame``, ``to_input``) needs for the same affine map: the
    scale widened by input / (input - 1) about the same top-left corner. ``input_size`` is (h, w).

    With these, ``to_frame`` of a point in UDP input pixels is mmpose's UDP inverse, and a
    training crop made with them is the crop a UDP-trained mmpose model saw."""
    size = np.array(input_size[::-1], dtype=np.float64)  # (w, h)
    scales = np.asarray(scales, dtype=np.float64)
    wide = scales * size / (size - 1)
    return np.asarray(centers, dtype=np.float64) + (wide - scales) / 2, wide


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"pose.device={device} but torch sees no CUDA device")
    return device


class HRNetPose(TopDownEstimator):
    """Top-down HRNet. ``weights``: registry name, path or URL; ``None`` = random init (tests).

    ``arch``, ``input_size`` (h, w) and ``layout`` default to what the checkpoint says (mmpose
    meta: data set, config text), then the registry entry, then an official file name
    (``..._posetrack18_384x288-...pth``). A file that says nothing: input 256x192 with a warning;
    its layout is COCO for the original HRNet release (which has no PoseTrack model) and an error
    naming ``pose.layout`` for mmpose files (a PoseTrack model read as COCO would swap joints).

    ``decode``: argmax | dark | udp; None = what the checkpoint says (``udp`` for a UDP-trained
    model: kprtrack fine-tune meta ``codec: udp``, mmpose ``UDPHeatmap`` / ``use_udp``), else argmax.
    ``udp`` also crops with UDP's warp (:func:`udp_center_scale`), maps heatmap pixels to input
    pixels by (input-1)/(heatmap-1) and flips back without the one-pixel shift (``shift_heatmap``
    is ignored then), as mmpose does for UDP models.
    """

    def __init__(self, weights: str | None = "hrnet_w32_posetrack18_256x192", arch: str | None = None,
                 input_size: tuple[int, int] | list[int] | None = None, layout: str | None = None,
                 flip_test: bool = True, shift_heatmap: bool = True, decode: str | None = None,
                 padding: float = 1.25, batch_size: int = 32, device: str = "auto",
                 strict: bool = True, download: bool = True):
        import torch

        from kprtrack.pose.hrnet_net import PoseHighResolutionNet
        from kprtrack.weights import resolve_weights

        spec = HRNET_WEIGHTS.get(str(weights)) if weights is not None else None
        meta = dict(spec.meta) if spec else {}
        state, ckpt_meta, fmt = None, {}, "random-init"
        self.weights_path = None  # the stage cache keys on the file's checksum
        if weights is not None:
            path = self.weights_path = resolve_weights(str(weights), HRNET_WEIGHTS, download=download)
            raw, ckpt_meta = read_checkpoint(path)
            state, fmt = adapt_keys(raw)
            if fmt == "unknown":
                raise InputError("no HRNet head found (expected head.final_layer.*, "
                                 "keypoint_head.final_layer.* or final_layer.* keys)", path)
        found_arch = infer_arch(state) if state else None
        if arch is not None and found_arch is not None and arch != found_arch:
            raise InputError(f"pose.arch={arch} but the checkpoint is HRNet-{found_arch.upper()}",
                             str(weights))
        self.arch = arch or found_arch or meta.get("arch") or "w32"
        name_layout, name_size = hints_from_file_name(self.weights_path) if self.weights_path else (None, None)
        found_size = input_size_from_meta(ckpt_meta) or meta.get("input_size") or name_size
        if input_size is None and found_size is None and state is not None:
            log.warning("HRNet checkpoint %s does not say its input size: using 256x192 "
                        "(set pose.input_size=[384,288] for a 384x288 model)", weights)
        self.input_size = tuple(int(v) for v in (input_size or found_size or (256, 192)))
        # four stride-2 steps below the stem's /4: sides must split evenly into 1/32 branches
        if len(self.input_size) != 2 or any(v < 32 or v % 32 for v in self.input_size):
            raise InputError(f"pose.input_size must be [height, width], multiples of 32, got "
                             f"{list(self.input_size)}")
        found_layout = layout_from_meta(ckpt_meta) or meta.get("layout") or name_layout
        if found_layout is None and fmt == "original":
            found_layout = "coco"  # the HRNet authors released COCO (17) and MPII (16) models only
        if layout is None and found_layout is None and state is not None:
            raise InputError("cannot tell whether this HRNet checkpoint predicts COCO or PoseTrack joints "
                             "(its meta names no data set): set pose.layout=posetrack for a "
                             "PoseTrack18-trained model or pose.layout=coco", str(weights))
        self.layout = self._pick_layout(layout, found_layout)
        self.flip_test, self.shift_heatmap = bool(flip_test), bool(shift_heatmap)
        found_decode = decode_from_meta(ckpt_meta)
        if decode is not None and found_decode is not None and decode != found_decode:
            log.warning("pose.decode=%s overrides the checkpoint's %s decoding", decode, found_decode)
        self.decode, self.padding = decode or found_decode or "argmax", float(padding)
        decode_heatmaps(np.zeros((1, 1, 3, 3), np.float32), self.decode)  # reject a bad name now
        self.batch_size = max(1, int(batch_size))
        self.device = pick_device(device)
        self.model = PoseHighResolutionNet(self.arch)
        self.report = None
        if state is not None:
            self.report = load_into(self.model, state, fmt)
            log.info("HRNet weights %s: %s", weights, self.report.summary())
            if strict and not self.report.ok:
                raise InputError(f"checkpoint does not fit HRNet-{self.arch.upper()}: "
                                 f"{self.report.summary()} (pose.strict=false loads what fits)",
                                 str(weights))
        self.model.eval().to(self.device)
        self._flip_index = flip_index(self.layout)
        self._torch = torch

    @staticmethod
    def _pick_layout(asked: str | None, known: str | None) -> str:
        if asked is not None and known is not None and asked != known:
            log.warning("pose.layout=%s overrides the checkpoint's %s layout", asked, known)
        return check_layout(asked or known or "coco")

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        heatmaps = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                chunk = torch.from_numpy(batch[start:start + self.batch_size]).to(self.device)
                heatmaps.append(self.model(chunk).float().cpu().numpy())
        return np.concatenate(heatmaps)

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 RGB crops -> [N, 17, H/4, W/4] heatmaps (flip-averaged if asked)."""
        normalised = normalise(crops)
        maps = self._forward(normalised)
        if self.flip_test:
            flipped = self._forward(np.ascontiguousarray(normalised[..., ::-1]))
            shift = self.shift_heatmap and self.decode != "udp"
            maps = (maps + flip_back(flipped, self._flip_index, shift)) / 2
        return maps

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        maps = self.heatmaps(crops)
        kpts = decode_heatmaps(maps, self.decode)
        kpts[..., :2] *= heatmap_to_input_scale(self.decode, self.input_size, maps.shape[2:])
        return kpts

    def _crop_geometry(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """UDP models are cropped with UDP's geometry (mmpose's use_udp warp)."""
        centers, scales = super()._crop_geometry(boxes)
        if self.decode != "udp":
            return centers, scales
        return udp_center_scale(centers, scales, self.input_size)
