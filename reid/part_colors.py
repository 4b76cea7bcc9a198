"""``reid=part_colors``: a training-free part-based appearance descriptor.

Same output contract as KPR (embeddings [N, 1+K, D], visibility [N, 1+K], index 0 = foreground),
so the tracker is exercised exactly as with KPR. Each body part's region is the union of its limb
segments drawn thick between keypoints; its descriptor is an L1-normalised hue-saturation
histogram plus a value histogram of the pixels in the region, square-rooted so that Euclidean
distance of L2-normalised vectors behaves like the Hellinger distance.
"""
from __future__ import annotations

import cv2
import numpy as np

from kprtrack.record import Detections, Frame
from kprtrack.stages import IMAGE
from kprtrack.reid.body_parts import EIGHT_PARTS


class PartColorsReID:
    requires = frozenset({IMAGE, "boxes", "keypoints"})  # parts are drawn from the keypoints
    provides = frozenset({"embeddings", "visibility"})
    weights_path = None

    def __init__(self, hue_bins: int = 12, sat_bins: int = 4, val_bins: int = 6,
                 keypoint_threshold: float = 0.3, thickness: float = 0.12, min_pixels: int = 20,
                 max_side: int = 128):
        self.parts = EIGHT_PARTS
        self.hue_bins, self.sat_bins, self.val_bins = hue_bins, sat_bins, val_bins
        self.keypoint_threshold = keypoint_threshold
        self.thickness = thickness  # limb thickness as a fraction of the box height
        self.min_pixels = min_pixels
        self.max_side = max_side  # crops are shrunk to this height: colour needs no detail
        self.dim = hue_bins * sat_bins + val_bins

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    def embed(self, frame: Frame, detections: Detections) -> Detections:
        n, k = len(detections), self.num_parts
        embeddings = np.zeros((n, 1 + k, self.dim), np.float32)
        visibility = np.zeros((n, 1 + k), np.float32)
        if n and frame.image is not None:
            hsv = cv2.cvtColor(frame.image, cv2.COLOR_BGR2HSV)
            for i in range(n):
                kps = None if detections.keypoints is None else detections.keypoints[i]
                embeddings[i], visibility[i] = self._person(hsv, detections.boxes[i], kps)
        return detections.with_(embeddings=embeddings, visibility=visibility)

    def _person(self, hsv: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None):
        out = np.zeros((1 + self.num_parts, self.dim), np.float32)
        vis = np.zeros(1 + self.num_parts, np.float32)
        h_img, w_img = hsv.shape[:2]
        if not np.all(np.isfinite(box)):
            return out, vis
        x1, y1 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
        x2, y2 = int(min(w_img, np.ceil(box[2]))), int(min(h_img, np.ceil(box[3])))
        if x2 - x1 < 2 or y2 - y1 < 2:
            return out, vis
        scale = min(1.0, self.max_side / (y2 - y1))
        crop = hsv[y1:y2, x1:x2]
        if scale < 1.0:
            crop = cv2.resize(crop, (max(2, round((x2 - x1) * scale)), max(2, round((y2 - y1) * scale))),
                              interpolation=cv2.INTER_AREA)
        ch, cw = crop.shape[:2]
        foreground = np.zeros((ch, cw), np.uint8)
        if keypoints is not None and np.all(np.isfinite(keypoints)):
            points = (keypoints[:, :2] - np.array([x1, y1], np.float32)) * scale
            inside = (points[:, 0] >= 0) & (points[:, 0] < cw) & (points[:, 1] >= 0) & (points[:, 1] < ch)
            good = (keypoints[:, 2] > self.keypoint_threshold) & inside
            radius = max(1, int(round(self.thickness * ch / 2)))
            for p, segments in enumerate(self.parts.values(), start=1):
                mask = self._part_mask((ch, cw), points, good, segments, radius)
                if mask is not None and cv2.countNonZero(mask) >= self.min_pixels:
                    out[p] = self._histogram(crop, mask)
                    vis[p] = 1.0
                    foreground |= mask
        if cv2.countNonZero(foreground) < self.min_pixels:
            # No usable keypoints: the centre of the box stands in for the person.
            foreground[ch // 8: ch - ch // 8, cw // 4: cw - cw // 4] = 255
        out[0] = self._histogram(crop, foreground)
        vis[0] = 1.0
        return out, vis

    @staticmethod
    def _part_mask(shape, points, good, segments, radius):
        mask = None
        for a, b in segments:
            if not (good[a] and good[b]):
                continue
            if mask is None:
                mask = np.zeros(shape, np.uint8)
            pa = tuple(int(v) for v in np.round(points[a]))
            pb = tuple(int(v) for v in np.round(points[b]))
            cv2.line(mask, pa, pb, 255, thickness=2 * radius, lineType=cv2.LINE_8)
            if a == b:
                cv2.circle(mask, pa, radius, 255, thickness=-1)
        return mask

    def _histogram(self, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hs = cv2.calcHist([crop], [0, 1], mask, [self.hue_bins, self.sat_bins], [0, 180, 0, 256]).ravel()
        v = cv2.calcHist([crop], [2], mask, [self.val_bins], [0, 256]).ravel()
        hist = np.concatenate([hs, v]).astype(np.float32)
        hist /= max(hist.sum(), 1.0)
        return np.sqrt(hist)
