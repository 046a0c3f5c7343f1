"""Replay's off-policy estimates on the hand-written log (conftest): formulas, scopes, support."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.controller.ope import cross_fit, dr, dr_terms, fold_assignment, wald_interval
from stopbandit.controller.replay.evaluate import evaluate, support_check
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.controller.replay.targets import logged_target

# Hand-computed values on cells of a row or two: every observed cell estimated (conftest).
POINT = ReplaySettings(min_ess=0.0)
# The fallback row r6 (index 4) played 1 with a pmf of 0 at 0.5: that fifth of fixed:0.5's mass
# is bounded, with EM in [0, 1] and tokens in the log's 50..400 (segments of < 30 rows take the
# log's range), so the reward in [2·0 - 0.01·400, 2·1 - 0.01·50] = [-4, 1.5].
REWARD_RANGE = (-4.0, 1.5)
BOUNDED = 0.2


def bounds_midpoint(low, high):
    """What the bounded fifth adds to the value: its share of the range's midpoint."""
    return BOUNDED * (low + high) / 2


def test_ips_and_snips_of_fixed_thresholds_match_the_hand_computed_formulas(evaluation):
    """IPS = (1/n) Σ w y and SNIPS = Σ w y / Σ w, with the reward under the configured weights."""
    fixed_low = evaluation.find("fixed:0.5", "ips")
    # The weights are 1/0.25, 0, 0, 1/0.5 and 0; the last row's mass is bounded.
    assert fixed_low.reward.interval == "bounds"
    assert fixed_low.reward.identified == pytest.approx(1 - BOUNDED)
    part = (4 * 1.0 + 2 * 1.5) / 5
    assert fixed_low.reward.value == pytest.approx(part + bounds_midpoint(*REWARD_RANGE))
    assert fixed_low.em.value == pytest.approx((4 * 1.0 + 2 * 1.0) / 5 + bounds_midpoint(0, 1))
    assert fixed_low.tokens.value == pytest.approx(
        (4 * 100 + 2 * 50) / 5 + bounds_midpoint(50, 400)
    )
    low, high, _ = wald_interval(np.array([4 * 1.0, 0, 0, 2 * 1.5, 0]))
    assert fixed_low.reward.ci_low == pytest.approx(low + BOUNDED * REWARD_RANGE[0])
    assert fixed_low.reward.ci_high == pytest.approx(high + BOUNDED * REWARD_RANGE[1])
    assert fixed_low.reward.ess == pytest.approx(36 / 20)
    assert fixed_low.reward.max_weight == pytest.approx(4.0)
    snips_low = evaluation.find("fixed:0.5", "snips")
    # SNIPS of the identified part: its mass (0.8) times the ratio.
    assert snips_low.reward.value == pytest.approx(
        (1 - BOUNDED) * 7.0 / 6.0 + bounds_midpoint(*REWARD_RANGE)
    )
    fixed_high = evaluation.find("fixed:1", "ips")
    assert fixed_high.reward.value == pytest.approx((-3.0 / 0.75 + 0.0 / 0.5 - 4.0 / 1.0) / 5)
    snips_high = evaluation.find("fixed:1", "snips")
    assert snips_high.reward.value == pytest.approx(-8.0 / (1 / 0.75 + 2 + 1))


def test_per_segment_estimates_use_only_that_segments_rows(evaluation):
    """Segment a's IPS of threshold 0.5 averages over its 3 rows only (r6's third bounded)."""
    assert evaluation.find("fixed:0.5", "ips", "a").reward.value == pytest.approx(
        4.0 / 3 + sum(REWARD_RANGE) / 2 / 3
    )
    assert evaluation.find("fixed:0.5", "ips", "b").reward.value == pytest.approx(2 * 1.5 / 2)
    assert evaluation.find("fixed:0.5", "ips", "a").reward.n == 3


def test_the_logged_policy_is_evaluated_on_policy(evaluation, rewards):
    """Weights are 1: IPS and SNIPS are the sample mean of the per-row reward."""
    assert evaluation.find("logged", "ips").reward.value == pytest.approx(np.mean(rewards))
    assert evaluation.find("logged", "snips").reward.value == pytest.approx(np.mean(rewards))
    assert evaluation.find("logged", "ips").reward.ess == pytest.approx(5.0)


def test_dr_is_the_cross_fitted_estimator_with_one_shared_fold_assignment(log, evaluation, rewards):
    """Replay's DR equals `ope.dr` on the same rows with fold_assignment(n, 5, seed 0).

    Of fixed:1, supported on every row; of fixed:0.5, DR's terms of the identified part
    (every row but r6) plus r6's bounded fifth.
    """
    y = np.array(rewards)
    expected = dr(
        np.tile([0.0, 1.0], (5, 1)), log.arm, log.segment, log.probability, y,
        folds=fold_assignment(5),
    )  # fmt: skip
    actual = evaluation.find("fixed:1", "dr").reward
    assert actual.interval == "wald"
    assert actual.value == pytest.approx(expected.value, abs=1e-12)
    assert (actual.ci_low, actual.ci_high) == pytest.approx((expected.ci_low, expected.ci_high))
    part = np.tile([1.0, 0.0], (5, 1))
    part[4] = 0.0
    q_hat = cross_fit(y, log.arm, log.segment, n_arms=2, folds=fold_assignment(5))
    direct, correction = dr_terms(part, log.arm, log.probability, y, q_hat, partial=True)
    low, high, _ = wald_interval(direct + correction)
    bounded = evaluation.find("fixed:0.5", "dr").reward
    assert bounded.value == pytest.approx(
        (direct + correction).mean() + bounds_midpoint(*REWARD_RANGE), abs=1e-12
    )
    assert bounded.ci_low == pytest.approx(low + BOUNDED * REWARD_RANGE[0])
    assert bounded.ci_high == pytest.approx(high + BOUNDED * REWARD_RANGE[1])


def test_reward_weights_come_from_the_config(log, config):
    """Other weights give the reward recomputed from raw EM and tokens."""
    weights = config.reward.model_copy(update={"em_weight": 1.0, "token_cost_per_1k": 0.0})
    result = evaluate(log, [logged_target()], weights, settings=POINT)
    assert result.find("logged", "ips").reward.value == pytest.approx(log.em.mean())


def test_missing_support_is_measured_from_the_logged_pmfs_and_warned_about(evaluation):
    """Threshold 0.5 had probability 0 on the fallback row: 80% support, said by the bounds note."""
    estimate = evaluation.find("fixed:0.5", "dr")
    assert estimate.support == pytest.approx(0.8)
    assert estimate.warnings[0].startswith("bounds, not an interval: ")
    assert "20.0% on decisions whose logging pmf excluded the arm" in estimate.warnings[0]
    assert estimate.warning_shares[0] == pytest.approx(0.2)
    assert evaluation.find("fixed:1", "dr").support == pytest.approx(1.0)


def test_support_is_unknown_without_logged_pmfs():
    """Rows without a pmf are left out of the support check and said to be unknown."""
    support, warnings = support_check(np.array([[1.0, 0.0]] * 2), np.full((2, 2), np.nan))
    assert support is None
    assert warnings == ("support unknown on 100.0% of rows (decisions without a pmf)",)


def test_estimator_warnings_name_segments_not_group_numbers(evaluation):
    """Missing-support warnings say which segment, by key."""
    warnings = evaluation.find("fixed:0.5", "ips").warnings
    assert not any("group" in w for w in warnings)


def test_an_unknown_estimator_is_refused(evaluation):
    """`find` raises KeyError for a name no estimator is registered under."""
    with pytest.raises(KeyError):
        evaluation.find("logged", "DR")
    with pytest.raises(KeyError):
        evaluation.find("logged", "bogus", "a")
