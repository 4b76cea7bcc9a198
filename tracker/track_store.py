"""Tracklet state kept as compact column arrays (one row per live track, no per-track objects).

Rows 0..size-1 are the live tracks (new, tracked or lost). Removing a track moves the last rows
into the holes, so the live part is always a prefix: the tracker reads features as views (no
re-stacking per frame), memory is bounded by the peak number of live tracks, and removed tracks
leave nothing behind. Features are stored part-major [P, capacity, D] because that is the layout
the part distance multiplies.
"""
from __future__ import annotations

import numpy as np

from . import kalman
from .masked_ema import PartFeatures, masked_ema_update

NEW, TRACKED, LOST = 0, 1, 2  # removed tracks are simply dropped


class TrackStore:
    def __init__(self, use_kalman: bool, ema_alpha: float = 0.9, visibility_threshold: float = 0.5) -> None:
        self.use_kalman = use_kalman
        self.ema_alpha = ema_alpha  # how the tracks' part features take in a detection's (masked_ema.py)
        self.visibility_threshold = visibility_threshold
        self.clear()

    def clear(self) -> None:
        self.size = 0
        self.capacity = 0
        self.part_shape: tuple[int, int] | None = None  # (parts, dim) once the first embeddings arrive
        # name -> (array, row axis); arrays grow together.
        self._columns: dict[str, tuple[np.ndarray, int]] = {}
        self._declare("ids", (0,), np.int64)  # -1 until confirmed
        self._declare("state", (0,), np.int8)
        self._declare("last_frame", (0,), np.int64)  # frame of the last matched detection
        self._declare("boxes", (0, 4), np.float32)  # last matched box
        if self.use_kalman:
            self._declare("mean", (0, 8), np.float64)
            self._declare("cov", (0, 3, 4), np.float64)  # per-coordinate 2x2 blocks (see kalman.py)

    def _declare(self, name: str, shape: tuple[int, ...], dtype, axis: int = 0) -> None:
        self._columns[name] = (np.zeros(shape, dtype), axis)

    def column(self, name: str) -> np.ndarray:
        """The live rows of one column (a view)."""
        array, axis = self._columns[name]
        return array[: self.size] if axis == 0 else array[:, : self.size]

    def enable_features(self, parts: int, dim: int) -> None:
        if parts < 1 or dim < 1:
            raise ValueError(f"embeddings of {parts} parts x {dim} dims carry no appearance")
        if self.part_shape is None:
            self.part_shape = (parts, dim)
            self._declare("feats", (parts, self.capacity, dim), np.float32, axis=1)
            self._declare("vis", (parts, self.capacity), np.float32, axis=1)
            # Derived per-part caches, refreshed only for the rows a frame touches (the part distance
            # would otherwise recompute them for every track every frame).
            self._declare("sqrt_vis", (parts, self.capacity), np.float32, axis=1)
            self._declare("sq_norms", (parts, self.capacity), np.float32, axis=1)  # |feature|^2: 1, or 0
        elif self.part_shape != (parts, dim):
            raise ValueError(
                f"embeddings changed layout within a sequence: tracks have {self.part_shape[0]} parts x "
                f"{self.part_shape[1]} dims, detections {parts} x {dim} (call reset() between sequences)"
            )

    def _reserve(self, extra: int) -> None:
        needed = self.size + extra
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity, 16)
        for name, (array, axis) in self._columns.items():
            shape = list(array.shape)
            shape[axis] = capacity
            grown = np.zeros(shape, array.dtype)
            if axis == 0:
                grown[: self.size] = array[: self.size]
            else:
                grown[:, : self.size] = array[:, : self.size]
            self._columns[name] = (grown, axis)
        self.capacity = capacity

    def features(self) -> PartFeatures:
        """The live tracks' part features (views: updating them updates the store)."""
        return PartFeatures(self.column("feats"), self.column("vis"), self.column("sq_norms"))

    def add(self, det_rows: np.ndarray, frame: int, boxes: np.ndarray, dets: PartFeatures | None,
            state: int, ids: np.ndarray) -> None:
        """New tracks from detections ``det_rows`` of the frame's ``boxes`` [N, 4] and part features
        ``dets`` (None when appearance is off), in state ``state`` with ``ids``."""
        count = len(det_rows)
        if count == 0:
            return
        self._reserve(count)
        rows = np.arange(self.size, self.size + count)
        self.size += count
        self.column("ids")[rows] = ids
        self.column("state")[rows] = state
        self.column("last_frame")[rows] = frame
        boxes = boxes[det_rows]
        self.column("boxes")[rows] = boxes
        if self.use_kalman:
            mean, cov = kalman.initiate(kalman.boxes_to_xyah(boxes))
            self.column("mean")[rows] = mean
            self.column("cov")[rows] = cov
        if self.part_shape is not None:
            self.column("feats")[:, rows] = dets.units(det_rows)
            self.column("vis")[:, rows] = dets.vis[:, det_rows]
            self.column("sqrt_vis")[:, rows] = np.sqrt(dets.vis[:, det_rows])
            self.column("sq_norms")[:, rows] = dets.sq_norms[:, det_rows]

    def absorb(self, rows: np.ndarray, det_rows: np.ndarray, frame: int, boxes: np.ndarray,
               dets: PartFeatures | None, pair_dots: np.ndarray | None) -> None:
        """Track ``rows[i]`` takes in detection ``det_rows[i]`` of the frame's ``boxes`` [N, 4] and
        part features ``dets``: box, Kalman state, masked-EMA part features, state TRACKED.
        ``pair_dots`` [P, T, N]: the cost's raw track . detection dot products, which the EMA reuses."""
        if len(rows) == 0:
            return
        boxes = boxes[det_rows]
        self.column("boxes")[rows] = boxes
        self.column("last_frame")[rows] = frame
        self.column("state")[rows] = TRACKED
        if self.use_kalman:
            mean, cov = kalman.update(self.column("mean")[rows], self.column("cov")[rows], kalman.boxes_to_xyah(boxes))
            self.column("mean")[rows] = mean
            self.column("cov")[rows] = cov
        if self.part_shape is not None:
            masked_ema_update(self.features(), rows, dets, det_rows, self.ema_alpha, self.visibility_threshold,
                              pair_dots)
            self.column("sqrt_vis")[:, rows] = np.sqrt(self.column("vis")[:, rows])

    def predict(self) -> None:
        """One Kalman step for every live track (lost tracks stop growing: ByteTrack zeroes their height rate)."""
        if not self.use_kalman or self.size == 0:
            return
        mean, cov = self.column("mean"), self.column("cov")
        mean[self.column("state") != TRACKED, 7] = 0.0
        mean[:], cov[:] = kalman.predict(mean, cov)

    def predicted_boxes(self) -> np.ndarray:
        if self.use_kalman:
            return kalman.xyah_to_boxes(self.column("mean")[:, :4])
        return self.column("boxes")

    def remove(self, rows: np.ndarray) -> None:
        """Drop tracks by filling their rows with the last live rows (order of the rest changes)."""
        if len(rows) == 0:  # most frames remove nothing
            return
        doomed = np.zeros(self.size, bool)
        doomed[rows] = True
        new_size = self.size - int(np.count_nonzero(doomed))
        holes = np.flatnonzero(doomed[:new_size])
        tail = new_size + np.flatnonzero(~doomed[new_size:])  # survivors beyond the new end fill the holes
        for array, axis in self._columns.values():
            if axis == 0:
                array[holes] = array[tail]
            else:
                array[:, holes] = array[:, tail]
        self.size = new_size
