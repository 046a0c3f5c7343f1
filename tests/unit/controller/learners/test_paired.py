"""Paired observations (counterfactual traces): sums by pattern, correlation, GLS information."""

from __future__ import annotations

import numpy as np

from stopbandit.controller.learners.arm_stats import ArmStats
from stopbandit.controller.learners.paired import PairedSums, correlation, paired_information, view


def nested_stats(
    seed: int, requests: int, top_share: float, rho: float
) -> tuple[ArmStats, float, float]:
    """Two arms with correlated outcomes; arm 1 is seen on `top_share` of the requests.

    Returns the stats and the two true means.
    """
    rng = np.random.default_rng(seed)
    means = (0.5, 0.6)
    stats = ArmStats(2, half_life=1e12, drift_window=1e12, drift_z=1e9)
    for _ in range(requests):
        shared = rng.standard_normal()
        own = rng.standard_normal(2)
        values = [
            m + 0.3 * (rho**0.5 * shared + (1 - rho) ** 0.5 * e)
            for m, e in zip(means, own, strict=True)
        ]
        if rng.random() < top_share:  # played at arm 1: arm 0 comes with it, as a trace
            stats.learn([(1, values[1], 100.0), (0, values[0], 50.0)])
        else:
            stats.learn([(0, values[0], 50.0)])
    return stats, *means


def information_of(stats: ArmStats) -> tuple[np.ndarray, np.ndarray]:
    """The EM information of a two-arm segment, with the sample variances."""
    moments = [stats.moments(k) for k in range(2)]
    n = np.array([m.n for m in moments])
    total = np.array([m.n * m.em for m in moments])
    variance = np.array([m.em_var for m in moments])
    return paired_information(n, total, variance, view(stats.paired, "em", np.ones(2)))


def test_without_pairs_the_information_is_each_arms_own() -> None:
    """No paired request: diag(n / var) and sum / var, as independent arms."""
    sums = PairedSums(3, gamma=1.0)
    paired = view(sums, "em", np.ones(3))
    matrix, vector = paired_information(
        np.array([10.0, 20.0, 0.0]), np.array([5.0, 8.0, 0.0]), np.array([0.25, 0.2, 1.0]), paired
    )
    np.testing.assert_allclose(matrix, np.diag([40.0, 100.0, 0.0]))
    np.testing.assert_allclose(vector, [20.0, 40.0, 0.0])


def test_the_measured_correlation_is_the_outcomes_correlation() -> None:
    """Within-request correlation is recovered from the pattern sums (shrunk a little)."""
    stats, _, _ = nested_stats(seed=1, requests=4000, top_share=0.5, rho=0.8)
    rho = correlation(view(stats.paired, "em", np.ones(2)), 2)
    assert 0.75 < rho[0, 1] < 0.85
    assert rho[0, 0] == rho[1, 1] == 1.0


def test_pairing_corrects_the_rarely_seen_arm_by_its_requests_at_the_other() -> None:
    """The GLS estimate of the arm seen on 5 % of requests beats its own sample mean (20 seeds)."""
    gls_error, naive_error = [], []
    for seed in range(20):
        stats, _, true_top = nested_stats(seed, requests=2000, top_share=0.05, rho=0.9)
        matrix, vector = information_of(stats)
        estimate = np.linalg.solve(matrix, vector)
        gls_error.append((estimate[1] - true_top) ** 2)
        naive_error.append((stats.moments(1).em - true_top) ** 2)
    # With rho = 0.9 the residual variance is a fifth: the error falls by well over half.
    assert np.mean(gls_error) < 0.5 * np.mean(naive_error)


def test_the_difference_between_paired_arms_is_known_better_than_the_levels() -> None:
    """The posterior variance of arm1 - arm0 is far below the sum of the two variances."""
    stats, _, _ = nested_stats(seed=3, requests=1000, top_share=1.0, rho=0.9)
    matrix, _ = information_of(stats)
    cov = np.linalg.inv(matrix)
    difference = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert difference < 0.25 * (cov[0, 0] + cov[1, 1])


def test_paired_sums_survive_a_checkpoint_and_cap_after_drift() -> None:
    """to_json/load_json round-trips; cap_counts bounds every arm's paired count."""
    stats, _, _ = nested_stats(seed=4, requests=300, top_share=0.5, rho=0.5)
    copy = PairedSums(2, gamma=1.0)
    copy.load_json(stats.paired.to_json())
    np.testing.assert_allclose(copy.counts(), stats.paired.counts())
    copy.cap_counts(30.0)
    assert copy.counts().max() <= 30.0 + 1e-9
