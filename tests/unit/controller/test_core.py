"""The pure core: every arm a request was seen at is learned; traces that break a rule are not."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore, fallback_beliefs
from stopbandit.policies.builder import ArmBeliefs
from stopbandit.streams.events import Decision, Outcome
from stopbandit.streams.join import Interaction

ARMS = [0.5, 0.8, 0.9, 1.0]


def play(
    core: ControllerCore,
    i: int,
    threshold: float,
    counterfactual: object = None,
) -> None:
    """Offer one decision and its outcome (with an optional trace) to the core."""
    rid = f"r{i}"
    core.offer(
        Decision(
            v=1,
            request_id=rid,
            ts=float(i),
            segment="s",
            threshold=threshold,
            probability=1.0,
            policy_version=0,
        ),
        now=float(i),
    )
    core.offer(
        Outcome.model_validate(
            {
                "v": 1,
                "request_id": rid,
                "ts": float(i),
                "segment": "s",
                "em": 1.0,
                "tokens": 1000,
                "counterfactual": counterfactual,
            }
        ),
        now=float(i),
    )


@pytest.fixture
def core() -> ControllerCore:
    """A core over four arms."""
    return ControllerCore(load_config(None, arms=ARMS, default_arm=1.0))


def test_a_trace_updates_every_lower_arm_it_carries(core: ControllerCore) -> None:
    """Played at 1.0 with a trace of 0.5 and 0.9: three arms observed, 0.8 not."""
    play(core, 0, 1.0, [[0.5, 0.0, 300], [0.9, 1.0, 800]])
    n = [core.learner.stats["s"].moments(k).n for k in range(4)]
    assert n == pytest.approx([1.0, 0.0, 1.0, 1.0])
    assert core.learner.arm_counts == [1, 0, 1, 1]


@pytest.mark.parametrize(
    ("trace", "reason"),
    [([[0.6, 1.0, 300]], "unknown_arm"), ([[0.5, 1.0, 300], [1.0, 1.0, 900]], "not_below_played")],
)
def test_a_trace_breaking_a_decision_rule_is_dropped_and_the_outcome_learned(
    core: ControllerCore, trace: object, reason: str
) -> None:
    """Arms must be ours and below the played one; else only the played arm is learned."""
    play(core, 0, 1.0 if reason == "unknown_arm" else 0.9, trace)
    n = [core.learner.stats["s"].moments(k).n for k in range(4)]
    assert sum(n) == pytest.approx(1.0)
    assert core.counterfactual_dropped == {reason: 1}


def interaction(pmf: tuple[tuple[float, float], ...] | None) -> Interaction:
    """A request played at 0.9 with probability 0.3 and a trace of arm 0.5."""
    return Interaction(
        request_id="x",
        segment="s",
        context={},
        threshold=0.9,
        probability=0.3,
        policy_version=1,
        em=1.0,
        tokens=1000,
        decision_ts=0.0,
        outcome_ts=0.0,
        counterfactual=((0.5, 1.0, 300),),
        pmf=pmf,
    )


def test_an_arm_is_observed_with_the_pmf_mass_at_or_above_it(core: ControllerCore) -> None:
    """With a logged pmf, arm b is seen with the mass of arms >= b (graph feedback)."""
    observed = core.observed(interaction(((0.5, 0.1), (0.8, 0.2), (0.9, 0.3), (1.0, 0.4))))
    assert [(arm, round(p, 6)) for arm, _, _, p in observed] == [(2, 0.7), (0, 1.0)]


def test_without_a_logged_pmf_the_played_probability_bounds_it(core: ControllerCore) -> None:
    """No pmf: the played arm's probability is the conservative bound for every arm."""
    observed = core.observed(interaction(None))
    assert [(arm, p) for arm, _, _, p in observed] == [(2, 0.3), (0, 0.3)]


def _beliefs(em: float, n: list[float]) -> ArmBeliefs:
    arms = len(n)
    return ArmBeliefs(
        em=np.full(arms, em),
        em_cov=np.eye(arms) * 0.01,
        tokens=np.full(arms, 1000.0),
        tokens_cov=np.eye(arms),
        n=np.array(n),
        support=np.array(n),
    )


def test_one_segment_of_any_size_holds_at_most_half_of_the_fallback(core: ControllerCore) -> None:
    """`*` weighs segments by traffic, none above all the others together, on any arm too."""
    estimates = {
        "a": _beliefs(0.5, [10.0, 10.0, 0.0, 0.0]),
        "b": _beliefs(0.7, [10.0, 10.0, 0.0, 0.0]),
        "huge": _beliefs(1.0, [1e6, 0.0, 0.0, 0.0]),
    }
    fallback = fallback_beliefs(core.learner, estimates)
    assert fallback.em == pytest.approx(np.full(4, 0.5 * 1.0 + 0.25 * 0.5 + 0.25 * 0.7))
    assert fallback.support.tolist() == [40.0, 20.0, 0.0, 0.0]
    assert fallback.n.tolist() == [40.0, 20.0, 0.0, 0.0]
