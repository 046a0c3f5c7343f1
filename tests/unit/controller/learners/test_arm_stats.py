"""Decayed per-arm statistics and their drift reset."""

import numpy as np
import pytest

from stopbandit.controller.learners.arm_stats import AFTER_DRIFT_MAX_COUNT, ArmStats


def test_means_and_variances_without_decay() -> None:
    """With an enormous half-life the statistics are plain sample moments."""
    stats = ArmStats(2, half_life=1e12, drift_window=1e12, drift_z=5)
    for em, tokens in [(1.0, 100.0), (0.0, 300.0), (1.0, 200.0)]:
        stats.learn_one(1, em, tokens)
    m = stats.moments(1)
    assert m.n == pytest.approx(3)
    assert m.em == pytest.approx(2 / 3)
    assert m.em_var == pytest.approx(2 / 9)
    assert m.tokens == pytest.approx(200.0)
    assert m.tokens_var == pytest.approx(20000 / 3)
    assert stats.moments(0).n == 0


def test_half_life_halves_old_weight() -> None:
    """After `half_life` further updates, an observation weighs half."""
    stats = ArmStats(2, half_life=100, drift_window=1e9, drift_z=1e9)
    stats.learn_one(0, 1.0, 0.0)
    for _ in range(100):
        stats.learn_one(1, 0.0, 0.0)
    assert stats.moments(0).n == pytest.approx(0.5, rel=1e-9)


def test_rescaling_keeps_values() -> None:
    """The lazy-decay scale is renormalised without changing what is read."""
    stats = ArmStats(1, half_life=5, drift_window=1e9, drift_z=1e9)
    rng = np.random.default_rng(0)
    for _ in range(5000):
        stats.learn_one(0, float(rng.random() < 0.3), 100.0)
    m = stats.moments(0)
    # The weights form a geometric series: sum of gamma^j = 1 / (1 - gamma).
    assert m.n == pytest.approx(1 / (1 - 0.5 ** (1 / 5)), rel=1e-6)
    assert 0.0 <= m.em <= 1.0
    assert m.tokens == pytest.approx(100.0)


def test_drift_is_detected_and_resets_to_recent_data() -> None:
    """A jump in EM is detected within a few thousand updates; a stable arm never is."""
    rng = np.random.default_rng(1)
    stable = ArmStats(1, half_life=50_000, drift_window=1_000, drift_z=5)
    for _ in range(30_000):
        assert not stable.learn_one(0, float(rng.random() < 0.8), float(rng.lognormal(6, 0.5)))
    drifting = ArmStats(1, half_life=50_000, drift_window=1_000, drift_z=5)
    for _ in range(10_000):
        drifting.learn_one(0, float(rng.random() < 0.8), 500.0)
    detected_after = None
    for i in range(10_000):
        if drifting.learn_one(0, float(rng.random() < 0.6), 500.0):
            detected_after = i
            break
    assert detected_after is not None
    assert detected_after < 3_000
    assert drifting.moments(0).em < 0.75


def test_after_a_drift_every_arm_counts_as_few_observations() -> None:
    """A reset keeps each arm's recent mean but at most AFTER_DRIFT_MAX_COUNT observations.

    Arm 1 is no longer played after the change: without the cap its stale
    view would keep its full weight and never be checked again.
    """
    rng = np.random.default_rng(2)
    stats = ArmStats(2, half_life=50_000, drift_window=1_000, drift_z=5)
    for i in range(10_000):
        stats.learn_one(i % 2, float(rng.random() < 0.8), 500.0)
    before = stats.moments(1)
    drifted = False
    for _ in range(10_000):
        if stats.learn_one(0, float(rng.random() < 0.5), 500.0):
            drifted = True
            break
    assert drifted
    for arm in (0, 1):
        assert stats.moments(arm).n == pytest.approx(AFTER_DRIFT_MAX_COUNT)
    assert stats.moments(1).em == pytest.approx(before.em, abs=0.05)
    assert stats.moments(0).em < 0.75


def test_json_round_trip() -> None:
    """State survives to_json/load_json exactly."""
    stats = ArmStats(3, half_life=100, drift_window=10, drift_z=5)
    for i in range(250):
        stats.learn_one(i % 3, float(i % 2), float(i))
    copy = ArmStats(3, half_life=100, drift_window=10, drift_z=5)
    copy.load_json(stats.to_json())
    for k in range(3):
        assert copy.moments(k) == stats.moments(k)
    assert copy.learn_one(0, 1.0, 5.0) == stats.learn_one(0, 1.0, 5.0)
