"""The estimator registry: what ships, in which order, and what it refuses."""

from dataclasses import replace

import numpy as np
import pytest

from stopbandit.controller.ope import (
    ESTIMATORS,
    Estimator,
    Registry,
    Rows,
    doubly_robust,
    ips,
    snips,
)
from stopbandit.controller.ope.intervals import wald_estimate

# 3 rows, 2 arms (as in test_dr): w = [2, 2, 2].
PMF = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
ARM = np.array([0, 1, 1])
LOGGED = np.array([0.5, 0.25, 0.5])
Y = np.array([1.0, 0.0, 1.0])
Q = np.array([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5]])
TARGET = PMF[np.arange(3), ARM]
ROWS = Rows(
    arm=ARM,
    logged_probability=LOGGED,
    target_probability=TARGET,
    weights=TARGET / LOGGED,
    warnings=("shared warning",),
    y=Y,
    confidence=0.9,
    target_pmf=PMF,
    q_hat=Q,
)


def mean_of_y(rows):
    """A trivial estimator: the sample mean of y, ignoring the target."""
    return wald_estimate(
        rows.y, rows.weights, confidence=rows.confidence, warnings=(), estimator="mean"
    )


SHIPPED = ("ips", "snips", "dr", "ips_graph", "dr_graph", "direct")


def test_the_shipped_estimators_in_the_order_replay_lists_them():
    """IPS, SNIPS, DR (the primary), then the three that read traces, graph DR leading there."""
    assert ESTIMATORS.names == SHIPPED
    assert [e.label for e in ESTIMATORS] == ["IPS", "SNIPS", "DR", "IPS-G", "DR-G", "Direct"]
    assert ESTIMATORS.primary.name == "dr"
    assert [(e.needs_target_pmf, e.needs_reward_model, e.needs_traces) for e in ESTIMATORS] == [
        (False, False, False), (False, False, False), (True, True, False),
        (True, False, True), (True, True, True), (True, False, True),
    ]  # fmt: skip
    assert ESTIMATORS.needs_reward_model
    for estimator in ESTIMATORS:
        assert estimator.description
        assert "\n" not in estimator.description


def test_an_unknown_name_is_refused_with_the_registered_names():
    """`get` and `unregister` raise KeyError on a name nobody registered."""
    with pytest.raises(KeyError, match=r"unknown estimator 'DR' \(registered: ips, snips, dr, "):
        ESTIMATORS.get("DR")
    with pytest.raises(KeyError, match="unknown estimator"):
        ESTIMATORS.unregister("nope")
    assert "nope" not in ESTIMATORS
    assert ESTIMATORS.names == SHIPPED


def test_the_lead_and_the_estimators_of_a_log_depend_on_its_traces():
    """Without traces: DR leads and the trace readers are left out; with them, graph DR leads."""
    assert ESTIMATORS.lead(traced=False).name == "dr"
    assert ESTIMATORS.lead(traced=True).name == "dr_graph"
    assert [e.name for e in ESTIMATORS.for_log(traced=False)] == ["ips", "snips", "dr"]
    assert [e.name for e in ESTIMATORS.for_log(traced=True)] == list(SHIPPED)


def test_without_an_estimator_leading_with_traces_the_primary_leads():
    """A registry with no `primary_with_traces` leads with its primary on any log."""
    registry = Registry()
    registry.register(Estimator("only", "O", mean_of_y, "one", primary=True))
    assert registry.lead(traced=True).name == "only"


def test_a_second_estimator_leading_with_traces_is_refused():
    """At most one estimator leads on logs with traces."""
    registry = Registry()
    registry.register(Estimator("a", "A", mean_of_y, "one", primary_with_traces=True))
    with pytest.raises(ValueError, match="cannot lead with traces"):
        registry.register(Estimator("b", "B", mean_of_y, "two", primary_with_traces=True))


def test_registration_appends_in_order_and_unregistering_removes():
    """A fresh registry lists estimators in registration order."""
    registry = Registry()
    first = registry.register(Estimator("first", "F", mean_of_y, "one"))
    registry.register(Estimator("second", "S", mean_of_y, "two", primary=True))
    assert registry.names == ("first", "second")
    assert registry.get("first") is first
    assert registry.primary.name == "second"
    assert not registry.needs_reward_model
    registry.unregister("second")
    assert (registry.names, len(registry), "second" in registry) == (("first",), 1, False)
    with pytest.raises(LookupError, match="no primary"):
        _ = registry.primary


@pytest.mark.parametrize("name", ["ips", "", "DR", "two words", "1st", "a<b>"])
def test_taken_or_unsafe_names_are_refused(name):
    """Names are unique lowercase words (they are JSON values and HTML cells)."""
    registry = Registry()
    registry.register(Estimator("ips", "IPS", mean_of_y, "first"))
    with pytest.raises(ValueError, match="estimator"):
        registry.register(Estimator(name, "X", mean_of_y, "again"))
    assert registry.names == ("ips",)


def test_a_second_primary_is_refused():
    """The table and the report lead with one estimator."""
    registry = Registry()
    registry.register(Estimator("a", "A", mean_of_y, "a", primary=True))
    with pytest.raises(ValueError, match="'b' cannot be primary: 'a' is"):
        registry.register(Estimator("b", "B", mean_of_y, "b", primary=True))


def test_ips_and_snips_from_rows_are_the_estimators_with_the_rows_warnings():
    """The registered functions compute `ips` and `snips` and carry the shared warnings."""
    for name, function in (("ips", ips), ("snips", snips)):
        expected = function(TARGET, LOGGED, Y, confidence=0.9)
        actual = ESTIMATORS.get(name).compute(ROWS)
        assert actual == replace(expected, warnings=("shared warning",))


def test_dr_from_rows_is_doubly_robust_with_the_rows_warnings():
    """The registered DR is `doubly_robust` on the rows' pmf and reward model."""
    expected = doubly_robust(PMF, ARM, LOGGED, Y, Q, confidence=0.9)
    actual = ESTIMATORS.get("dr").compute(ROWS)
    assert actual == replace(expected, warnings=("shared warning",))


@pytest.mark.parametrize("missing", ["target_pmf", "q_hat"])
def test_dr_from_rows_needs_a_pmf_and_a_reward_model(missing):
    """Rows without them are refused, not estimated from zeros."""
    with pytest.raises(ValueError, match="DR needs the target pmf and a reward model"):
        ESTIMATORS.get("dr").compute(replace(ROWS, **{missing: None}))
