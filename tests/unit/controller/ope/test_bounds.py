"""Partial identification: cell ESS, observation weights, bounds, and partial pmfs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stopbandit.controller.ope import Estimate, dr_terms
from stopbandit.controller.ope._checks import target_pmf
from stopbandit.controller.ope.bounds import bounded, cell_ess, observation_weights


def estimate(value, low, high):
    """An ordinary estimate with the given value and interval."""
    return Estimate(value, low, high, 0.1, 0.95, 10.0, 2.0, 5, (), "ips", "wald")


def test_observation_weights_are_one_over_the_chance_and_one_where_it_is_unknown():
    """W = 1/P where observed and P is known, 1 where observed with P unknown, else 0."""
    observed = np.array([[True, False], [True, True]])
    chance = np.array([[0.25, np.nan], [0.5, np.nan]])
    assert observation_weights(observed, chance).tolist() == [[4.0, 0.0], [2.0, 1.0]]


def test_cell_ess_is_kish_per_group_and_arm():
    """Weights 2, 2 (group 0, arm 0): ESS 2; 1, 3 (group 1, arm 1): 16/10; unobserved: 0."""
    weights = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    ess = cell_ess(weights, np.array([0, 0, 1, 1]), 2)
    assert ess == pytest.approx(np.array([[2.0, 0.0], [0.0, 1.6]]))


def test_bounds_add_the_unidentified_mass_range_to_the_identified_interval():
    """[ci_low + low, ci_high + high], value at the middle, identified = 1 - share."""
    result = bounded(estimate(0.4, 0.3, 0.5), 0.25, 0.0, 0.25, template=estimate(0, 0, 0))
    assert (result.ci_low, result.ci_high) == pytest.approx((0.3, 0.75))
    assert result.value == pytest.approx(0.4 + 0.125)
    assert result.interval == "bounds"
    assert result.identified == pytest.approx(0.75)
    assert result.std_error == pytest.approx(0.1)


def test_nothing_identified_gives_the_range_itself():
    """Without an identified part the bounds are the outcome's range (its sums)."""
    result = bounded(None, 1.0, -2.0, 1.0, template=estimate(math.nan, math.nan, math.nan))
    assert (result.ci_low, result.ci_high, result.value) == (-2.0, 1.0, -0.5)
    assert result.identified == 0.0


def test_a_partial_pmf_may_sum_below_one_but_not_above():
    """`partial` accepts rows summing to at most 1; the full check still wants exactly 1."""
    part = np.array([[0.5, 0.0], [0.0, 0.0]])
    assert target_pmf(part, partial=True).shape == (2, 2)
    with pytest.raises(ValueError, match="sum to 1"):
        target_pmf(part)
    with pytest.raises(ValueError, match="at most 1"):
        target_pmf(np.array([[0.7, 0.7]]), partial=True)


@given(
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 1)), min_size=2, max_size=20),
    st.floats(0.05, 0.95),
)
def test_dr_of_a_partial_pmf_is_the_full_estimate_less_the_rest(rows, keep):
    """Linearity: DR(π) = DR(π·S) + DR(π·(1-S)) for any split, term by term."""
    y = np.array([r[0] for r in rows])
    arm = np.array([r[1] for r in rows])
    n = y.size
    pmf = np.tile([keep, 1.0 - keep], (n, 1))
    probability = np.full(n, 0.5)
    q_hat = np.tile([0.3, 0.6], (n, 1))
    full = sum(dr_terms(pmf, arm, probability, y, q_hat))
    left = np.where([True, False], pmf, 0.0)
    right = pmf - left
    parts = sum(dr_terms(left, arm, probability, y, q_hat, partial=True)) + sum(
        dr_terms(right, arm, probability, y, q_hat, partial=True)
    )
    assert parts == pytest.approx(full)
