"""Safe start, the exploration cap and the guardrail hold for every pmf `decide` gives.

Whatever the beliefs, weights, traces and (valid) exploration settings:
- the greedy arm keeps at least 1 - max_explore (the cap on everything off it);
- until a segment has evidence (no arm but the default supported), the
  default arm is greedy, so it keeps that mass, and only its neighbours are
  explored;
- an arm the guardrail blocks is never greedy and gets at most the floor,
  and the reference arm keeps `reference_share` (its EM is the yardstick);
  one whose estimated drop is over the limit is not greedy either (unless it
  is the default arm, today's threshold, and not blocked).
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stopbandit.policies.builder import ArmBeliefs, PolicyBook, PolicyBuilder
from stopbandit.policies.exploration import MIN_SUPPORT, ExplorationConfig
from stopbandit.policies.guardrail import GuardrailConfig, blocked_arms, over_limit
from stopbandit.streams.events import RewardWeights

ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
K = len(ARMS)
REFERENCE = K - 1
TOLERANCE = 1e-9


@st.composite
def arm_beliefs(draw: st.DrawFn, *, evidence: bool = True) -> ArmBeliefs:
    """Correlated EM beliefs (a random factor), tokens, supports and a trace share."""
    em = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=K, max_size=K)))
    scale = np.array(draw(st.lists(st.floats(1e-3, 0.2), min_size=K, max_size=K)))
    rho = draw(st.floats(0.0, 0.99))
    correlation = rho * np.ones((K, K)) + (1.0 - rho) * np.eye(K)
    em_cov = correlation * np.outer(scale, scale)
    tokens = np.array(draw(st.lists(st.floats(10.0, 5000.0), min_size=K, max_size=K)))
    support = np.array(draw(st.lists(st.floats(0.0, 1e5), min_size=K, max_size=K)))
    if not evidence:
        support = np.minimum(support, MIN_SUPPORT - 1.0)
    return ArmBeliefs(
        em=em,
        em_cov=em_cov,
        tokens=tokens,
        tokens_cov=np.diag((0.1 * tokens) ** 2),
        n=support,
        support=support,
        trace_share=draw(st.sampled_from([0.0, 0.0, 0.5, 1.0])),
    )


@st.composite
def exploration_configs(draw: st.DrawFn) -> ExplorationConfig:
    """Settings the config accepts: floor x (arms - 1) within the cap."""
    max_explore = draw(st.floats(0.0, 1.0))
    return ExplorationConfig(
        rule=draw(st.sampled_from(["auto", "ids", "matching"])),
        max_explore=max_explore,
        floor=draw(st.floats(0.0, max_explore / (K - 1))),
        plausible_min=draw(st.floats(0.0, 0.2)),
        probe=draw(st.floats(0.0, 0.3)),
        neighbour_floor=draw(st.floats(0.0, 0.1)),
    )


weights = st.builds(
    RewardWeights, em_weight=st.floats(0.1, 2.0), token_cost_per_1k=st.floats(0.0, 0.1)
)
guardrails = st.builds(
    GuardrailConfig,
    max_em_drop_pts=st.floats(0.0, 20.0),
    confidence=st.floats(0.5, 0.999),
)


def builder_of(
    config: ExplorationConfig, default: int, guardrail: GuardrailConfig | None = None
) -> PolicyBuilder:
    """The builder of the test's arms, reference the highest arm."""
    return PolicyBuilder(
        arms=ARMS,
        default_arm=default,
        exploration=config,
        reference_arm=REFERENCE,
        guardrail=guardrail or GuardrailConfig(),
    )


@given(arm_beliefs(), exploration_configs(), weights, st.integers(0, K - 1))
@settings(max_examples=200, deadline=None)
def test_the_greedy_arm_keeps_one_minus_max_explore(beliefs, config, w, default) -> None:
    """A hard cap: everything off the greedy arm together is at most max_explore."""
    result = builder_of(config, default).decide(beliefs, w)
    assert abs(result.pmf.sum() - 1.0) < TOLERANCE
    assert (result.pmf >= 0.0).all()
    assert result.pmf[result.greedy] >= 1.0 - config.max_explore - TOLERANCE
    assert result.explore_share <= config.max_explore + TOLERANCE


@given(arm_beliefs(evidence=False), exploration_configs(), weights, st.integers(0, K - 1))
@settings(max_examples=200, deadline=None)
def test_without_evidence_the_default_keeps_its_mass_and_only_neighbours_explore(
    beliefs, config, w, default
) -> None:
    """The safe start: default greedy with >= 1 - max_explore; nothing beyond its neighbours."""
    result = builder_of(config, default).decide(beliefs, w)
    assert result.greedy == default
    assert result.pmf[default] >= 1.0 - config.max_explore - TOLERANCE
    far = [k for k in range(K) if abs(k - default) > 1]
    assert (result.pmf[far] == 0.0).all()


@given(st.data(), exploration_configs(), weights, st.integers(0, K - 1))
@settings(max_examples=200, deadline=None)
def test_evidence_for_the_default_alone_is_still_the_safe_start(data, config, w, default) -> None:
    """Supported at the default arm only (day 1: nodes played it): same guarantees."""
    beliefs = data.draw(arm_beliefs(evidence=False))
    support = beliefs.support.copy()
    support[default] = data.draw(st.floats(MIN_SUPPORT, 1e5))
    beliefs = ArmBeliefs(
        beliefs.em, beliefs.em_cov, beliefs.tokens, beliefs.tokens_cov, support, support
    )
    result = builder_of(config, default).decide(beliefs, w)
    assert result.greedy == default
    assert result.pmf[default] >= 1.0 - config.max_explore - TOLERANCE
    assert all(result.pmf[k] == 0.0 for k in range(K) if abs(k - default) > 1)


@given(arm_beliefs(), exploration_configs(), weights, guardrails, st.integers(0, K - 1))
@settings(max_examples=200, deadline=None)
def test_blocked_arms_get_at_most_the_floor_and_are_never_greedy(
    beliefs, config, w, guardrail, default
) -> None:
    """An arm confidently below the reference by more than δ: the floor at most, never greedy."""
    assert guardrail.max_em_drop_pts is not None
    blocked = blocked_arms(
        beliefs.em, beliefs.em_cov, REFERENCE, guardrail.max_em_drop_pts, guardrail.confidence
    )
    assume(blocked.any())
    result = builder_of(config, default, guardrail).decide(beliefs, w)
    assert not blocked[result.greedy]
    assert (result.pmf[blocked] <= config.floor + TOLERANCE).all()
    assert result.pmf[result.greedy] >= 1.0 - config.max_explore - TOLERANCE
    over = over_limit(beliefs.em, beliefs.em_cov, REFERENCE, guardrail.max_em_drop_pts)
    assert not over[result.greedy] or result.greedy == default
    # The yardstick: the reference keeps its share, as the config guarantees it fits the cap.
    fits = config.floor * (K - 1) + guardrail.reference_share <= config.max_explore
    if fits and result.greedy != REFERENCE:
        assert result.pmf[REFERENCE] >= guardrail.reference_share - TOLERANCE


@given(arm_beliefs(evidence=False), st.integers(0, K - 1))
@settings(max_examples=50, deadline=None)
def test_issued_policies_carry_the_safe_start_with_the_defaults(beliefs, default) -> None:
    """With the shipped defaults, a policy issued without evidence has >= 80 % on the default."""
    builder = builder_of(ExplorationConfig(), default)
    w = RewardWeights(em_weight=1.0, token_cost_per_1k=0.02)
    policy = PolicyBook().issue(builder, "*", beliefs, w, 0.0)
    assert policy is not None
    assert policy.greedy == ARMS[default]
    assert policy.pmf[default] >= 0.8
