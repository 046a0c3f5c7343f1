"""Graph IPS and DR, and the chances of observation behind them, on a hand-computed log."""

import math

import numpy as np
import pytest

from stopbandit.controller.ope import (
    Graph,
    Rows,
    doubly_robust,
    dr_graph,
    graph_weights,
    ips,
    ips_graph,
    observation_propensity,
)
from stopbandit.controller.ope.graph import (
    dr_graph_from_rows,
    graph_support_warnings,
    ips_graph_from_rows,
    trace_share,
)

NAN = math.nan
# 4 rows, 3 arms, one segment, the logging pmf [0.2, 0.3, 0.5] everywhere.
MU = np.array([[0.2, 0.3, 0.5]] * 4)
ARM = np.array([2, 1, 0, 2])
LOGGED = np.array([0.5, 0.3, 0.2, 0.5])
TRACED = np.array([True, True, False, False])  # row 2 was played at the lowest arm: unseen
GROUP = np.zeros(4, np.int64)
OBSERVED = np.array([
    [True, True, True],    # played 2, traced: sees 0, 1, 2
    [True, True, False],   # played 1, traced: sees 0, 1
    [True, False, False],  # played 0
    [False, False, True],  # played 2, no trace
])  # fmt: skip
Y = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, NAN], [0.0, NAN, NAN], [NAN, NAN, 1.0]])
# τ = 2 traced of the 3 rows played above the lowest arm; P(0) = 0.2 + 2/3 · 0.8 = 11/15.
P0 = 11 / 15
PROPENSITY = np.array([[P0, 0.8, 0.5], [P0, 0.8, 0.5], [P0, 0.3, 0.5], [P0, 0.3, 0.5]])


def one_hot(arm, n=4, k=3):
    """The pmf of a target playing `arm` on every row."""
    pmf = np.zeros((n, k))
    pmf[:, arm] = 1.0
    return pmf


def test_trace_share_is_per_group_over_rows_played_above_the_lowest_arm():
    """Group 0: 2 of 3 rows above arm 0 traced; group 1: its only row is at arm 0, so 0."""
    share = trace_share(np.array([True, True, False, False, False]),
                        np.array([2, 1, 0, 2, 0]), np.array([0, 0, 0, 0, 1]))  # fmt: skip
    np.testing.assert_allclose(share, [2 / 3, 0.0])


def test_propensity_is_the_mass_from_b_up_when_traced_and_mu_b_when_not():
    """P_i(b) = Σ_{a>=b} μ(a) = [., 0.8, 0.5] traced, μ(b) untraced; P(0) mixes both by τ."""
    propensity = observation_propensity(MU, ARM, LOGGED, TRACED, GROUP)
    np.testing.assert_allclose(propensity, PROPENSITY, rtol=1e-15)


def test_without_traces_the_propensity_is_the_logging_pmf_with_the_logged_probability():
    """τ = 0 and no trace: P = μ, the played arm's entry the logged p_i."""
    logged = np.array([0.45, 0.3, 0.2, 0.5])  # row 0 logged p = 0.45, its pmf says 0.5
    propensity = observation_propensity(MU, ARM, logged, np.zeros(4, bool), GROUP)
    expected = MU.copy()
    expected[0, 2] = 0.45
    np.testing.assert_allclose(propensity, expected, rtol=1e-15)


def test_a_decision_without_a_pmf_only_has_its_played_arms_chance():
    """No pmf: P is p_i at the played arm and NaN elsewhere; its trace is left out of τ."""
    mu = np.array([[NAN, NAN, NAN], [0.2, 0.3, 0.5]])
    propensity = observation_propensity(
        mu, np.array([1, 2]), np.array([0.4, 0.5]), np.array([True, False]), np.zeros(2, np.int64)
    )
    np.testing.assert_array_equal(np.isnan(propensity[0]), [True, False, True])
    assert propensity[0, 1] == 0.4
    np.testing.assert_allclose(propensity[1], [0.2, 0.3, 0.5])  # τ = 0 from the one usable row


@pytest.mark.parametrize(
    ("arm", "value", "terms"),
    [
        (0, 2 / 4 / P0, [1 / P0, 1 / P0, 0.0, 0.0]),  # (1 + 1 + 0) / (11/15) / 4 = 30/44
        (1, 0.3125, [0.0, 1.25, 0.0, 0.0]),  # (0/0.8 + 1/0.8) / 4
        (2, 1.0, [2.0, 0.0, 0.0, 2.0]),  # (1/0.5 + 1/0.5) / 4
    ],
)
def test_ips_graph_of_a_fixed_arm_matches_the_hand_calculation(arm, value, terms):
    """(1/n) Σ_i 1[i observed b] y_ib / P_i(b), and the Wald interval of those terms."""
    est = ips_graph(one_hot(arm), OBSERVED, PROPENSITY, Y)
    assert est.value == pytest.approx(value, rel=1e-12)
    assert est.std_error == pytest.approx(np.std(terms, ddof=1) / 2, rel=1e-12)
    assert (est.n, est.estimator, est.interval) == (4, "ips_graph", "wald")


def test_ips_graph_weights_and_their_diagnostics():
    """Arm 2's row weights are [2, 0, 0, 2]: ESS = 16 / 8 = 2, largest 2, and a low-ESS warning."""
    weights = graph_weights(one_hot(2), OBSERVED, PROPENSITY)
    np.testing.assert_allclose(weights.sum(axis=1), [2.0, 0.0, 0.0, 2.0])
    est = ips_graph(one_hot(2), OBSERVED, PROPENSITY, Y)
    assert (est.ess, est.max_weight) == (2.0, 2.0)
    assert any("low effective sample size" in w for w in est.warnings)


def test_a_stochastic_target_weights_each_arm_by_its_probability():
    """π = [0.5, 0.5, 0] on every row: half of arm 0's estimate plus half of arm 1's."""
    pmf = np.array([[0.5, 0.5, 0.0]] * 4)
    est = ips_graph(pmf, OBSERVED, PROPENSITY, Y)
    assert est.value == pytest.approx(0.5 * (2 / 4 / P0) + 0.5 * 0.3125, rel=1e-12)


@pytest.mark.parametrize(("arm", "value"), [(1, 0.5), (2, 1.0)])
def test_dr_graph_with_a_constant_model_matches_the_hand_calculation(arm, value):
    """q̂ = 0.5: arm 1, 0.5 + ((0 - .5) + (1 - .5)) / .8 / 4 = 0.5; arm 2, 0.5 + 2 · 1 / 4 = 1."""
    est = dr_graph(one_hot(arm), OBSERVED, PROPENSITY, Y, np.full((4, 3), 0.5))
    assert est.value == pytest.approx(value, rel=1e-12)
    assert est.estimator == "dr_graph"


def test_without_traces_graph_ips_and_dr_are_ips_and_dr():
    """Only the played arm observed, P = μ: the graph estimators are the plain ones."""
    observed = np.zeros((4, 3), bool)
    observed[np.arange(4), ARM] = True
    y = np.where(observed, 1.0 + np.arange(12).reshape(4, 3), NAN)
    propensity = observation_propensity(MU, ARM, LOGGED, np.zeros(4, bool), GROUP)
    pmf = np.array([[0.1, 0.6, 0.3]] * 4)
    played_y = y[np.arange(4), ARM]
    target = pmf[np.arange(4), ARM]
    q = np.arange(12.0).reshape(4, 3) / 10
    graph, plain = ips_graph(pmf, observed, propensity, y), ips(target, LOGGED, played_y)
    assert graph.value == pytest.approx(plain.value, rel=1e-12)
    assert graph.std_error == pytest.approx(plain.std_error, rel=1e-12)
    assert graph.ess == pytest.approx(plain.ess, rel=1e-12)
    doubly = dr_graph(pmf, observed, propensity, y, q)
    assert doubly.value == pytest.approx(doubly_robust(pmf, ARM, LOGGED, played_y, q).value)


def test_an_observation_with_unknown_chance_is_not_weighted():
    """A NaN chance where observed (a trace without a pmf) contributes nothing to graph IPS."""
    propensity = PROPENSITY.copy()
    propensity[1, 1] = NAN
    est = ips_graph(one_hot(1), OBSERVED, propensity, Y)
    assert est.value == 0.0  # row 0 saw 0 at arm 1; row 1's 1 is not weighted


def test_a_target_arm_nobody_observed_is_missing_support():
    """Group 1 plays arm 1, which none of its rows observed: one warning naming the cell."""
    weights = graph_weights(one_hot(1), OBSERVED, PROPENSITY)
    group = np.array([0, 0, 1, 1])
    assert graph_support_warnings(one_hot(1), weights, group) == (
        "missing support: group 1 arm 1 never observed (target mass 1)",
    )
    assert graph_support_warnings(one_hot(1), weights) == ()


def test_notes_are_carried_after_the_weights_warnings():
    """Notes about the traces end the estimate's warnings."""
    est = ips_graph(one_hot(0), OBSERVED, PROPENSITY, Y, notes=("a note",))
    assert est.warnings[-1] == "a note"


GOOD = {"pmf": one_hot(1), "observed": OBSERVED, "propensity": PROPENSITY, "y": Y}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pmf": np.full((4, 3), 0.5)}, "rows must sum to 1"),
        ({"observed": OBSERVED.astype(int)}, "observed must be boolean"),
        ({"observed": OBSERVED[:3]}, "observed must have target_pmf's shape"),
        ({"propensity": np.where(OBSERVED, 0.0, 1.0)}, r"propensity must be in \(0, 1\]"),
        ({"propensity": PROPENSITY * 2.0}, r"propensity must be in \(0, 1\]"),
        ({"propensity": PROPENSITY[:, :2]}, "propensity must have observed's shape"),
        ({"y": np.full((4, 3), NAN)}, "y must be finite wherever observed"),
        ({"y": Y[:2]}, "y must have observed's shape"),
    ],
)
def test_graph_estimators_refuse_inconsistent_inputs(change, message):
    """Each broken input is named; both estimators check the same way."""
    args = {**GOOD, **change}
    with pytest.raises(ValueError, match=message):
        ips_graph(args["pmf"], args["observed"], args["propensity"], args["y"])
    with pytest.raises(ValueError, match=message):
        dr_graph(args["pmf"], args["observed"], args["propensity"], args["y"], np.zeros((4, 3)))


@pytest.mark.parametrize("q_hat", [np.zeros((4, 2)), np.full((4, 3), NAN)])
def test_dr_graph_refuses_a_model_of_the_wrong_shape_or_not_finite(q_hat):
    """q̂ must be finite and shaped like the target pmf."""
    with pytest.raises(ValueError, match="q_hat must be finite"):
        dr_graph(one_hot(1), OBSERVED, PROPENSITY, Y, q_hat)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pmf": MU * 1.5}, "logged_pmf rows must sum to 1"),
        ({"pmf": np.ones(4)}, "logged_pmf must be a non-empty n x K matrix"),
        ({"arm": np.array([2, 1, 0, 3])}, "arm must be < 3"),
        ({"probability": np.array([0.5, 0.3, 0.0, 0.5])}, r"logged_probability must be in"),
        ({"traced": TRACED[:3]}, "inputs must have the same length"),
        ({"group": np.array([0, 0, -1, 0])}, "group must be >= 0"),
    ],
)
def test_observation_propensity_refuses_inconsistent_inputs(change, message):
    """The logged pmf, arms, propensities, traces and groups are checked, naming the bad one."""
    args = {"pmf": MU, "arm": ARM, "probability": LOGGED, "traced": TRACED, "group": GROUP}
    args |= change
    with pytest.raises(ValueError, match=message):
        observation_propensity(
            args["pmf"], args["arm"], args["probability"], args["traced"], args["group"]
        )


def rows(graph):
    """Rows of arm 1's target with `graph` (None: a log without traces)."""
    pmf = one_hot(1)
    target = pmf[np.arange(4), ARM]
    return Rows(arm=ARM, logged_probability=LOGGED, target_probability=target,
                weights=target / LOGGED, warnings=("played-arm warning",), y=Y[:, 0],
                confidence=0.9, target_pmf=pmf, graph=graph)  # fmt: skip


def test_the_registered_forms_read_the_rows_graph_and_their_own_diagnostics():
    """From rows: the same estimates, at the rows' confidence, without the played-arm warnings."""
    graph = Graph(OBSERVED, Y, PROPENSITY, GROUP, q_hat=np.full((4, 3), 0.5))
    est = ips_graph_from_rows(rows(graph))
    assert est.value == pytest.approx(0.3125)
    assert est.confidence == 0.9
    assert "played-arm warning" not in est.warnings
    assert dr_graph_from_rows(rows(graph)).value == pytest.approx(0.5)


def test_the_registered_forms_need_a_graph_and_graph_dr_its_model():
    """Without observations (or, for DR, their reward model) they refuse."""
    with pytest.raises(ValueError, match="observations"):
        ips_graph_from_rows(rows(None))
    with pytest.raises(ValueError, match="reward model"):
        dr_graph_from_rows(rows(Graph(OBSERVED, Y, PROPENSITY, GROUP)))
