"""Invariants of the off-policy estimators on arbitrary small logs."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stopbandit.controller.ope import (
    cross_fit,
    doubly_robust,
    dr,
    dr_terms,
    fold_assignment,
    ips,
    snips,
)
from stopbandit.controller.ope.ips import importance_weights

OUTCOME = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)
PROPENSITY = st.floats(0.01, 1.0)


@st.composite
def logs(draw):
    """A log of n rows over K arms and G groups, with a target pmf per row."""
    n = draw(st.integers(2, 40))
    n_arms = draw(st.integers(1, 5))
    n_groups = draw(st.integers(1, 3))
    arm = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_arms - 1)))
    group = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_groups - 1)))
    logged = draw(hnp.arrays(np.float64, n, elements=PROPENSITY))
    raw = draw(hnp.arrays(np.float64, (n, n_arms), elements=st.floats(0.01, 1.0)))
    pmf = raw / raw.sum(axis=1, keepdims=True)
    y = draw(hnp.arrays(np.float64, n, elements=OUTCOME))
    return {"arm": arm, "group": group, "logged": logged, "pmf": pmf, "y": y}


@given(
    logged=hnp.arrays(np.float64, st.integers(1, 50), elements=PROPENSITY),
    data=st.data(),
)
def test_on_policy_weights_are_one_and_ips_is_the_mean(logged, data):
    """When the target is the logging policy, w = 1 and IPS is the sample mean."""
    y = data.draw(hnp.arrays(np.float64, logged.size, elements=OUTCOME))
    np.testing.assert_array_equal(importance_weights(logged, logged), 1.0)
    assert abs(ips(logged, logged, y).value - y.mean()) <= 1e-9
    assert abs(snips(logged, logged, y).value - y.mean()) <= 1e-9


@given(log=logs())
def test_snips_stays_within_the_range_of_y(log):
    """A weighted average of y cannot leave [min y, max y]."""
    target = log["pmf"][np.arange(log["y"].size), log["arm"]]
    value = snips(target, log["logged"], log["y"]).value
    assert log["y"].min() - 1e-9 <= value <= log["y"].max() + 1e-9


@given(log=logs(), table=st.data())
def test_dr_with_a_perfect_model_has_zero_corrections(log, table):
    """With deterministic y = q(g, a) and q̂ = q, every residual, hence every correction, is 0."""
    n_groups, n_arms = int(log["group"].max()) + 1, log["pmf"].shape[1]
    q = table.draw(hnp.arrays(np.float64, (n_groups, n_arms), elements=OUTCOME))
    y = q[log["group"], log["arm"]]
    q_hat = q[log["group"]]
    direct, correction = dr_terms(log["pmf"], log["arm"], log["logged"], y, q_hat)
    np.testing.assert_array_equal(correction, 0.0)
    est = doubly_robust(log["pmf"], log["arm"], log["logged"], y, q_hat)
    assert abs(est.std_error - direct.std(ddof=1) / np.sqrt(y.size)) <= 1e-9


@given(
    log=logs(),
    y2=st.data(),
    a=st.floats(-10.0, 10.0),
    b=st.floats(-10.0, 10.0),
)
def test_ips_and_dr_are_linear_in_y(log, y2, a, b):
    """est(a*y1 + b*y2) = a*est(y1) + b*est(y2) for IPS and cross-fitted DR."""
    n = log["y"].size
    y1 = log["y"]
    other = y2.draw(hnp.arrays(np.float64, n, elements=OUTCOME))
    target = log["pmf"][np.arange(n), log["arm"]]
    combined = a * y1 + b * other

    def ips_of(y):
        return ips(target, log["logged"], y).value

    folds = fold_assignment(n, 2, seed=0)

    def dr_of(y):
        return dr(log["pmf"], log["arm"], log["group"], log["logged"], y, folds=folds).value

    for estimate in (ips_of, dr_of):
        expected = a * estimate(y1) + b * estimate(other)
        assert abs(estimate(combined) - expected) <= 1e-6


@given(log=logs())
def test_cross_fit_predictions_lie_within_the_range_of_y(log):
    """Shrunk means are convex combinations of training outcomes (or 0 with no training rows)."""
    folds = fold_assignment(log["y"].size, 2, seed=1)
    q = cross_fit(log["y"], log["arm"], log["group"], n_arms=log["pmf"].shape[1], folds=folds)
    low, high = min(log["y"].min(), 0.0), max(log["y"].max(), 0.0)
    assert np.all(q >= low - 1e-9)
    assert np.all(q <= high + 1e-9)
