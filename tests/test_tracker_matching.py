"""assign(): the matching of lap.lapjv(extend_cost=True, cost_limit=L), checked against independent references.

lapjv with a cost limit L minimises the matched costs plus L/2 per unmatched row and per unmatched
column (lap pads the matrix with L/2 entries), so it never matches a pair above L and a pair costs
what leaving both its row and column unmatched costs only at L exactly. That is not "full assignment,
then drop the pairs above L" (see test_cost_limit_is_not_assign_then_threshold). The references:
brute force over every partial matching (small matrices), and scipy's linear_sum_assignment on
min(cost - L, 0): any partial matching extends to a complete one with entries <= 0, so the complete
optimum holds the optimal partial matching in its entries < 0.
"""
from __future__ import annotations

import lap
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from kprtrack.tracker.matching import _mutual_best, assign

L = 0.4


def objective(cost: np.ndarray, pairs, max_cost: float = L) -> float:
    """lapjv's objective: matched costs + max_cost / 2 per unmatched row and column."""
    n_rows, n_cols = cost.shape
    return sum(cost[i, j] for i, j in pairs) + max_cost / 2 * (n_rows + n_cols - 2 * len(pairs))


def matchable(cost: np.ndarray, max_cost: float = L) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(cost) & (cost <= max_cost)  # NaN and inf: forbidden


def brute_force(cost: np.ndarray, max_cost: float = L) -> list[tuple[float, frozenset]]:
    """Every partial matching over the matchable pairs, with its objective, best first."""
    allowed = matchable(cost, max_cost)
    n_rows, n_cols = cost.shape
    found = []

    def extend(row: int, used: frozenset, pairs: tuple) -> None:
        if row == n_rows:
            found.append((objective(cost, pairs, max_cost), frozenset(pairs)))
            return
        extend(row + 1, used, pairs)  # row left unmatched
        for col in range(n_cols):
            if col not in used and allowed[row, col]:
                extend(row + 1, used | {col}, pairs + ((row, col),))

    extend(0, frozenset(), ())
    return sorted(found, key=lambda item: item[0])


def scipy_reference(cost: np.ndarray, max_cost: float = L) -> set:
    """The optimal partial matching via linear_sum_assignment on min(cost - max_cost, 0) (0 = forbidden)."""
    allowed = matchable(cost, max_cost)
    gain = np.where(allowed, cost - max_cost, 0.0)
    rows, cols = linear_sum_assignment(gain)
    return {(int(i), int(j)) for i, j in zip(rows, cols) if gain[i, j] < 0}


def as_pairs(matches: np.ndarray) -> set:
    return {(int(i), int(j)) for i, j in matches}


def check_result(cost: np.ndarray, result, max_cost: float = L) -> set:
    """A valid partial matching of matchable pairs whose free rows/cols are exactly the others."""
    matches, free_rows, free_cols = result
    assert matches.dtype.kind == "i" and matches.shape[1:] == (2,)
    pairs = as_pairs(matches)
    assert len(pairs) == len(matches)
    rows, cols = [i for i, _ in pairs], [j for _, j in pairs]
    assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)  # one-to-one
    assert all(matchable(cost, max_cost)[i, j] for i, j in pairs)
    assert sorted(free_rows.tolist()) == sorted(set(range(cost.shape[0])) - set(rows))
    assert sorted(free_cols.tolist()) == sorted(set(range(cost.shape[1])) - set(cols))
    return pairs


def random_cost(rng, n_rows: int, n_cols: int, trial: int) -> np.ndarray:
    cost = rng.uniform(0.0, 1.0, (n_rows, n_cols))
    if trial % 2:  # tracking-like: a clear diagonal of own-identity matches, other people above L
        k = min(n_rows, n_cols)
        cost = rng.uniform(0.45, 1.0, (n_rows, n_cols))
        cost[np.arange(k), rng.permutation(n_cols)[:k]] = rng.uniform(0.0, 0.3, k)
    if trial % 5 == 0:
        cost[rng.random((n_rows, n_cols)) < 0.2] = np.inf
    if trial % 13 == 0:
        cost[rng.integers(n_rows), rng.integers(n_cols)] = np.nan
    return cost


def test_the_references_agree_with_each_other_and_with_lapjv():
    """Brute force and the scipy reduction find the same optimum, and it is what lapjv minimises."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        n_rows, n_cols = rng.integers(1, 6, 2)
        cost = random_cost(rng, n_rows, n_cols, trial)
        ranked = brute_force(cost)
        best_value, best = ranked[0]
        reference = scipy_reference(cost)
        assert objective(cost, reference) == pytest.approx(best_value, abs=1e-12)
        if len(ranked) == 1 or ranked[1][0] > best_value + 1e-9:
            assert reference == best
        finite = np.minimum(np.where(np.isfinite(cost), cost, L + 1.0), L + 1.0)
        _, row_to_col, _ = lap.lapjv(finite, extend_cost=True, cost_limit=L)
        by_lapjv = {(i, int(j)) for i, j in enumerate(row_to_col) if j >= 0 and finite[i, j] <= L}
        assert objective(cost, by_lapjv) == pytest.approx(best_value, abs=1e-9)


def test_cost_limit_is_not_assign_then_threshold():
    # A full assignment takes the anti-diagonal (0.6 < 1.0) and keeps both pairs (0.3 <= L). With the
    # cost limit, (0, 0) alone costs 0.1 + L/2 (row 1 unmatched) + L/2 (column 1) = 0.5 < 0.6.
    cost = np.array([[0.1, 0.3], [0.3, 0.9]])
    rows, cols = linear_sum_assignment(cost)
    assert {(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] <= L} == {(0, 1), (1, 0)}
    assert brute_force(cost)[0][1] == {(0, 0)}
    matches, free_rows, free_cols = assign(cost, L)
    assert as_pairs(matches) == {(0, 0)} and free_rows.tolist() == [1] and free_cols.tolist() == [1]


def test_assign_is_optimal_on_small_matrices_by_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(400):
        n_rows, n_cols = rng.integers(1, 6, 2)
        cost = random_cost(rng, n_rows, n_cols, trial)
        if trial % 7 == 0:
            cost[:, 0] = cost[:, -1]  # tied columns
        if trial % 11 == 0:
            cost[rng.integers(n_rows), rng.integers(n_cols)] = L  # exactly at the limit
        pairs = check_result(cost, assign(cost, L))
        ranked = brute_force(cost)
        assert objective(cost, pairs) == pytest.approx(ranked[0][0], abs=1e-9), cost
        if len(ranked) == 1 or ranked[1][0] > ranked[0][0] + 1e-9:
            assert pairs == ranked[0][1], cost  # a unique optimum: the very same pairs


def test_assign_equals_linear_sum_assignment_on_tracking_sizes():
    rng = np.random.default_rng(2)
    certified = 0
    for trial in range(400):
        n_rows, n_cols = rng.integers(1, 25, 2)
        cost = random_cost(rng, n_rows, n_cols, trial)
        pairs = check_result(cost, assign(cost, L))
        reference = scipy_reference(cost)
        # Continuous random costs: the optimum is unique, so the pairs themselves must agree.
        assert pairs == reference, cost
        certified += _mutual_best(cost, L) is not None
    assert certified > 100  # the cheap certificate really decides many of them


def test_certified_matchings_are_the_optimal_ones():
    rng = np.random.default_rng(3)
    decided = 0
    for trial in range(600):
        n_rows, n_cols = rng.integers(1, 6, 2)
        if trial % 3 == 0:  # a few distinct values: many ties, which the certificate must decline
            cost = rng.choice([0.05, 0.1, 0.2, L, 0.7, 0.9, np.inf], (n_rows, n_cols))
        else:
            cost = random_cost(rng, n_rows, n_cols, trial)
        certified = _mutual_best(cost, L)
        if certified is None:
            continue
        decided += 1
        pairs = {(int(i), int(j)) for i, j in zip(*certified)}
        ranked = brute_force(cost)
        assert pairs == ranked[0][1], cost
        assert len(ranked) == 1 or ranked[1][0] > ranked[0][0] + 1e-12, cost  # it claims a unique optimum
    assert decided > 150


def test_mutual_best_declines_ties_and_boundary_costs():
    assert _mutual_best(np.array([[0.1, 0.1], [0.9, 0.9]]), L) is None  # tied row minimum
    assert _mutual_best(np.array([[0.4, 0.9], [0.9, 0.1]]), L) is None  # exactly at the limit
    assert _mutual_best(np.array([[0.1, 0.2], [0.05, 0.9]]), L) is None  # not mutual bests
    assert _mutual_best(np.array([[0.1, np.nan], [0.9, 0.2]]), L) is None  # NaN: lapjv decides
    rows, cols = _mutual_best(np.array([[0.9, 0.1], [0.2, 0.8]]), L)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_empty_and_fully_forbidden_matrices():
    for shape in ((0, 3), (3, 0), (0, 0)):
        matches, free_rows, free_cols = assign(np.zeros(shape), L)
        assert matches.shape == (0, 2) and free_rows.tolist() == list(range(shape[0]))
        assert free_cols.tolist() == list(range(shape[1]))
    matches, free_rows, free_cols = assign(np.full((2, 3), np.inf), L)
    assert len(matches) == 0 and free_rows.tolist() == [0, 1] and free_cols.tolist() == [0, 1, 2]
