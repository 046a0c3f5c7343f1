"""Outcomes above limits.max_tokens are refused as `range` before anything learns them."""

from __future__ import annotations

import pytest

from stopbandit.controller.config import StopbanditConfig
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.outcome_bounds import check_outcome_bounds
from stopbandit.streams.codec import InvalidEventError
from stopbandit.streams.events import Decision, Outcome


def _outcome(tokens: int) -> Outcome:
    return Outcome(v=1, request_id="r1", segment="s", ts=10.0, em=1.0, tokens=tokens)


def test_at_the_limit_passes_above_is_refused_naming_the_field() -> None:
    """Exactly max_tokens is plausible; one more is a `range` error naming the limit."""
    check_outcome_bounds(_outcome(1000), 1000)
    with pytest.raises(InvalidEventError) as refused:
        check_outcome_bounds(_outcome(1001), 1000)
    assert refused.value.kind == "range"
    assert refused.value.reason == "outcome.tokens: 1001 is above limits.max_tokens (1000)"


def test_decisions_are_not_bounded() -> None:
    """Only outcomes carry tokens."""
    decision = Decision(
        v=1, request_id="r1", segment="s", ts=10.0, threshold=1.0, probability=1.0, policy_version=0
    )
    check_outcome_bounds(decision, 1)


def test_the_default_ceiling_and_its_validation() -> None:
    """Default 2^20 tokens (above any model's generation limit); 0 is refused, naming the field."""
    assert StopbanditConfig().limits.max_tokens == 1_048_576
    with pytest.raises(ValueError, match=r"limits\.max_tokens"):
        StopbanditConfig.model_validate({"limits": {"max_tokens": 0}})


def test_the_core_refuses_and_learns_nothing() -> None:
    """A wire-valid outcome of 2^63 - 1 tokens: `offer` raises, the decision still waits."""
    core = ControllerCore(StopbanditConfig())
    decision = Decision(
        v=1, request_id="r1", segment="s", ts=10.0, threshold=1.0, probability=1.0, policy_version=0
    )
    core.offer(decision, 10.0)
    with pytest.raises(InvalidEventError, match=r"limits\.max_tokens"):
        core.offer(_outcome(2**63 - 1), 10.0)
    assert core.learner.learned == 0
    assert core.offer(_outcome(917), 10.0) is not None
    assert core.learner.learned == 1
