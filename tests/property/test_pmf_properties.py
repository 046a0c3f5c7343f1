"""Invariants of the exploration rule and the policy builder, for any beliefs."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stopbandit.policies.builder import ArmBeliefs, PolicyBook, PolicyBuilder
from stopbandit.policies.exploration import (
    MIN_SUPPORT,
    ExplorationConfig,
    explore,
    probability_best,
)
from stopbandit.streams.events import RewardWeights

ARMS = 7


@st.composite
def beliefs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Independent Normal beliefs over seven arms, supports, and a default arm."""
    mean = np.array(draw(st.lists(st.floats(-1, 1), min_size=ARMS, max_size=ARMS)))
    sd = np.array(draw(st.lists(st.floats(1e-4, 0.5), min_size=ARMS, max_size=ARMS)))
    support = np.array(draw(st.lists(st.floats(0, 1e5), min_size=ARMS, max_size=ARMS)))
    default = draw(st.integers(0, ARMS - 1))
    return mean, np.diag(sd**2), support, default


configs = st.builds(
    ExplorationConfig,
    floor=st.floats(0.0, 0.02),
    plausible_min=st.floats(0.0, 0.2),
    max_explore=st.floats(0.0, 0.5),
    probe=st.floats(0.0, 0.2),
    rule=st.sampled_from(["auto", "ids", "matching"]),
).filter(lambda c: c.floor * (ARMS - 1) <= c.max_explore)  # what the config accepts


@given(beliefs(), configs, st.floats(0.0, 1.0))
@settings(max_examples=150, deadline=None)
def test_pmf_is_a_distribution_with_floors(b, config, free_below) -> None:
    """The pmf sums to 1, every entry is in [0, 1], candidates get the floor, others nothing."""
    mean, cov, support, default = b
    result = explore(mean, cov, support, default, config, free_below=free_below)
    assert abs(result.pmf.sum() - 1.0) < 1e-9
    assert (result.pmf >= 0).all()
    assert (result.pmf <= 1).all()
    neighbours = [k for k in (result.greedy - 1, result.greedy + 1) if 0 <= k < ARMS]
    for k in neighbours:
        assert result.pmf[k] >= min(config.floor, result.pmf[k] + 1e-12) - 1e-12


@given(beliefs(), st.floats(0.0, 1.0))
@settings(max_examples=100, deadline=None)
def test_greedy_keeps_what_exploration_leaves(b, max_explore) -> None:
    """Without floors or probes, the greedy arm keeps at least 1 - max_explore."""
    mean, cov, support, default = b
    config = ExplorationConfig(floor=0, probe=0, neighbour_floor=0, max_explore=max_explore)
    result = explore(mean, cov, support, default, config)
    assert result.pmf[result.greedy] >= 1.0 - max_explore - 1e-9


@given(beliefs(), configs)
@settings(max_examples=100, deadline=None)
def test_greedy_is_default_until_something_is_supported(b, config) -> None:
    """With no arm supported the greedy arm is the configured default (the safe start)."""
    mean, cov, support, default = b
    result = explore(mean, cov, np.minimum(support, MIN_SUPPORT - 1), default, config)
    assert result.greedy == default


@given(beliefs(), configs)
@settings(max_examples=100, deadline=None)
def test_far_arms_without_evidence_get_nothing(b, config) -> None:
    """An arm neither near the greedy arm nor plausibly best is never played."""
    mean, cov, support, default = b
    result = explore(mean, cov, support, default, config)
    for k in range(ARMS):
        near = abs(k - result.greedy) <= 1
        plausible = result.p_best[k] >= config.plausible_min
        if not near and not plausible:
            assert result.pmf[k] == 0.0


@given(beliefs())
@settings(max_examples=100, deadline=None)
def test_builder_policies_validate_and_versions_increase(b) -> None:
    """Every policy the builder issues passes the wire model, with strictly increasing versions."""
    mean, cov, support, default = b
    builder = PolicyBuilder(
        arms=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0],
        default_arm=default,
        exploration=ExplorationConfig(),
    )
    weights = RewardWeights(em_weight=1.0, token_cost_per_1k=0.02)
    book = PolicyBook()
    versions = []
    zeros = np.zeros_like(cov)
    for segment in ("a", "b", "*"):
        arm_beliefs = ArmBeliefs(mean, cov, np.zeros_like(mean), zeros, support, support)
        policy = book.issue(builder, segment, arm_beliefs, weights, 1.0, force=True)
        assert policy is not None
        assert abs(sum(policy.pmf) - 1.0) <= 1e-6
        versions.append(policy.version)
    assert versions == sorted(set(versions))


@given(beliefs())
@settings(max_examples=150, deadline=None)
def test_probability_best_is_the_share_of_draws_each_arm_wins(b) -> None:
    """The same answer as argmax over the same fixed draws (the rule it is a faster form of)."""
    mean, cov, _, _ = b
    arms = len(mean)
    jitter = 1e-12 * max(float(np.trace(cov)) / arms, 1e-12)
    factor = np.linalg.cholesky(cov + jitter * np.eye(arms))
    draws = (
        mean[None, :] + np.random.default_rng(20_251_130).standard_normal((4096, arms)) @ factor.T
    )
    expected = np.bincount(np.argmax(draws, axis=1), minlength=arms) / 4096
    np.testing.assert_allclose(probability_best(mean, cov), expected, atol=1.0 / 4096)


def test_probability_best_gives_an_exact_tie_to_the_first_arm() -> None:
    """Arms whose every draw is equal share no double count: the first one wins them all."""
    p_best = probability_best(np.array([1e6, 1e6, 0.0]), np.zeros((3, 3)))
    assert p_best.tolist() == [1.0, 0.0, 0.0]
