"""Every policy built carries the configured control group; a change of it is re-issued."""

from __future__ import annotations

import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore, policy_builder
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.sampling import in_control
from stopbandit.streams.events import FALLBACK_SEGMENT, ControlGroup, Outcome


def test_policies_carry_the_control_group_of_the_config() -> None:
    """control.fraction > 0: every policy (the `*` fallback too) names fraction and arm."""
    config = load_config(None, control={"fraction": 0.02, "arm": 0.95})
    core = ControllerCore(config)
    policies = core.build_policies(1.0, force=True)
    assert [p.segment for p in policies] == [FALLBACK_SEGMENT]
    assert policies[0].control == ControlGroup(fraction=0.02, arm=0.95)


def test_no_control_group_by_default() -> None:
    """The default fraction 0 leaves `control` out of the policy (its wire form unchanged)."""
    core = ControllerCore(load_config(None))
    (policy,) = core.build_policies(1.0, force=True)
    assert policy.control is None
    assert "control" not in policy.model_dump(exclude_none=True)


def test_a_changed_control_group_is_issued_even_when_the_pmf_is_not() -> None:
    """Nodes must learn a new fraction: the book re-issues a policy whose control changed."""
    before = ControllerCore(load_config(None))
    (old,) = before.build_policies(1.0)
    assert before.build_policies(2.0) == []  # nothing changed: nothing issued
    builder = policy_builder(load_config(None, control={"fraction": 0.05}))
    beliefs = before.learner.estimates(FALLBACK_SEGMENT)
    new = before.book.issue(builder, FALLBACK_SEGMENT, beliefs, before.weights, 3.0)
    assert new is not None
    assert new.pmf == old.pmf
    assert new.control == ControlGroup(fraction=0.05, arm=1.0)
    assert new.version > old.version


def test_control_group_outcomes_teach_the_control_arm() -> None:
    """Requests served in the control group are learned as observations of the control arm.

    Every member is served at 1.0 and every decision at 1.0 is learned there,
    with the probability of the whole rule it was logged with.
    """
    config = load_config(None, default_arm=0.95, control={"fraction": 0.2})
    core = ControllerCore(config)
    (fallback,) = core.build_policies(1.0, force=True)
    client = PolicyClient(fallback_threshold=0.95)
    client.apply(fallback)
    at_reference = members = 0
    for i in range(500):
        rid = f"r-{i}"
        decision = client.choose(rid, "seg").decision(rid, "seg", 10.0 + i)
        if in_control(rid, 0.2):
            members += 1
            assert decision.threshold == 1.0
            assert decision.probability == 0.2 + 0.8 * fallback.pmf[-1]
        at_reference += decision.threshold == 1.0
        core.offer(decision, 10.0 + i)
        outcome = Outcome(v=1, request_id=rid, ts=11.0 + i, segment="seg", em=1.0, tokens=100)
        core.offer(outcome, 11.0 + i)
    learned = core.learner.estimates("seg").n[config.arm_index(1.0)]
    assert learned == pytest.approx(at_reference, rel=0.01)
    assert 60 < members <= at_reference
