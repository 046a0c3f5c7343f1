"""The EM guardrail: the drop's uncertainty from the joint belief, per-segment limits, builder."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.policies.builder import ArmBeliefs, PolicyBuilder, exploration_share
from stopbandit.policies.exploration import ExplorationConfig
from stopbandit.policies.guardrail import (
    GuardrailConfig,
    blocked_arms,
    em_drop,
    true_drop_allowed,
)
from stopbandit.streams.events import ArmEstimates, Policy, RewardWeights

ARMS = [0.5, 0.9, 1.0]
CHEAP = RewardWeights(em_weight=1.0, token_cost_per_1k=0.2)


def beliefs(em: list[float], sd: float, rho: float) -> ArmBeliefs:
    """Three supported arms; tokens make the lowest arm the reward's best by far."""
    correlation = rho * np.ones((3, 3)) + (1.0 - rho) * np.eye(3)
    return ArmBeliefs(
        em=np.array(em),
        em_cov=correlation * sd**2,
        tokens=np.array([300.0, 700.0, 1000.0]),
        tokens_cov=np.eye(3),
        n=np.full(3, 1000.0),
        support=np.full(3, 1000.0),
    )


def test_the_drop_uses_the_covariance_with_the_reference() -> None:
    """Correlated beliefs know the difference better than either arm: var_r + var_k - 2 cov."""
    b = beliefs([0.80, 0.84, 0.85], sd=0.03, rho=0.9)
    drop, sd = em_drop(b.em, b.em_cov, reference=2)
    np.testing.assert_allclose(drop, [0.05, 0.01, 0.0])
    np.testing.assert_allclose(sd, [0.03 * np.sqrt(0.2), 0.03 * np.sqrt(0.2), 0.0])


def test_an_arm_is_blocked_only_when_confidently_over_the_limit() -> None:
    """5 points down at sd 1.3 (correlated) is blocked at δ = 1; independent (sd 4.2) it is not."""
    correlated = beliefs([0.80, 0.845, 0.85], sd=0.03, rho=0.9)
    independent = beliefs([0.80, 0.845, 0.85], sd=0.03, rho=0.0)
    assert blocked_arms(correlated.em, correlated.em_cov, 2, 1.0, 0.95).tolist() == [
        True,
        False,
        False,
    ]
    assert not blocked_arms(independent.em, independent.em_cov, 2, 1.0, 0.95).any()
    # A looser limit lets it through; a higher confidence needs more evidence.
    assert not blocked_arms(correlated.em, correlated.em_cov, 2, 4.0, 0.95).any()
    assert not blocked_arms(correlated.em, correlated.em_cov, 2, 1.0, 0.9999).any()


def test_per_segment_limits_fall_back_to_the_star_entry() -> None:
    """A mapping names segments; `*` covers the others (and the fallback); without it, none."""
    config = GuardrailConfig(max_em_drop_pts={"math": 0.5, "*": 2.0})
    assert config.drop_pts_for("math") == 0.5
    assert config.drop_pts_for("qa") == 2.0
    assert config.drop_pts_for("*") == 2.0
    assert config.drop_pts_for(None) == 2.0
    assert GuardrailConfig(max_em_drop_pts={"math": 0.5}).drop_pts_for("qa") is None
    assert GuardrailConfig(max_em_drop_pts=1).drop_pts_for("qa") == 1.0
    assert GuardrailConfig().drop_pts_for("qa") is None


def test_bad_limits_are_refused() -> None:
    """Negative points or a confidence of 1 are errors, not silently clamped."""
    with pytest.raises(ValueError, match="max_em_drop_pts"):
        GuardrailConfig(max_em_drop_pts=-1.0)
    with pytest.raises(ValueError, match="confidence"):
        GuardrailConfig(max_em_drop_pts=1.0, confidence=1.0)


def test_the_builder_keeps_a_blocked_best_arm_at_the_floor() -> None:
    """The reward's best arm loses 5 points: blocked, it is not greedy and gets the floor."""
    b = beliefs([0.80, 0.845, 0.85], sd=0.03, rho=0.9)
    exploration = ExplorationConfig(floor=0.01, max_explore=0.2)
    free = PolicyBuilder(arms=ARMS, default_arm=2, exploration=exploration, reference_arm=2)
    guarded = PolicyBuilder(
        arms=ARMS,
        default_arm=2,
        exploration=exploration,
        reference_arm=2,
        guardrail=GuardrailConfig(max_em_drop_pts=1.0),
    )
    assert free.decide(b, CHEAP).greedy == 0
    result = guarded.decide(b, CHEAP)
    assert result.greedy == 1
    assert result.pmf[0] <= 0.01 + 1e-12
    # Per segment: the limit applies where it is named.
    per_segment = PolicyBuilder(
        arms=ARMS,
        default_arm=2,
        exploration=exploration,
        reference_arm=2,
        guardrail=GuardrailConfig(max_em_drop_pts={"long": 1.0}),
    )
    assert per_segment.decide(b, CHEAP, segment="long").greedy == 1
    assert per_segment.decide(b, CHEAP, segment="short").greedy == 0


def test_the_guardrailed_oracle_keeps_arms_within_the_true_limit() -> None:
    """Known EM: an arm is allowed iff its drop is at most δ points (δ itself included)."""
    em = np.array([0.70, 0.79, 0.80])
    assert true_drop_allowed(em, 2, 1.0).tolist() == [False, True, True]
    assert true_drop_allowed(em, 2, None).all()


def test_exploration_share_is_the_mass_off_the_greedy_arm() -> None:
    """What the daemon reports per segment: 1 - pmf[greedy]."""
    policy = Policy(
        segment="a",
        version=1,
        issued_at=0.0,
        arms=ARMS,
        pmf=[0.05, 0.1, 0.85],
        greedy=1.0,
        reward=CHEAP,
        estimates=ArmEstimates(em=[0.0] * 3, tokens=[0.0] * 3, n=[0.0] * 3),
    )
    assert exploration_share(policy) == pytest.approx(0.15)
