"""The direct estimate (each arm's observed mean per segment) and the model of observations."""

import math

import numpy as np
import pytest

from stopbandit.controller.ope import Graph, Rows, cross_fit, cross_fit_observed, direct
from stopbandit.controller.ope.direct import direct_from_rows

NAN = math.nan
Z95 = 1.959963984540054
# 6 rows, 2 arms, 2 segments of 3 rows each.
GROUP = np.array([0, 0, 0, 1, 1, 1])
Y = np.array([[1.0, 0.0], [0.0, NAN], [1.0, NAN], [1.0, 1.0], [0.0, NAN], [NAN, 1.0]])
OBSERVED = ~np.isnan(Y)


def one_hot(arm, n=6, k=2):
    """The pmf of a target playing `arm` on every row."""
    pmf = np.zeros((n, k))
    pmf[:, arm] = 1.0
    return pmf


def test_a_fixed_arm_is_the_traffic_weighted_mean_of_each_segments_observed_mean():
    """Arm 0: segment means 2/3 (3 seen) and 1/2 (2 of 3 seen); V = 0.5 · 2/3 + 0.5 · 1/2 = 7/12.

    Influence terms: ȳ_s + (n_s / m_s)(y - ȳ_s) where observed, ȳ_s elsewhere:
    [1, 0, 1, 1.25, -0.25, 0.5]; row weights [1, 1, 1, 1.5, 1.5, 0], ESS 36 / 7.5.
    """
    est = direct(one_hot(0), OBSERVED, Y, GROUP, min_observations=1)
    terms = [1.0, 0.0, 1.0, 1.25, -0.25, 0.5]
    se = np.std(terms, ddof=1) / math.sqrt(6)
    assert est.value == pytest.approx(7 / 12, rel=1e-12)
    assert est.std_error == pytest.approx(se, rel=1e-12)
    assert (est.ci_low, est.ci_high) == pytest.approx((7 / 12 - Z95 * se, 7 / 12 + Z95 * se))
    assert est.ess == pytest.approx(4.8, rel=1e-12)
    assert est.max_weight == 1.5
    assert (est.n, est.estimator, est.interval) == (6, "direct", "wald")


def test_in_one_segment_the_ess_is_the_count_of_direct_observations():
    """Segment 1 alone, arm 0: 2 observations, so ESS 2, and the value is their mean."""
    rows = GROUP == 1
    est = direct(one_hot(0, 3), OBSERVED[rows], Y[rows], GROUP[rows], min_observations=1)
    assert (est.value, est.ess) == (0.5, pytest.approx(2.0))


def test_a_stochastic_target_weights_each_cell_by_its_mass():
    """π = [0.5, 0.5]: Σ (Π_sb / n) ȳ_sb = 0.25 (2/3 + 0 + 1/2 + 1) = 13/24, both arms' mean."""
    est = direct(np.full((6, 2), 0.5), OBSERVED, Y, GROUP, min_observations=1)
    assert est.value == pytest.approx(13 / 24, rel=1e-12)


def test_cells_with_few_observations_are_warned_about():
    """Arm 1: segment 0 saw it once, segment 1 twice; a floor of 2 warns about segment 0 only."""
    est = direct(one_hot(1), OBSERVED, Y, GROUP, min_observations=2)
    assert est.value == pytest.approx(0.5)
    assert [w for w in est.warnings if w.startswith("few")] == [
        "few direct observations: group 0 arm 1 observed 1 times"
    ]


def test_a_played_cell_nobody_observed_has_no_estimate():
    """Segment 1 never observed arm 1 here: the value is NaN, with a warning naming the cell."""
    observed = OBSERVED.copy()
    observed[GROUP == 1, 1] = False
    est = direct(one_hot(1), observed, Y, GROUP)
    assert math.isnan(est.value)
    assert math.isnan(est.ci_low)
    assert est.warnings == ("no direct observation: group 1 arm 1 never observed (target mass 1)",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pmf": np.full((6, 2), 0.6)}, "rows must sum to 1"),
        ({"observed": OBSERVED.astype(float)}, "observed must be boolean"),
        ({"y": np.nan_to_num(Y, nan=0.0) * np.nan}, "y must be finite wherever observed"),
        ({"group": GROUP[:5]}, "inputs must have the same length"),
        ({"group": -GROUP}, "group must be >= 0"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
    ],
)
def test_direct_refuses_inconsistent_inputs(change, message):
    """Each broken input is named."""
    args = {"pmf": one_hot(0), "observed": OBSERVED, "y": Y, "group": GROUP, "confidence": 0.95}
    args |= change
    with pytest.raises(ValueError, match=message):
        direct(args["pmf"], args["observed"], args["y"], args["group"],
               confidence=args["confidence"])  # fmt: skip


def rows(graph):
    """Rows of arm 0's target with `graph`."""
    pmf = one_hot(0)
    ones = np.ones(6)
    return Rows(arm=np.zeros(6, np.int64), logged_probability=ones, target_probability=ones,
                weights=ones, warnings=(), y=np.zeros(6), confidence=0.9, target_pmf=pmf,
                graph=graph)  # fmt: skip


def test_the_registered_form_reads_the_rows_graph():
    """From rows: the same estimate at the rows' confidence; without a graph it refuses."""
    est = direct_from_rows(rows(Graph(OBSERVED, Y, np.ones((6, 2)), GROUP)))
    assert (est.value, est.confidence) == (pytest.approx(7 / 12), 0.9)
    with pytest.raises(ValueError, match="observations"):
        direct_from_rows(rows(None))


def test_the_reward_model_of_played_arms_only_is_cross_fit():
    """One observation per row (the played arm): `cross_fit_observed` is `cross_fit`."""
    arm = np.array([0, 1, 1, 0, 0, 1])
    y = np.arange(6.0)
    matrix = np.full((6, 2), NAN)
    matrix[np.arange(6), arm] = y
    folds = np.array([0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(
        cross_fit_observed(matrix, ~np.isnan(matrix), GROUP, folds=folds),
        cross_fit(y, arm, GROUP, n_arms=2, folds=folds),
    )


def test_the_reward_model_learns_from_every_observation_outside_the_rows_fold():
    """Without shrinkage, rows of fold 0 get the cell means of fold 1's observations.

    Fold 1 is rows 1, 3, 5: segment 0 saw arm 0 once (0), segment 1 arm 0 once (1) and
    arm 1 twice (1, 1); segment 0's arm 1 has no row there, so it takes arm 1's pooled mean 1.
    """
    folds = np.array([0, 1, 0, 1, 0, 1])
    q = cross_fit_observed(Y, OBSERVED, GROUP, folds=folds, prior_rows=0.0)
    np.testing.assert_allclose(q[[0, 2]], [[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(q[4], [1.0, 1.0])


def test_the_reward_model_refuses_observations_that_are_not_a_matrix():
    """`observed` must be n x K."""
    with pytest.raises(ValueError, match="observed must be an n x K matrix"):
        cross_fit_observed(Y[:, 0], OBSERVED[:, 0], GROUP, folds=np.zeros(6, np.int64))
