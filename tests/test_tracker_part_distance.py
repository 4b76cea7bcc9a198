"""The visibility-masked part distance against a plain per-pair loop and hand-made cases."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from kprtrack.tracker.part_distance import part_distance

# The package re-exports the function under the module's name, so fetch the module itself.
pd_module = importlib.import_module("kprtrack.tracker.part_distance")


def loop_part_distance(feats_a, vis_a, feats_b, vis_b):
    """The definition written out pair by pair (REFERENCE section 2)."""
    out = np.ones((len(feats_a), len(feats_b)))
    for i in range(len(feats_a)):
        for j in range(len(feats_b)):
            num = den = 0.0
            for k in range(feats_a.shape[1]):
                weight = np.sqrt(float(vis_a[i, k]) * float(vis_b[j, k]))
                x = feats_a[i, k] / np.linalg.norm(feats_a[i, k])
                y = feats_b[j, k] / np.linalg.norm(feats_b[j, k])
                num += weight * np.linalg.norm(x - y)
                den += weight
            if den > 0:
                out[i, j] = num / den / 2
    return out


@pytest.mark.parametrize("bool_vis", [True, False])
def test_matches_loop_on_random_data(bool_vis):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 9, 32)), rng.normal(size=(5, 9, 32))
    if bool_vis:
        va, vb = rng.random((7, 9)) > 0.4, rng.random((5, 9)) > 0.4
    else:
        va, vb = rng.random((7, 9)), rng.random((5, 9))
    got = part_distance(a, va, b, vb)
    assert got.shape == (7, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, loop_part_distance(a, va, b, vb), atol=1e-5)


def test_chunked_rows_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 3, 16)), rng.normal(size=(20, 3, 16))
    va, vb = rng.random((50, 3)) > 0.3, rng.random((20, 3)) > 0.3
    whole = part_distance(a, va, b, vb)
    monkeypatch.setattr(pd_module, "_MAX_SCRATCH_ELEMENTS", 3 * 20 * 7)  # 7 rows per chunk
    np.testing.assert_allclose(part_distance(a, va, b, vb), whole, atol=1e-6)


def test_identical_zero_and_opposite():
    f = np.zeros((1, 2, 3))
    f[0, 0, 0] = f[0, 1, 1] = 5.0  # scale must not matter
    vis = np.ones((1, 2), bool)
    assert part_distance(f, vis, f * 0.1, vis)[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert part_distance(f, vis, -f, vis)[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_only_mutually_visible_parts_count():
    a = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    b = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    # part 0 identical, parts 1 and 2 orthogonal (euclidean sqrt 2)
    assert part_distance(a, [[1, 1, 1]], b, [[1, 1, 1]])[0, 0] == pytest.approx(2 * np.sqrt(2) / 3 / 2, abs=1e-6)
    assert part_distance(a, [[1, 0, 1]], b, [[1, 1, 0]])[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert part_distance(a, [[True, True, False]], b, [[False, True, True]])[0, 0] == pytest.approx(
        np.sqrt(2) / 2, abs=1e-6
    )


def test_no_mutually_visible_part_is_maximum_distance():
    a = np.ones((1, 3, 4))
    got = part_distance(a, [[True, False, False]], a, [[False, True, True]])
    assert got[0, 0] == 1.0


def test_float_visibility_uses_sqrt_weights():
    a = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    b = np.array([[[1.0, 0.0], [-1.0, 0.0]]])  # part 0 distance 0, part 1 distance 2
    va, vb = np.array([[1.0, 0.25]]), np.array([[0.36, 1.0]])
    w0, w1 = np.sqrt(0.36), np.sqrt(0.25)
    expected = (w0 * 0.0 + w1 * 2.0) / (w0 + w1) / 2
    assert part_distance(a, va, b, vb)[0, 0] == pytest.approx(expected, abs=1e-6)


def test_none_visibility_means_all_visible_and_empty_inputs():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 2, 4)), rng.normal(size=(4, 2, 4))
    np.testing.assert_allclose(part_distance(a, None, b, None), part_distance(a, np.ones((3, 2)), b, np.ones((4, 2))))
    assert part_distance(a[:0], None, b, None).shape == (0, 4)
    assert part_distance(a, None, b[:0], None).shape == (3, 0)


def test_non_finite_parts_are_treated_as_invisible():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    vis = np.ones((2, 3))
    poisoned = a.copy()
    poisoned[0, 2, 1] = np.nan
    hidden = vis.copy()
    hidden[0, 2] = 0
    got = part_distance(poisoned, vis, b, vis)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, part_distance(a, hidden, b, vis), atol=1e-6)


def test_layout_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="part layouts differ"):
        part_distance(np.ones((1, 3, 4)), None, np.ones((1, 2, 4)), None)
    with pytest.raises(ValueError, match="visibility shape"):
        part_distance(np.ones((1, 3, 4)), np.ones((1, 2)), np.ones((1, 3, 4)), None)
