"""SNIPS on hand-computed logs."""

import math

import numpy as np
import pytest

from stopbandit.controller.ope import snips

Z95 = 1.959963984540054

TARGET = np.array([0.5, 0.0, 1.0, 0.5])
LOGGED = np.array([0.25, 0.5, 0.25, 0.5])
Y = np.array([1.0, 1.0, 0.0, 1.0])


def test_value_matches_formula():
    """With w = [2, 0, 4, 1], SNIPS = (2 + 0 + 0 + 1) / (2 + 0 + 4 + 1) = 3/7."""
    assert snips(TARGET, LOGGED, Y).value == pytest.approx(3 / 7, rel=1e-15)


def test_delta_method_interval_matches_hand_calculation():
    """ψ = w (y - 3/7) / w̄ with w̄ = 7/4.

    w (y - 3/7) = [2*4/7, 0, 4*(-3/7), 1*4/7] = [8/7, 0, -12/7, 4/7];
    ψ = [32/49, 0, -48/49, 16/49] (sums to 0);
    s² = (32² + 48² + 16²) / 49² / 3 = 3584 / 7203; se = sqrt(s² / 4).
    """
    est = snips(TARGET, LOGGED, Y)
    se = math.sqrt(3584 / 7203 / 4)  # = 0.35269337134192436
    assert est.std_error == pytest.approx(se, rel=1e-12)
    assert est.ci_low == pytest.approx(3 / 7 - Z95 * se, rel=1e-12)
    assert est.ci_high == pytest.approx(3 / 7 + Z95 * se, rel=1e-12)
    assert (est.estimator, est.interval) == ("snips", "wald-delta")


def test_equals_ips_when_weights_average_one():
    """Weights w = [1/0.5, 0/0.5] average 1, so Σ w = n and SNIPS = IPS = (2*0.3 + 0)/2 = 0.3."""
    est = snips(np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([0.3, 0.9]))
    assert est.value == pytest.approx(0.3)


def test_all_zero_weights_give_nan_and_a_warning():
    """The target never plays a logged arm: 0/0."""
    est = snips(np.zeros(3), np.full(3, 0.5), np.ones(3))
    assert math.isnan(est.value)
    assert math.isnan(est.ci_low)
    assert math.isnan(est.ci_high)
    assert est.ess == 0.0
    assert est.warnings == (
        "no weight: the target policy gives zero probability to every logged action",
    )
