"""assign(): the cheap mutual-best certificate must give exactly lapjv's matching."""
import lap
import numpy as np

from kprtrack.tracker.matching import _mutual_best, assign


def lapjv_reference(cost, max_cost):
    finite = np.minimum(np.where(np.isfinite(cost), cost, max_cost + 1.0), max_cost + 1.0)
    _, row_to_col, _ = lap.lapjv(finite, extend_cost=True, cost_limit=max_cost)
    rows = np.flatnonzero(row_to_col >= 0)
    cols = row_to_col[rows]
    keep = finite[rows, cols] <= max_cost
    return np.stack([rows[keep], cols[keep]], axis=1)


def test_assign_equals_lapjv_on_random_and_tracking_like_costs():
    rng = np.random.default_rng(0)
    certified = 0
    for trial in range(400):
        n, m = rng.integers(1, 12, 2)
        cost = rng.uniform(0.3, 1.0, (n, m))
        if trial % 2:  # tracking-like: a clear diagonal of own-identity matches
            k = min(n, m)
            cost[np.arange(k), rng.permutation(m)[:k]] = rng.uniform(0.0, 0.3, k)
        if trial % 5 == 0:
            cost[rng.random((n, m)) < 0.2] = np.inf
        if trial % 7 == 0:
            cost[:, 0] = cost[:, -1]  # ties between columns must fall back to lapjv
        finite = np.minimum(np.where(np.isfinite(cost), cost, 1.4), 1.4)
        certified += _mutual_best(finite, 0.4) is not None
        matches, free_rows, free_cols = assign(cost, 0.4)
        expected = lapjv_reference(cost, 0.4)
        np.testing.assert_array_equal(matches, expected)
        assert set(free_rows) == set(range(n)) - set(expected[:, 0])
        assert set(free_cols) == set(range(m)) - set(expected[:, 1])
    assert certified > 100  # the fast path is really exercised


def test_mutual_best_declines_ties_and_boundary_costs():
    assert _mutual_best(np.array([[0.1, 0.1], [0.9, 0.9]]), 0.4) is None  # tied row minimum
    assert _mutual_best(np.array([[0.4, 0.9], [0.9, 0.1]]), 0.4) is None  # exactly at the limit
    assert _mutual_best(np.array([[0.1, 0.2], [0.05, 0.9]]), 0.4) is None  # not mutual bests
    rows, cols = _mutual_best(np.array([[0.9, 0.1], [0.2, 0.8]]), 0.4)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_small_matrix_certificate_decides_like_the_vectorised_one():
    from kprtrack.tracker import matching

    rng = np.random.default_rng(1)
    decided = 0
    for trial in range(600):
        n, m = rng.integers(1, 5, 2)
        cost = rng.choice([0.05, 0.1, 0.2, 0.4, 0.7, 0.9, np.inf], (n, m)) if trial % 3 == 0 else rng.uniform(0, 1, (n, m))
        if trial % 11 == 0:
            cost[rng.integers(n), rng.integers(m)] = np.nan
        small = matching._certify_small(cost, 0.4)
        small_limit, matching._SMALL = matching._SMALL, 0  # force the vectorised path
        try:
            vectorised = matching._certify(cost, 0.4)
        finally:
            matching._SMALL = small_limit
        assert (small is None) == (vectorised is None), cost
        if small is not None:
            decided += 1
            for a, b in zip(small, vectorised):
                np.testing.assert_array_equal(a, b)
                assert a.dtype.kind == "i"
    assert decided > 100
