"""Shared top-down machinery: box -> crop -> model -> keypoints back in frame pixels.

Every top-down backend (HRNet, MoveNet) uses the same geometry so the crop, warp and
back-projection are tested once. Conventions follow mmpose 1.x (non-UDP): a box is padded
(x1.25), widened or heightened to the model's aspect ratio, and the square/rectangle of that
``scale`` centred on the box centre is mapped affinely onto the model input. A point ``p`` in
input pixels maps back to ``p / input_size * scale + center - scale / 2``.
"""
from __future__ import annotations

import numpy as np

from kprtrack.errors import InputError
from kprtrack.pose.layouts import check_layout, to_posetrack, warn_approximate_head
from kprtrack.record import NUM_KEYPOINTS, Detections, Frame
from kprtrack.stages import IMAGE

MIN_BOX_SIZE = 2.0  # px; narrower or flatter boxes hold no person worth a pose


def box_to_center_scale(boxes: np.ndarray, input_size: tuple[int, int],
                        padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """x1y1x2y2 boxes -> (centers [N,2], scales [N,2] as (w,h)) at the input's aspect ratio.

    ``input_size`` is (height, width) of the model input.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    scales = (boxes[:, 2:] - boxes[:, :2]) * padding
    aspect = input_size[1] / input_size[0]  # w / h
    w, h = scales[:, 0].copy(), scales[:, 1].copy()
    too_wide = w > h * aspect
    h[too_wide] = w[too_wide] / aspect
    w[~too_wide] = h[~too_wide] * aspect
    return centers, np.stack([w, h], axis=1)


def warp_matrices(centers: np.ndarray, scales: np.ndarray,
                  input_size: tuple[int, int]) -> np.ndarray:
    """[N, 2, 3] affine matrices taking frame pixels to model-input pixels (no rotation)."""
    out_h, out_w = input_size
    sx = out_w / scales[:, 0]
    sy = out_h / scales[:, 1]
    origin = centers - scales / 2
    mats = np.zeros((len(centers), 2, 3), dtype=np.float64)
    mats[:, 0, 0], mats[:, 0, 2] = sx, -origin[:, 0] * sx
    mats[:, 1, 1], mats[:, 1, 2] = sy, -origin[:, 1] * sy
    return mats


def to_input(points: np.ndarray, centers: np.ndarray, scales: np.ndarray,
             input_size: tuple[int, int]) -> np.ndarray:
    """Frame pixels [N, K, 2] -> model-input pixels, the forward of ``to_frame``."""
    size = np.array(input_size[::-1], dtype=np.float64)
    origin = centers - scales / 2
    return (points - origin[:, None]) / scales[:, None] * size


def to_frame(points: np.ndarray, centers: np.ndarray, scales: np.ndarray,
             input_size: tuple[int, int]) -> np.ndarray:
    """Model-input pixels [N, K, 2] -> frame pixels (inverse of the crop warp)."""
    size = np.array(input_size[::-1], dtype=np.float64)
    return points / size * scales[:, None] + (centers - scales / 2)[:, None]


def crop_batch(image: np.ndarray, centers: np.ndarray, scales: np.ndarray,
               input_size: tuple[int, int], rgb: bool = True) -> np.ndarray:
    """All crops of one frame as [N, H, W, 3] uint8 (RGB when ``rgb``), zero outside the frame."""
    import cv2

    out_h, out_w = input_size
    crops = np.zeros((len(centers), out_h, out_w, 3), dtype=np.uint8)
    source = image[..., ::-1] if rgb else image
    source = np.ascontiguousarray(source)
    for i, mat in enumerate(warp_matrices(centers, scales, input_size)):
        cv2.warpAffine(source, mat, (out_w, out_h), dst=crops[i], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crops


def usable_boxes(boxes: np.ndarray, width: int, height: int,
                 min_size: float = MIN_BOX_SIZE) -> np.ndarray:
    """Boolean mask of boxes that are finite, at least ``min_size`` px each way and touch the frame."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(boxes).all(axis=1)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        big = (w >= min_size) & (h >= min_size)
        inside = (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
    return finite & big & inside


class TopDownEstimator:
    """Base for PoseEstimator backends that run a single-person model on each box.

    Subclasses set ``input_size`` (h, w), ``layout`` (the model's joint order) and implement
    ``_infer(crops) -> [N, 17, 3]`` keypoints in model-input pixels with scores.
    """

    input_size: tuple[int, int]
    layout: str
    weights_path: str | None = None  # subclasses set their file (the stage cache keys on it)
    requires = frozenset({IMAGE, "boxes"})
    provides = frozenset({"keypoints"})
    padding: float = 1.25
    min_box_size: float = MIN_BOX_SIZE

    def _infer(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def estimate_native(self, frame: Frame, boxes: np.ndarray) -> np.ndarray:
        """Keypoints [N, 17, 3] in frame pixels in the MODEL's layout; zeros for unusable boxes."""
        image = self._frame_image(frame)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = np.zeros((len(boxes), NUM_KEYPOINTS, 3), dtype=np.float32)
        keep = usable_boxes(boxes, image.shape[1], image.shape[0], self.min_box_size)
        if not keep.any():
            return out
        centers, scales = self._crop_geometry(boxes[keep])
        crops = crop_batch(image, centers, scales, self.input_size, rgb=True)
        kpts = np.asarray(self._infer(crops), dtype=np.float64)
        kpts[..., :2] = to_frame(kpts[..., :2], centers, scales, self.input_size)
        out[keep] = kpts.astype(np.float32)
        return out

    def _crop_geometry(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(centres, scales) of the crops of these boxes."""
        return box_to_center_scale(boxes, self.input_size, self.padding)

    def estimate(self, frame: Frame, detections: Detections) -> Detections:
        native = self.estimate_native(frame, detections.boxes)
        if check_layout(self.layout) == "coco":
            warn_approximate_head(type(self).__name__)
        keypoints = to_posetrack(native, self.layout)
        return detections.with_(keypoints=keypoints.astype(np.float32))

    @staticmethod
    def _frame_image(frame: Frame) -> np.ndarray:
        image = frame.image
        where = frame.file_name or f"{frame.sequence}[{frame.index}]"
        if image is None:
            raise InputError("frame has no decoded image; pose estimation needs pixels", where)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"expected an HxWx3 uint8 BGR image, got {image.dtype} "
                             f"{tuple(image.shape)}", where)
        return image
