"""Every policy built carries the configured control group; a change of it is re-issued."""

from __future__ import annotations

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore, policy_builder
from stopbandit.streams.events import FALLBACK_SEGMENT, ControlGroup


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
