"""The exploration rules: information-directed sampling with the feedback graph of traces."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.policies.exploration import (
    ExplorationConfig,
    _draws,
    explore,
    information_directed,
    probability_best,
)

SUPPORTED = np.full(4, 1000.0)


def test_a_clear_winner_gets_all_the_mass() -> None:
    """With one arm far ahead there is nothing to learn: IDS plays it alone."""
    mean = np.array([0.1, 0.2, 0.9, 0.3])
    pmf = information_directed(_draws(mean, np.eye(4) * 1e-6), free_below=0.0)
    assert pmf.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_ids_plays_a_nearly_tied_costly_arm_less_than_matching() -> None:
    """An arm slightly worse and well measured is played less than its P(best)."""
    mean = np.array([0.50, 0.60, 0.598, 0.40])
    cov = np.diag([1e-4, 1e-4, 1e-4, 1e-4])
    p_best = probability_best(mean, cov)
    pmf = information_directed(_draws(mean, cov), free_below=0.0)
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf[2] < p_best[2]


def test_with_traces_the_greedy_arm_explores_the_uncertain_arm_below_it() -> None:
    """Playing arm 1 shows arm 0 too: with traces IDS learns arm 0 without playing it."""
    mean = np.array([0.58, 0.60, 0.40, 0.40])
    cov = np.diag([4e-3, 1e-5, 1e-5, 1e-5])
    without = information_directed(_draws(mean, cov), free_below=0.0)
    with_traces = information_directed(_draws(mean, cov), free_below=1.0)
    assert without[0] > 0.0
    assert with_traces.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_auto_uses_ids_only_where_nodes_send_traces() -> None:
    """`auto`: probability matching without traces, IDS with them."""
    mean = np.array([0.50, 0.60, 0.598, 0.40])
    cov = np.diag([1e-4, 1e-4, 1e-4, 1e-4])
    config = ExplorationConfig(floor=0.0, plausible_min=0.0, probe=0.0, max_explore=1.0)
    matching = explore(mean, cov, SUPPORTED, 1, config.model_copy(update={"rule": "matching"}))
    auto_without = explore(mean, cov, SUPPORTED, 1, config)
    auto_with = explore(mean, cov, SUPPORTED, 1, config, free_below=1.0)
    ids_with = explore(
        mean, cov, SUPPORTED, 1, config.model_copy(update={"rule": "ids"}), free_below=1.0
    )
    np.testing.assert_array_equal(auto_without.pmf, matching.pmf)
    np.testing.assert_array_equal(auto_with.pmf, ids_with.pmf)
    assert not np.array_equal(auto_with.pmf, matching.pmf)


def test_traces_move_exploration_below_the_greedy_arm_to_it() -> None:
    """Below the greedy arm, traced requests show the lower arms anyway: matching skips them."""
    mean = np.array([0.59, 0.60, 0.40, 0.40])
    cov = np.diag([1e-4, 1e-4, 1e-4, 1e-4])
    config = ExplorationConfig(rule="matching", floor=0.0, probe=0.0, max_explore=1.0)
    untraced = explore(mean, cov, SUPPORTED, 1, config)
    traced = explore(mean, cov, SUPPORTED, 1, config, free_below=1.0)
    assert untraced.pmf[0] > 0.1
    assert traced.pmf[0] == 0.0
    assert traced.pmf[1] == pytest.approx(1.0)
