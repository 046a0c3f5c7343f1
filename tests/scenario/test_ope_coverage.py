"""Statistical check: intervals cover the true value, and DR beats IPS, on a simulated bandit.

A 2-segment, 4-arm bandit with Bernoulli EM is logged under a known stochastic
policy; three deterministic target policies are evaluated on 20 logs of 5 000
rows each (fixed seeds, so the test is deterministic and can fail).
"""

import numpy as np
import pytest

from stopbandit.controller.ope import dr, ips, snips

EM_PROBABILITY = np.array([[0.55, 0.70, 0.80, 0.85], [0.90, 0.85, 0.60, 0.40]])
SEGMENT_SHARE = np.array([0.5, 0.5])
LOGGING_PMF = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
TARGETS = {  # the arm each target plays in segment 0 and segment 1
    "arm 0 everywhere": (0, 0),  # leans on the rarest arm of segment 0 (p = 0.1)
    "best per segment": (3, 0),
    "arm 2 everywhere": (2, 2),
}
SEEDS = range(20)
ROWS = 5_000


def simulate(seed):
    """One log: segment, logged arm, its propensity and a Bernoulli EM per row."""
    rng = np.random.default_rng(seed)
    group = rng.choice(2, size=ROWS, p=SEGMENT_SHARE)
    cumulative = LOGGING_PMF.cumsum(axis=1)[group]
    arm = (rng.random(ROWS)[:, None] > cumulative).sum(axis=1)
    em = (rng.random(ROWS) < EM_PROBABILITY[group, arm]).astype(np.float64)
    return group, arm, LOGGING_PMF[group, arm], em


def evaluate_all():
    """Estimates of every target on every seed, with each target's true value."""
    results = {name: {"ips": [], "snips": [], "dr": []} for name in TARGETS}
    truth = {}
    for seed in SEEDS:
        group, arm, logged, em = simulate(seed)
        for name, plays in TARGETS.items():
            truth[name] = float(SEGMENT_SHARE @ EM_PROBABILITY[[0, 1], list(plays)])
            pmf = np.eye(4)[np.asarray(plays)[group]]
            target = pmf[np.arange(ROWS), arm]
            results[name]["ips"].append(ips(target, logged, em))
            results[name]["snips"].append(snips(target, logged, em))
            results[name]["dr"].append(dr(pmf, arm, group, logged, em, seed=seed))
    return results, truth


@pytest.fixture(scope="module")
def evaluated():
    """Evaluate once for all the assertions below."""
    return evaluate_all()


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_95_percent_intervals_cover_in_at_least_90_percent_of_seeds(evaluated, target, estimator):
    """At least 18 of the 20 nominal-95% intervals contain the true value."""
    results, truth = evaluated
    estimates = results[target][estimator]
    covered = sum(e.ci_low <= truth[target] <= e.ci_high for e in estimates)
    assert covered >= 18, f"{estimator} covered {covered}/20 for {target}"
    # and not by being vacuous: the widest (IPS on the p = 0.1 arm) is about 0.10 wide
    assert max(e.ci_high - e.ci_low for e in estimates) < 0.2
    assert all(not e.warnings for e in estimates)


@pytest.mark.parametrize("target", list(TARGETS))
def test_dr_has_a_smaller_mean_absolute_error_than_ips(evaluated, target):
    """The reward model removes most of IPS's variance: DR's MAE is under 80% of IPS's."""
    results, truth = evaluated

    def mae(name):
        return np.mean([abs(e.value - truth[target]) for e in results[target][name]])

    assert mae("dr") < 0.8 * mae("ips"), (mae("dr"), mae("ips"))
