"""Every estimator rejects malformed logs with a ValueError that names the problem."""

import numpy as np
import pytest

from stopbandit.controller.ope import doubly_robust, dr, ips, snips, support_warnings, wald_interval

NAN, INF = float("nan"), float("inf")

GOOD = {
    "target_probability": np.array([0.5, 1.0, 0.0]),
    "logged_probability": np.array([0.5, 0.5, 1.0]),
    "y": np.array([1.0, 0.0, 1.0]),
}

WEIGHTED_CASES = [
    ({"logged_probability": np.array([0.0, 0.5, 1.0])}, r"logged_probability must be in \(0, 1\]"),
    ({"logged_probability": np.array([0.5, 1.5, 1.0])}, r"logged_probability must be in \(0, 1\]"),
    ({"logged_probability": np.array([-0.1, 0.5, 1.0])}, r"logged_probability must be in"),
    ({"logged_probability": np.array([NAN, 0.5, 1.0])}, "logged_probability must be finite"),
    ({"target_probability": np.array([0.5, 1.1, 0.0])}, r"target_probability must be in \[0, 1\]"),
    ({"target_probability": np.array([0.5, -0.1, 0.0])}, r"target_probability must be in"),
    ({"target_probability": np.array([0.5, 1.0])}, "inputs must have the same length"),
    ({"y": np.array([1.0, 0.0])}, "inputs must have the same length"),
    ({"y": np.array([1.0, NAN, 1.0])}, "y must be finite"),
    ({"y": np.array([1.0, INF, 1.0])}, "y must be finite"),
    ({"y": np.ones((3, 1))}, "y must be 1-D"),
    ({"target_probability": np.ones((3, 1))}, "target_probability must be 1-D"),
    (
        {"target_probability": np.array([]), "logged_probability": np.array([]), "y": np.array([])},
        "must not be empty",
    ),
    ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
    ({"confidence": 0.0}, r"confidence must be in \(0, 1\)"),
    ({"target_pmf": np.array([[0.5, 0.5], [0, 1.0], [1.0, 0]])}, "must be given together"),
    ({"group": np.array([0, 0, 1])}, "group is only used with target_pmf and arm"),
    (
        {"target_pmf": np.array([[0.5, 0.5], [0, 1.0], [1.0, 0]]), "arm": np.array([0, 0, 1])},
        "target_probability must equal target_pmf",
    ),
    (
        {"target_pmf": np.array([[0.5, 0.6], [0, 1.0], [1.0, 0]]), "arm": np.array([0, 1, 1])},
        "target_pmf rows must sum to 1",
    ),
    (
        {"target_pmf": np.array([[0.5, 0.5], [0, 1.0], [1.0, 0]]), "arm": np.array([0, 1, 2])},
        "arm must be < 2",
    ),
    (
        {"target_pmf": np.array([[0.5, 0.5], [0, 1.0], [1.0, 0]]), "arm": np.array([0.0, 1, 1])},
        "arm must hold integers",
    ),
]


@pytest.mark.parametrize("estimator", [ips, snips])
@pytest.mark.parametrize(("change", "message"), WEIGHTED_CASES)
def test_weighted_estimators_reject(estimator, change, message):
    """IPS and SNIPS validate propensities, lengths, outcomes and the optional pmf."""
    kwargs = {**GOOD, **change}
    with pytest.raises(ValueError, match=message):
        estimator(**kwargs)


@pytest.mark.parametrize("estimator", [ips, snips])
def test_weighted_estimators_accept_the_good_log(estimator):
    """The baseline of the table is valid, so each failure above is the change's."""
    assert estimator(**GOOD).n == 3


PMF = np.array([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
DR_GOOD = {
    "target_pmf": PMF,
    "arm": np.array([0, 1, 1]),
    "logged_probability": np.array([0.5, 0.5, 1.0]),
    "y": np.array([1.0, 0.0, 1.0]),
    "q_hat": np.zeros((3, 2)),
}

DR_CASES = [
    ({"target_pmf": np.array([0.5, 0.5])}, "target_pmf must be a non-empty n x K matrix"),
    ({"target_pmf": np.array([[0.5, 0.5], [0, 1.0], [1.5, -0.5]])}, r"entries must be in \[0, 1\]"),
    ({"target_pmf": np.array([[0.5, 0.5], [0, 1.0], [0.5, 0.4]])}, "rows must sum to 1"),
    ({"target_pmf": np.array([[0.5, 0.5], [0, 1.0], [NAN, 1.0]])}, "target_pmf must be finite"),
    ({"arm": np.array([0, 1, 2])}, "arm must be < 2"),
    ({"arm": np.array([0, -1, 1])}, "arm must be >= 0"),
    ({"arm": np.array([0, 1])}, "inputs must have the same length"),
    ({"logged_probability": np.array([0.5, 0.0, 1.0])}, "logged_probability must be in"),
    ({"y": np.array([1.0, NAN, 1.0])}, "y must be finite"),
    ({"q_hat": np.zeros((3, 3))}, "q_hat must have target_pmf's shape"),
    ({"q_hat": np.full((3, 2), NAN)}, "q_hat must be finite"),
]


@pytest.mark.parametrize(("change", "message"), DR_CASES)
def test_doubly_robust_rejects(change, message):
    """DR validates the pmf, arms, propensities, outcomes and the reward model."""
    with pytest.raises(ValueError, match=message):
        doubly_robust(**{**DR_GOOD, **change})


def test_doubly_robust_accepts_the_good_log():
    """The baseline of the DR table is valid."""
    assert doubly_robust(**DR_GOOD).n == 3


CROSS_FIT_GOOD = {
    "target_pmf": PMF,
    "arm": np.array([0, 1, 1]),
    "group": np.array([0, 0, 1]),
    "logged_probability": np.array([0.5, 0.5, 1.0]),
    "y": np.array([1.0, 0.0, 1.0]),
}

CROSS_FIT_CASES = [
    ({"group": np.array([0, -1, 1])}, "group must be >= 0"),
    ({"group": np.array([0, 1])}, "inputs must have the same length"),
    ({"group": np.array([0.0, 1.0, 1.0])}, "group must hold integers"),
    ({"n_folds": 1}, "n_folds must be >= 2"),
    ({"folds": np.array([0, 1])}, "inputs must have the same length"),
    ({"prior_rows": -1.0}, "prior_rows must be >= 0"),
    ({"arm": np.array([0, 1, 5])}, "arm must be < 2"),
]


@pytest.mark.parametrize(("change", "message"), CROSS_FIT_CASES)
def test_cross_fitted_dr_rejects(change, message):
    """The cross-fitted DR also validates groups, folds and the shrinkage weight."""
    with pytest.raises(ValueError, match=message):
        dr(**{**CROSS_FIT_GOOD, **change})


def test_cross_fitted_dr_accepts_the_good_log():
    """The baseline of the cross-fit table is valid."""
    assert dr(**CROSS_FIT_GOOD, n_folds=2).n == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.array([1.0, NAN]),), "terms must be finite"),
        ((np.array([1.0, 2.0]), 1.5), "confidence must be in"),
        ((np.array([]),), "terms must not be empty"),
    ],
)
def test_wald_interval_rejects(args, message):
    """Intervals need finite terms and a confidence in (0, 1)."""
    with pytest.raises(ValueError, match=message):
        wald_interval(*args)


def test_support_warnings_reject_mismatched_groups():
    """Groups must align with rows."""
    with pytest.raises(ValueError, match="inputs must have the same length"):
        support_warnings(PMF, np.array([0, 1, 1]), np.array([0, 1]))
