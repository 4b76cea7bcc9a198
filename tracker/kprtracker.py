"""KPRTracker: the ByteTrack life-cycle with visibility-masked part features as the main cue.

One ``update`` per frame, read top to bottom (the steps are numbered in the code too):
  0. drop unusable rows (NaN), split detections into high / low confidence, compute the frame's
     one cost matrix, which every round reads;
  1. high detections vs tracked + lost tracks (a matched lost track comes back with its OLD id);
  2. low detections vs tracked tracks still unmatched (never lost ones: a weak box is not enough
     evidence to resurrect a track);
  3. leftover high detections vs unconfirmed tracks (born last frame): a match confirms the track
     and gives it the next id. Then the tracks matched in rounds 1-3 take in their detections in
     one batch, and the tracked tracks left unmatched by rounds 1-2 become lost;
  4. leftover high detections with score >= new_track_thresh start tracks, unconfirmed unless this
     is the first frame of the sequence;
  5. removal: unconfirmed tracks left unmatched by round 3, and lost tracks not seen for more than
     track_buffer frames.
Only confirmed tracks matched in this frame are reported; other rows get track id -1.

Cost of a (track, detection) pair, in [0, 1] so the per-round thresholds keep one scale:
- appearance on: the part distance. With ``iou_weight`` > 0, a track matched in the previous frame
  blends in its predicted box's IoU, (w_app * app + w_iou * (1 - IoU)) / (w_app + w_iou): IoU says
  something only about a track seen a frame ago. A track unseen for longer (occluded, lost, or at
  a low frame rate moved far) is matched on appearance alone, so re-identification stays possible
  (averaging in an IoU of 0 would forbid it);
- appearance off (``appearance_weight`` 0): 1 - IoU, as ByteTrack.
Motion gates forbid pairs outright: ``motion_gate`` (box heights, growing by ``motion_gate_growth``
per frame the track went unseen: the farther back it was seen, the farther it may have walked), the
Kalman chi2 gate (``motion_gating``), and ``min_iou``.
"""
from __future__ import annotations

import numpy as np

from kprtrack.record import Detections

from . import kalman
from .masked_ema import PartFeatures
from .matching import assign, iou_matrix
from .part_distance import masked_part_distance
from .track_store import LOST, NEW, TRACKED, TrackStore

__all__ = ["KPRTracker"]


def _row_dots(x: np.ndarray) -> np.ndarray:
    """x . x over the last axis: numpy 2's vecdot ufunc (fastest), einsum on numpy 1.x."""
    return np.vecdot(x, x) if _HAS_VECDOT else np.einsum("...d,...d->...", x, x)


_HAS_VECDOT = hasattr(np, "vecdot")


class KPRTracker:
    def __init__(
        self,
        det_high_thresh: float = 0.5,
        det_low_thresh: float = 0.1,
        new_track_thresh: float = 0.6,
        match_thresh: float = 0.4,
        second_match_thresh: float = 0.45,
        unconfirmed_match_thresh: float = 0.35,
        track_buffer: int = 300,
        ema_alpha: float = 0.9,
        visibility_threshold: float = 0.5,
        appearance_weight: float = 1.0,
        iou_weight: float = 0.0,
        kalman: bool = False,
        motion_gating: bool = False,
        min_iou: float = 0.0,
        motion_gate: float = 0.0,
        motion_gate_growth: float = 0.5,
    ) -> None:
        if appearance_weight < 0 or iou_weight < 0 or appearance_weight + iou_weight <= 0:
            raise ValueError(
                f"appearance_weight ({appearance_weight}) and iou_weight ({iou_weight}) must be >= 0 "
                "and not both 0: the tracker needs at least one cue"
            )
        if motion_gating and not kalman:
            raise ValueError("motion_gating needs the Kalman filter: set kalman=true")
        if not 0.0 <= ema_alpha <= 1.0:
            raise ValueError(f"ema_alpha must be in [0, 1], got {ema_alpha}")
        if track_buffer < 0:
            raise ValueError(f"track_buffer must be >= 0 frames, got {track_buffer}")
        if motion_gate < 0 or motion_gate_growth < 0:
            raise ValueError(f"motion_gate ({motion_gate}) and motion_gate_growth ({motion_gate_growth}) must be >= 0")
        self.det_high_thresh = float(det_high_thresh)
        self.det_low_thresh = float(det_low_thresh)
        self.new_track_thresh = float(new_track_thresh)
        self.match_thresh = float(match_thresh)
        self.second_match_thresh = float(second_match_thresh)
        self.unconfirmed_match_thresh = float(unconfirmed_match_thresh)
        self.track_buffer = int(track_buffer)
        self.ema_alpha = float(ema_alpha)
        self.visibility_threshold = float(visibility_threshold)
        self.appearance_weight = float(appearance_weight)
        self.iou_weight = float(iou_weight)
        self.motion_gating = bool(motion_gating)
        self.min_iou = float(min_iou)
        self.motion_gate = float(motion_gate)
        self.motion_gate_growth = float(motion_gate_growth)
        self.tracks = TrackStore(bool(kalman), self.ema_alpha, self.visibility_threshold)  # it applies the EMA
        self.reset()

    def reset(self) -> None:
        """Forget every track; the next frame is frame 1 of a new sequence and ids restart at 1."""
        self.tracks.clear()
        self.frame = 0
        self.next_id = 1

    @property
    def uses_appearance(self) -> bool:
        return self.appearance_weight > 0

    # What the pipeline checks before a run (kprtrack.stages.Tracker): visibility is optional.
    provides = frozenset({"track_ids"})

    @property
    def requires(self) -> frozenset:
        return frozenset({"boxes", "scores", "embeddings"} if self.uses_appearance else {"boxes", "scores"})

    # ------------------------------------------------------------------ per frame
    def update(self, detections: Detections) -> Detections:
        self.frame += 1
        tracks = self.tracks
        # 0. Usable rows and their part features, the high / low confidence split, the costs.
        valid, dets = self._detection_features(detections)
        scores = detections.scores
        high = (valid & (scores >= self.det_high_thresh)).nonzero()[0]
        low = (valid & (scores > self.det_low_thresh) & (scores < self.det_high_thresh)).nonzero()[0]
        tracks.predict()
        # Every round reads this one cost matrix [tracks, detections] (inf = forbidden); its part dot
        # products come back too, for the tracks' feature update to reuse.
        cost, dots = self._cost_matrix(detections, valid, dets)
        state = tracks.column("state").copy()  # the states at the frame's start
        ids = tracks.column("ids")

        # 1. High-confidence detections vs tracked and lost tracks.
        candidates = (state != NEW).nonzero()[0]
        m1, free_tracks, free_high = assign(cost[candidates][:, high], self.match_thresh)

        # 2. Low-confidence detections vs the tracked (not lost) tracks left over.
        waiting = candidates[free_tracks]
        waiting = waiting[state[waiting] == TRACKED]
        m2, free_waiting, _ = assign(cost[waiting][:, low], self.second_match_thresh)

        # 3. Leftover high-confidence detections vs unconfirmed tracks; a match confirms the track.
        unconfirmed = (state == NEW).nonzero()[0]
        leftover = high[free_high]
        m3, free_unconfirmed, free_leftover = assign(cost[unconfirmed][:, leftover], self.unconfirmed_match_thresh)
        confirmed = unconfirmed[m3[:, 0]]
        ids[confirmed] = self._take_ids(len(confirmed))

        # The matched tracks take in their detections in one batch (box, Kalman state, masked EMA,
        # state TRACKED): every round read the costs of the frame's start. Tracked tracks left
        # unmatched by rounds 1-2 become lost.
        rows = np.concatenate([candidates[m1[:, 0]], waiting[m2[:, 0]], confirmed])
        det_rows = np.concatenate([high[m1[:, 1]], low[m2[:, 1]], leftover[m3[:, 1]]])
        tracks.absorb(rows, det_rows, self.frame, detections.boxes, dets, dots)
        tracks.column("state")[waiting[free_waiting]] = LOST
        track_ids = np.full(len(detections), -1, np.int64)
        track_ids[det_rows] = ids[rows]

        # 4. Births: confident leftovers start tracks, confirmed at once only in the first frame.
        born = leftover[free_leftover]
        born = born[scores[born] >= self.new_track_thresh]
        first_frame = self.frame == 1
        new_ids = self._take_ids(len(born)) if first_frame else np.full(len(born), -1)
        tracks.add(born, self.frame, detections.boxes, dets, TRACKED if first_frame else NEW, new_ids)
        track_ids[born] = new_ids

        # 5. Removal: unconfirmed tracks left unmatched, and tracks lost for more than track_buffer frames.
        expired = (tracks.column("state") == LOST) & (self.frame - tracks.column("last_frame") > self.track_buffer)
        tracks.remove(np.concatenate([unconfirmed[free_unconfirmed], expired.nonzero()[0]]))
        return detections.with_track_ids(track_ids)

    # ------------------------------------------------------------------ helpers
    def _take_ids(self, count: int) -> np.ndarray:
        """The next ``count`` track ids (given at confirmation, so reported ids have no gaps)."""
        ids = np.arange(self.next_id, self.next_id + count)
        self.next_id += count
        return ids

    def _detection_features(self, detections: Detections) -> tuple[np.ndarray, PartFeatures | None]:
        """Rows free of NaN/inf [N] bool, and the detections' part features, part-major (None when
        appearance is off or the frame is empty): raw vectors (a transposed view of the embeddings)
        with their inverse norms as ``scale`` (0 for all-zero parts), visibility in [0, 1] and the
        unit vectors' squared norms (1, or 0 for all-zero parts). Unusable rows are all zero."""
        valid = np.isfinite(detections.boxes).all(axis=1) & np.isfinite(detections.scores)
        if not self.uses_appearance or len(detections) == 0:
            # A frame without people says nothing about the part layout (a backend may even hand over
            # [0, 1, 0]): the tracks' layout is fixed by the first frame with people.
            return valid, None
        if detections.embeddings is None:
            raise ValueError(
                "KPRTracker: detections have no embeddings but the appearance cue is on "
                "(run a ReID stage, or set appearance_weight=0 and iou_weight>0 to track boxes only)"
            )
        embeddings = np.asarray(detections.embeddings, np.float32)
        if embeddings.ndim != 3:
            raise ValueError(f"KPRTracker: embeddings must be [N, parts, dim], got shape {embeddings.shape}")
        if detections.visibility is None:
            visibility = np.ones(embeddings.shape[:2], np.float32)
        else:
            visibility = np.asarray(detections.visibility, np.float32)
            if visibility.shape != embeddings.shape[:2]:
                raise ValueError(f"KPRTracker: visibility shape {visibility.shape} does not match embeddings "
                                 f"{embeddings.shape} (expected [N, parts])")
        self.tracks.enable_features(*embeddings.shape[1:])
        # The features are not normalised here: one pass for the norms, and 1/norm is folded into the
        # dot products and the few vectors the tracks take in (a divide over every detection vector
        # would cost more than the rest). NaN/inf anywhere in a row shows up in its norms; such rows
        # are unusable and zeroed so they cannot leak NaN into the matrix products.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            norms = np.sqrt(_row_dots(embeddings)).T  # [P, N]
            valid &= np.isfinite(norms).all(axis=0) & np.isfinite(visibility).all(axis=1)
            nonzero = norms >= 1e-12
            inv_norms = np.divide(1.0, norms, out=np.zeros(norms.shape, np.float32), where=nonzero)
        sq_norms = nonzero.astype(np.float32)  # |unit vector|^2 without another pass over the features
        vis = np.minimum(np.maximum(visibility.T, 0.0, order="C"), 1.0)  # [P, N]
        if not valid.all():
            embeddings = embeddings.copy()
            embeddings[~valid] = 0.0
            inv_norms[:, ~valid] = 0.0
            vis[:, ~valid] = 0.0
            sq_norms[:, ~valid] = 0.0
        # Part-major through a transposed view: BLAS takes strided operands.
        return valid, PartFeatures(embeddings.transpose(1, 0, 2), vis, sq_norms, scale=inv_norms)

    def _cost_matrix(self, detections: Detections, valid: np.ndarray, dets: PartFeatures | None):
        """[tracks, detections] costs (inf = forbidden), and the part dot products [P, T, N] (or None)."""
        tracks = self.tracks
        dots = None
        if tracks.size == 0 or len(detections) == 0:
            return np.zeros((tracks.size, len(detections)), np.float64), dots
        if self.uses_appearance:
            # No common visible part: appearance knows nothing, so the pair is never matched.
            # (Unusable detections have all-zero visibility: no common part already.)
            app, has_common, dots = masked_part_distance(
                tracks.column("feats"), tracks.column("sqrt_vis"), dets.feats, np.sqrt(dets.vis),
                tracks.column("sq_norms"), dets.sq_norms, scale_b=dets.scale, return_dots=True,
            )
            cost = app.astype(np.float64)
            forbidden = ~has_common
        else:
            cost = np.ones((tracks.size, len(detections)), np.float64)
            forbidden = np.repeat(~valid[None, :], tracks.size, axis=0)
        needs_boxes = self.iou_weight > 0 or self.min_iou > 0 or self.motion_gate > 0 or self.motion_gating
        boxes = np.where(valid[:, None], detections.boxes, 0.0) if needs_boxes else None
        predicted = tracks.predicted_boxes() if needs_boxes else None
        if self.iou_weight > 0 or self.min_iou > 0:
            iou = iou_matrix(predicted, boxes)
            if not self.uses_appearance:
                cost -= iou
            elif self.iou_weight > 0:
                recent = (tracks.column("last_frame") == self.frame - 1).nonzero()[0]
                total = self.appearance_weight + self.iou_weight
                cost[recent] = (self.appearance_weight * cost[recent] + self.iou_weight * (1.0 - iou[recent])) / total
            if self.min_iou > 0:
                forbidden |= iou < self.min_iou
        if self.motion_gate > 0:
            forbidden |= self._beyond_motion_gate(predicted, boxes)
        if self.motion_gating:
            distance = kalman.gating_distance(tracks.column("mean"), tracks.column("cov"), kalman.boxes_to_xyah(boxes))
            forbidden |= distance > kalman.CHI2_95_4DOF
        cost[forbidden] = np.inf
        return cost, dots

    def _beyond_motion_gate(self, predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[tracks, detections]: the detection's centre is farther from the track's predicted centre than
        (motion_gate + motion_gate_growth * (frames unseen - 1)) predicted box heights."""
        heights = np.maximum(predicted[:, 3] - predicted[:, 1], 1.0)
        unseen = self.frame - self.tracks.column("last_frame")
        radius = heights * (self.motion_gate + self.motion_gate_growth * (unseen - 1))
        track_centres = (predicted[:, :2] + predicted[:, 2:]) / 2
        det_centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        offsets = track_centres[:, None, :] - det_centres[None, :, :]
        return offsets[..., 0] ** 2 + offsets[..., 1] ** 2 > (radius ** 2)[:, None]
