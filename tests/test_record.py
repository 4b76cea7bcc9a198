"""Detections.with_track_ids: the tracker's per-frame copy of the record."""
import numpy as np
import pytest

from kprtrack.record import Detections


def people(n: int) -> Detections:
    rng = np.random.default_rng(n)
    return Detections(
        boxes=rng.uniform(0, 100, (n, 4)), scores=rng.uniform(0, 1, n),
        keypoints=rng.uniform(0, 1, (n, 17, 3)).astype(np.float32),
        embeddings=rng.normal(size=(n, 3, 8)).astype(np.float32), visibility=rng.random((n, 3)) > 0.5,
        person_ids=np.arange(n),
    )


def test_with_track_ids_equals_with_and_shares_the_other_arrays():
    dets = people(4)
    ids = np.array([3, -1, 7, 1], np.int64)
    copied = dets.with_track_ids(ids)
    reference = dets.with_(track_ids=ids)
    assert type(copied) is Detections and copied is not dets
    for name in ("boxes", "scores", "keypoints", "embeddings", "visibility", "track_ids", "person_ids"):
        np.testing.assert_array_equal(getattr(copied, name), getattr(reference, name))
        if name != "track_ids":
            assert getattr(copied, name) is getattr(dets, name)  # shallow: shared, not copied
    assert copied.track_ids is ids
    assert dets.track_ids is None  # the original is left alone
    assert len(copied) == 4


def test_with_track_ids_keeps_a_subclass_and_checks_the_row_count():
    class Tagged(Detections):
        pass

    dets = Tagged(np.zeros((2, 4)), np.ones(2))
    assert type(dets.with_track_ids(np.array([1, 2]))) is Tagged
    with pytest.raises(ValueError, match="2 boxes but 3 rows of track_ids"):
        dets.with_track_ids(np.array([1, 2, 3]))
    assert len(Detections.empty().with_track_ids(np.zeros(0, np.int64)).track_ids) == 0
