"""The one path from beliefs to a policy: decide, issue what changed, versions from one book."""

from __future__ import annotations

import numpy as np

from stopbandit.policies.builder import ArmBeliefs, PolicyBook, PolicyBuilder
from stopbandit.policies.exploration import ExplorationConfig, explore
from stopbandit.policies.reward import reward, reward_cov
from stopbandit.streams.events import RewardWeights

ARMS = [0.5, 0.9, 1.0]
WEIGHTS = RewardWeights(em_weight=1.0, token_cost_per_1k=0.02)
BUILDER = PolicyBuilder(arms=ARMS, default_arm=2, exploration=ExplorationConfig())


def beliefs(em: list[float], n: float = 1000.0, sd: float = 0.01) -> ArmBeliefs:
    """Beliefs with the given EM means, 1,000 tokens per arm and `n` observations each."""
    k = len(em)
    return ArmBeliefs(
        em=np.array(em),
        em_cov=np.eye(k) * sd**2,
        tokens=np.array([400.0, 700.0, 1000.0][:k]),
        tokens_cov=np.eye(k),
        n=np.full(k, n),
        support=np.full(k, n),
    )


def test_decide_is_exploration_over_the_reward_belief() -> None:
    """The builder's pmf is `explore` of the reward mean and covariance under the weights."""
    b = beliefs([0.80, 0.87, 0.86])
    expected = explore(
        reward(b.em, b.tokens, WEIGHTS),
        reward_cov(b.em_cov, b.tokens_cov, WEIGHTS),
        b.support,
        2,
        BUILDER.exploration,
    )
    result = BUILDER.decide(b, WEIGHTS)
    np.testing.assert_array_equal(result.pmf, expected.pmf)
    assert result.greedy == expected.greedy == 1  # 0.87 - 0.014 beats 0.86 - 0.02


def test_other_weights_move_the_greedy_arm() -> None:
    """With tokens free, the arm with the highest EM is greedy."""
    free = RewardWeights(em_weight=1.0, token_cost_per_1k=0.0)
    assert BUILDER.decide(beliefs([0.80, 0.85, 0.86]), free).greedy == 2


def test_a_book_issues_only_changes_with_one_increasing_version_counter() -> None:
    """Unchanged beliefs issue nothing; every issued policy takes the next version."""
    book = PolicyBook()
    first = book.issue(BUILDER, "a", beliefs([0.8, 0.85, 0.86]), WEIGHTS, 1.0)
    second = book.issue(BUILDER, "b", beliefs([0.8, 0.85, 0.86]), WEIGHTS, 1.0)
    assert first is not None
    assert second is not None
    assert (first.version, second.version) == (1, 2)
    assert book.issue(BUILDER, "a", beliefs([0.8, 0.85, 0.86]), WEIGHTS, 2.0) is None
    forced = book.issue(BUILDER, "a", beliefs([0.8, 0.85, 0.86]), WEIGHTS, 2.0, force=True)
    assert forced is not None
    assert forced.version == 3
    assert book.current["a"] is forced


def test_new_weights_are_a_change_even_with_the_same_pmf() -> None:
    """Operators see the weights a policy was built with, so a weight change is issued."""
    book = PolicyBook()
    book.issue(BUILDER, "a", beliefs([0.8, 0.85, 0.86]), WEIGHTS, 1.0)
    other = RewardWeights(em_weight=1.0, token_cost_per_1k=0.021)
    assert book.issue(BUILDER, "a", beliefs([0.8, 0.85, 0.86]), other, 1.0) is not None


def test_raise_to_floors_the_next_version() -> None:
    """After raise_to(f), no version at or below f is issued; a lower floor changes nothing."""
    book = PolicyBook()
    book.raise_to(1000)
    book.raise_to(10)
    policy = book.issue(BUILDER, "a", beliefs([0.8, 0.85, 0.86]), WEIGHTS, 1.0)
    assert policy is not None
    assert policy.version == 1001
