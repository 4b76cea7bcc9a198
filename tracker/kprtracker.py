"""KPRTracker: the ByteTrack life-cycle with visibility-masked part features as the main cue.

One ``update`` per frame, read top to bottom:
  0. drop unusable rows (NaN), split detections into high / low confidence;
  1. high detections vs tracked + lost tracks (a matched lost track comes back with its OLD id);
  2. low detections vs tracked tracks still unmatched (never lost ones: a weak box is not enough
     evidence to resurrect a track); tracked tracks unmatched after this become lost;
  3. leftover high detections vs unconfirmed tracks (born last frame); unmatched ones are removed;
  4. leftover high detections with score >= new_track_thresh start tracks, unconfirmed unless this
     is the first frame of the sequence;
  5. lost tracks not seen for more than track_buffer frames are removed.
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
        self.tracks = TrackStore(use_kalman=bool(kalman))
        self.reset()

    def reset(self) -> None:
        """Forget every track; the next frame is frame 1 of a new sequence and ids restart at 1."""
        self.tracks.clear()
        self.frame = 0
        self.next_id = 1

    @property
    def uses_appearance(self) -> bool:
        return self.appearance_weight > 0

    # ------------------------------------------------------------------ per frame
    def update(self, detections: Detections) -> Detections:
        self.frame += 1
        tracks = self.tracks
        track_ids = np.full(len(detections), -1, np.int64)
        valid, feats, inv_norms, vis, sq_norms = self._usable_rows(detections)
        scores = detections.scores
        high = (valid & (scores >= self.det_high_thresh)).nonzero()[0]  # (the method skips numpy's wrapper)
        low = (valid & (scores > self.det_low_thresh) & (scores < self.det_high_thresh)).nonzero()[0]

        tracks.predict()
        # [tracks, detections], inf = forbidden; and the part dot products, which the EMA reuses
        cost, dots = self._cost_matrix(detections, valid, feats, inv_norms, vis, sq_norms)
        state = tracks.column("state").copy()  # states at the start of the frame
        ids = tracks.column("ids")
        # Unconfirmed tracks exist only for a frame after a birth: most frames have none, and then
        # round 1 takes every row and round 3 has nothing to do (fewer small numpy calls).
        n_unconfirmed = np.count_nonzero(state == NEW)

        # Round 1: high-confidence detections vs tracked and lost tracks.
        if n_unconfirmed:
            pool = (state != NEW).nonzero()[0]
            m1, free_pool, free_high = assign(cost[pool][:, high], self.match_thresh)
        else:
            pool = None  # every row
            m1, free_pool, free_high = assign(cost[:, high], self.match_thresh)
        matched = m1[:, 0] if pool is None else pool[m1[:, 0]]
        rows, det_rows = [matched], [high[m1[:, 1]]]

        # Round 2: low-confidence detections vs tracked (not lost) tracks left over.
        waiting = free_pool if pool is None else pool[free_pool]
        waiting = waiting[state[waiting] == TRACKED]
        if len(waiting) and len(low):
            m2, free_waiting, _ = assign(cost[waiting][:, low], self.second_match_thresh)
            rows.append(waiting[m2[:, 0]])
            det_rows.append(low[m2[:, 1]])
            waiting = waiting[free_waiting]

        # Round 3: leftover high detections vs unconfirmed tracks; a match confirms the track.
        born = high[free_high]  # leftovers, until round 3 takes some
        doomed = []
        if n_unconfirmed:
            unconfirmed = (state == NEW).nonzero()[0]
            m3, free_unconfirmed, free_leftover = assign(cost[unconfirmed][:, born], self.unconfirmed_match_thresh)
            confirmed = unconfirmed[m3[:, 0]]
            ids[confirmed] = np.arange(self.next_id, self.next_id + len(confirmed))
            self.next_id += len(confirmed)
            rows.append(confirmed)
            det_rows.append(born[m3[:, 1]])
            doomed.append(unconfirmed[free_unconfirmed])
            born = born[free_leftover]

        # All rounds used the costs of the frame's start, so matched tracks take in their detections
        # (box, Kalman, masked EMA, state TRACKED) in one batch; unmatched tracked ones become lost.
        rows = rows[0] if len(rows) == 1 else np.concatenate(rows)
        det_rows = det_rows[0] if len(det_rows) == 1 else np.concatenate(det_rows)
        tracks.absorb(rows, detections.boxes[det_rows], self.frame, det_rows, feats, vis, self.ema_alpha,
                      self.visibility_threshold, sq_norms, inv_norms, dots)
        track_ids[det_rows] = ids[rows]
        current_state = tracks.column("state")
        current_state[waiting] = LOST

        # Lost for longer than the buffer: forgotten (checked before births so rows stay valid).
        # Usually no track at all is that old, which one reduction tells.
        last_frame = tracks.column("last_frame")
        if tracks.size and self.frame - last_frame.min() > self.track_buffer:
            doomed.append(((current_state == LOST) & (self.frame - last_frame > self.track_buffer)).nonzero()[0])

        # Births: confident leftovers start tracks; only tracks of the first frame count at once.
        born = born[scores[born] >= self.new_track_thresh]
        if len(born):
            first_frame = self.frame == 1
            new_ids = np.arange(self.next_id, self.next_id + len(born)) if first_frame else np.full(len(born), -1)
            self.next_id += len(born) if first_frame else 0
            tracks.add(
                detections.boxes[born], self.frame, TRACKED if first_frame else NEW, new_ids,
                None if feats is None else feats[:, born] * inv_norms[:, born, None],
                None if vis is None else vis[:, born],
                None if sq_norms is None else sq_norms[:, born],
            )
            track_ids[born] = new_ids

        if doomed:
            tracks.remove(np.concatenate(doomed))
        # The same record with ids: a shallow copy, as with_() gives, without re-validating every field
        # (built by hand: copy.copy goes through __reduce_ex__, several microseconds).
        result = object.__new__(type(detections))
        result.__dict__.update(detections.__dict__)
        result.track_ids = track_ids
        return result

    # ------------------------------------------------------------------ helpers
    def _usable_rows(self, detections: Detections):
        """Rows free of NaN/inf, and the detections' raw part features [P, N, D] (a part-major view),
        their inverse norms [P, N] (0 for all-zero parts), visibility [P, N] and the unit vectors'
        squared norms [P, N] (1, or 0 for all-zero parts)."""
        valid = np.isfinite(detections.boxes).all(axis=1) & np.isfinite(detections.scores)
        if not self.uses_appearance or len(detections) == 0:
            # A frame without people says nothing about the part layout (a backend may even hand over
            # [0, 1, 0]): the tracks' layout is fixed by the first frame with people.
            return valid, None, None, None, None
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
        # would cost more than the rest). The rest of the tracker reads them part-major through a
        # transposed view (BLAS takes strided operands). NaN/inf anywhere in a row shows up in its
        # norms; such rows are unusable and zeroed so they cannot leak NaN into the matrix products.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            norms_t = np.sqrt(_row_dots(embeddings)).T  # [P, N]
            # One finite total says every value is finite (the usual case) in a few calls; otherwise
            # (or if the total merely overflowed) the rows are checked one by one.
            if not np.isfinite(norms_t.sum() + visibility.sum()):
                valid &= np.isfinite(norms_t).all(axis=0) & np.isfinite(visibility).all(axis=1)
            nonzero = norms_t >= 1e-12
            inv_norms = np.divide(1.0, norms_t, out=np.zeros(norms_t.shape, np.float32), where=nonzero)
            sq_norms = nonzero.astype(np.float32)  # |unit|^2 without another pass over the features
        vis = np.minimum(np.maximum(visibility.T, 0.0, order="C"), 1.0)  # [P, N], part-major
        if not valid.all():
            embeddings = embeddings.copy()
            embeddings[~valid] = 0.0
            inv_norms[:, ~valid] = 0.0
            vis[:, ~valid] = 0.0
            sq_norms[:, ~valid] = 0.0
        return valid, embeddings.transpose(1, 0, 2), inv_norms, vis, sq_norms

    def _cost_matrix(self, detections: Detections, valid, feats, inv_norms, vis, sq_norms):
        tracks = self.tracks
        dots = None
        if tracks.size == 0 or len(detections) == 0:
            return np.zeros((tracks.size, len(detections)), np.float64), dots
        if self.uses_appearance:
            # No common visible part: appearance knows nothing, so the pair is never matched.
            app, has_common, dots = masked_part_distance(
                tracks.column("feats"), tracks.column("sqrt_vis"), feats, np.sqrt(vis),
                tracks.column("sq_norms"), sq_norms, scale_b=inv_norms, return_dots=True,
            )
            cost = app.astype(np.float64)
            # Unusable detections have all-zero visibility (see _usable_rows): no common part already.
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
