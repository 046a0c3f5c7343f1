"""IPS on hand-computed logs."""

import math

import numpy as np
import pytest

from stopbandit.controller.ope import importance_weights, ips

Z95 = 1.959963984540054  # NormalDist().inv_cdf(0.975)

# A 4-row log over 3 arms.
TARGET = np.array([0.5, 0.0, 1.0, 0.5])  # π(a_i|x_i)
LOGGED = np.array([0.25, 0.5, 0.25, 0.5])  # p_i
Y = np.array([1.0, 1.0, 0.0, 1.0])


def test_weights_are_target_over_logged():
    """Weights w = [0.5/0.25, 0/0.5, 1/0.25, 0.5/0.5] = [2, 0, 4, 1]."""
    np.testing.assert_array_equal(importance_weights(TARGET, LOGGED), [2.0, 0.0, 4.0, 1.0])


def test_value_matches_formula():
    """IPS = (2*1 + 0*1 + 4*0 + 1*1) / 4 = 3/4."""
    assert ips(TARGET, LOGGED, Y).value == pytest.approx(0.75, abs=1e-15)


def test_wald_interval_matches_hand_calculation():
    """Terms w*y = [2, 0, 0, 1], mean 0.75; s² = (1.25² + .75² + .75² + .25²)/3 = 2.75/3."""
    est = ips(TARGET, LOGGED, Y)
    se = math.sqrt(2.75 / 3 / 4)  # = 0.4787135538781691
    assert est.std_error == pytest.approx(0.4787135538781691, rel=1e-12)
    assert est.std_error == pytest.approx(se, rel=1e-12)
    assert est.ci_low == pytest.approx(0.75 - Z95 * se, rel=1e-12)  # -0.18826
    assert est.ci_high == pytest.approx(0.75 + Z95 * se, rel=1e-12)  # 1.68826
    assert (est.estimator, est.interval, est.confidence) == ("ips", "wald", 0.95)


def test_ninety_percent_interval_is_narrower():
    """z(0.90) = 1.6448536269514722 replaces 1.96 in the half-width."""
    est = ips(TARGET, LOGGED, Y, confidence=0.9)
    assert est.ci_high - est.value == pytest.approx(1.6448536269514722 * est.std_error)


def test_diagnostics():
    """ESS = (2+0+4+1)² / (4+0+16+1) = 49/21; max weight 4; ESS < 30 warns."""
    est = ips(TARGET, LOGGED, Y)
    assert est.ess == pytest.approx(49 / 21)
    assert est.max_weight == 4.0
    assert est.n == 4
    assert est.warnings == ("low effective sample size: ESS 2.3 < 30.0 (n = 4)",)


def test_reward_interval_comes_from_per_row_rewards():
    """IPS is linear, so the reward's value is the combination; its interval is not."""
    em = np.array([1.0, 0.0, 1.0, 1.0])
    tokens = np.array([1000.0, 200.0, 1500.0, 900.0])
    reward = em - 0.5 * tokens / 1000  # EM and tokens move together here
    r, e, t = ips(TARGET, LOGGED, reward), ips(TARGET, LOGGED, em), ips(TARGET, LOGGED, tokens)
    assert r.value == pytest.approx(e.value - 0.5 * t.value / 1000)
    # per-row terms w*reward = [2*0.5, 0, 4*0.25, 1*0.55] = [1, 0, 1, 0.55]
    terms = np.array([1.0, 0.0, 1.0, 0.55])
    assert r.std_error == pytest.approx(terms.std(ddof=1) / 2)
    # covariance of EM and tokens is positive: the reward's s.e. is below the sum's
    assert r.std_error < e.std_error + 0.5 * t.std_error / 1000


def test_single_row_has_an_unbounded_interval():
    """With n = 1 the variance is unknown."""
    est = ips(np.array([1.0]), np.array([0.5]), np.array([1.0]))
    assert est.value == 2.0
    assert (est.ci_low, est.ci_high) == (-math.inf, math.inf)


def test_support_warning_when_target_plays_an_unlogged_arm():
    """Arm 2 gets target mass in group 0 but only arms 0 and 1 were logged there."""
    pmf = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    arm = np.array([0, 1, 0])
    est = ips(
        pmf[np.arange(3), arm], np.array([0.5, 0.5, 0.5]), np.ones(3), target_pmf=pmf, arm=arm
    )
    # target mass of arm 2 in group 0 = (0.5 + 0 + 0.5) / 3 = 0.333
    assert "missing support: group 0 arm 2 never logged (target mass 0.333)" in est.warnings
