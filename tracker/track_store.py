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
from .masked_ema import masked_ema_inplace

NEW, TRACKED, LOST = 0, 1, 2  # removed tracks are simply dropped


class TrackStore:
    def __init__(self, use_kalman: bool) -> None:
        self.use_kalman = use_kalman
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

    def add(self, boxes, frame: int, state: np.ndarray, ids: np.ndarray, feats=None, vis=None,
            sq_norms=None) -> np.ndarray:
        """Append tracks; ``feats`` [P, M, D] unit vectors, ``vis`` [P, M] (and optionally the
        features' squared norms [P, M]) when appearance is on."""
        count = len(boxes)
        self._reserve(count)
        rows = np.arange(self.size, self.size + count)
        self.size += count
        self.column("ids")[rows] = ids
        self.column("state")[rows] = state
        self.column("last_frame")[rows] = frame
        self.column("boxes")[rows] = boxes
        if self.use_kalman:
            mean, cov = kalman.initiate(kalman.boxes_to_xyah(boxes))
            self.column("mean")[rows] = mean
            self.column("cov")[rows] = cov
        if self.part_shape is not None:
            self.column("feats")[:, rows] = feats
            self.column("vis")[:, rows] = vis
            self.column("sqrt_vis")[:, rows] = np.sqrt(vis)
            if sq_norms is None:
                sq_norms = np.einsum("pmd,pmd->pm", feats, feats)
            self.column("sq_norms")[:, rows] = sq_norms
        return rows

    def absorb(self, rows, boxes, frame: int, det_rows=None, feats=None, vis=None, alpha=0.9,
               visible_threshold=0.5, sq_norms=None, det_scale=None, pair_dots=None) -> None:
        """Track ``rows[i]`` takes in detection ``det_rows[i]``: box, Kalman state, masked-EMA part
        features (``feats`` [P, N, D] unit vectors / ``vis`` [P, N] of all the frame's detections;
        or raw vectors with ``det_scale`` [P, N] = 1/norm, and the cost's ``pair_dots``, see
        masked_ema_inplace)."""
        if len(rows) == 0:
            return
        self.column("boxes")[rows] = boxes
        self.column("last_frame")[rows] = frame
        self.column("state")[rows] = TRACKED
        if self.use_kalman:
            mean, cov = kalman.update(self.column("mean")[rows], self.column("cov")[rows], kalman.boxes_to_xyah(boxes))
            self.column("mean")[rows] = mean
            self.column("cov")[rows] = cov
        if self.part_shape is not None:
            if sq_norms is None:
                sq_norms = np.einsum("pnd,pnd->pn", feats, feats)
            masked_ema_inplace(self.column("feats"), self.column("vis"), rows, feats, vis, det_rows, alpha,
                               visible_threshold, self.column("sq_norms"), sq_norms, det_scale, pair_dots)
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
