"""Intervals, effective sample size and warnings."""

import math

import numpy as np
import pytest

from stopbandit.controller.ope import effective_sample_size, support_warnings, wald_interval
from stopbandit.controller.ope.intervals import normal_quantile, snips_influence, weight_warnings


def test_wald_interval_by_hand():
    """Terms [1, 2, 3, 6]: mean 3, s² = (4 + 1 + 0 + 9)/3 = 14/3, se = sqrt(14/3/4)."""
    low, high, se = wald_interval(np.array([1.0, 2.0, 3.0, 6.0]))
    assert se == pytest.approx(math.sqrt(14 / 12))  # 1.0801234497346435
    assert low == pytest.approx(3 - 1.959963984540054 * se)
    assert high == pytest.approx(3 + 1.959963984540054 * se)


def test_normal_quantile():
    """z(0.95) = 1.95996, z(0.99) = 2.57583."""
    assert normal_quantile(0.95) == pytest.approx(1.959963984540054)
    assert normal_quantile(0.99) == pytest.approx(2.5758293035489)


def test_snips_influence_sums_to_zero():
    """ψ = w (y - V̂) / w̄ sums to zero at the SNIPS value."""
    w, y = np.array([2.0, 0.0, 4.0, 1.0]), np.array([1.0, 1.0, 0.0, 1.0])
    psi = snips_influence(w, y, 3 / 7)
    assert psi.sum() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(psi, [32 / 49, 0.0, -48 / 49, 16 / 49])


@pytest.mark.parametrize(
    ("weights", "ess"),
    [
        ([1.0, 1.0, 1.0, 1.0], 4.0),  # equal weights: ESS = n
        ([2.0, 0.0, 4.0, 1.0], 49 / 21),  # (7)² / (4 + 16 + 1)
        ([0.0, 0.0, 5.0], 1.0),  # one row carries everything
        ([0.0, 0.0], 0.0),  # no weight at all
    ],
)
def test_effective_sample_size(weights, ess):
    """ESS = (Σ w)² / Σ w²."""
    assert effective_sample_size(np.array(weights)) == pytest.approx(ess)


def test_ess_fraction_threshold_applies_to_large_logs():
    """With n = 10 000 and ESS = 50: above 30 rows but below 1% of n = 100."""
    w = np.zeros(10_000)
    w[:50] = 1.0
    assert weight_warnings(w) == ("low effective sample size: ESS 50.0 < 100.0 (n = 10000)",)
    assert weight_warnings(w, min_ess_fraction=0.001) == ()


def test_support_warnings_are_per_group():
    """Group 1 never logged arm 1, which the target plays there with probability 0.5."""
    pmf = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    arm = np.array([0, 1, 0, 0])
    group = np.array([0, 0, 1, 1])
    assert support_warnings(pmf, arm, group) == (
        "missing support: group 1 arm 1 never logged (target mass 0.5)",
    )
    # pooled into one group, arm 1 was logged (row 1): no warning
    assert support_warnings(pmf, arm) == ()
