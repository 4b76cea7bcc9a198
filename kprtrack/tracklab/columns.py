"""TrackLab detection rows (a pandas DataFrame, one row per person) <-> our ``Detections`` record.

TrackLab columns: ``bbox_ltwh`` [4], ``bbox_conf`` float, ``keypoints_xyc`` [17, 3] (PoseTrack order
for PoseTrack data sets, the same order as ours), ``embeddings`` [1+K, D], ``visibility_scores``
[1+K], ``track_id``. Cells a previous module left empty (NaN) become NaN rows, which our tracker
already treats as unusable, instead of failing the whole frame.
Needs only numpy and pandas, so it is tested without TrackLab.
"""
from __future__ import annotations

import numpy as np

from kprtrack.record import NUM_KEYPOINTS, Detections

BOX = "bbox_ltwh"
CONF = "bbox_conf"
KEYPOINTS = "keypoints_xyc"
EMBEDDINGS = "embeddings"
VISIBILITY = "visibility_scores"
TRACK_ID = "track_id"


def _stack(cells, shape: tuple[int, ...] | None, name: str) -> np.ndarray | None:
    """Per-row arrays -> one float32 array; rows without an array get NaN of the common shape."""
    arrays = [None if c is None or np.ndim(c) == 0 else np.asarray(c, np.float32) for c in cells]
    if shape is None:
        shape = next((a.shape for a in arrays if a is not None), None)
        if shape is None:
            return None  # no row has a value: the column carries nothing
    out = np.full((len(arrays), *shape), np.nan, np.float32)
    for i, a in enumerate(arrays):
        if a is None:
            continue
        if a.size != int(np.prod(shape)):
            raise ValueError(f"TrackLab column {name!r}: row {i} has shape {a.shape}, expected {shape}")
        out[i] = a.reshape(shape)
    return out


def detections_from_rows(rows) -> Detections:
    """One image's TrackLab detections -> ``Detections`` in the same row order."""
    n = len(rows)
    if n == 0:
        return Detections.empty()
    boxes = _stack(rows[BOX].tolist(), (4,), BOX)
    boxes[:, 2:] += boxes[:, :2]  # ltwh -> x1 y1 x2 y2
    # Ground-truth detections loaded by TrackLab have no confidence: they are certain.
    scores = rows[CONF].to_numpy(np.float32, na_value=np.nan) if CONF in rows else np.ones(n, np.float32)
    keypoints = _stack(rows[KEYPOINTS].tolist(), (NUM_KEYPOINTS, 3), KEYPOINTS) if KEYPOINTS in rows else None
    if keypoints is not None:
        # A person without a pose has no keypoints, not unknown ones: zero confidence, not NaN.
        keypoints = np.nan_to_num(keypoints, nan=0.0)
    embeddings = _stack(rows[EMBEDDINGS].tolist(), None, EMBEDDINGS) if EMBEDDINGS in rows else None
    visibility = None
    if embeddings is not None:
        visibility = (_stack(rows[VISIBILITY].tolist(), embeddings.shape[1:2], VISIBILITY) if VISIBILITY in rows
                      else np.ones(embeddings.shape[:2], np.float32))
    return Detections(boxes=boxes, scores=scores, keypoints=keypoints, embeddings=embeddings,
                      visibility=visibility)


def reid_columns(detections: Detections, index):
    """Embeddings and visibility of each row, as TrackLab's ReID modules return them."""
    import pandas as pd

    return pd.DataFrame({EMBEDDINGS: list(detections.embeddings), VISIBILITY: list(detections.visibility)},
                        index=index)


def track_columns(detections: Detections, index):
    """``track_id`` for the rows reported as a track; the others are left out (TrackLab keeps NaN)."""
    import pandas as pd

    tracked = detections.track_ids >= 0
    return pd.DataFrame({TRACK_ID: detections.track_ids[tracked]}, index=np.asarray(index)[tracked])
