"""Statistical check of replay end to end: logs from a simulated fleet whose truth is known.

20 seeds; each simulates 5 000 requests of tests/data/replay-coverage.yaml (2
segments, 3 arms) with the controller deciding (token cost 0.02, exploration
floor 0.1) and logging every event, then replays the log under another
weight (token cost 0.05) and evaluates:

- every fixed threshold: truth = `evaluate_arms` on the scenario;
- the learned policy (trained progressively by replay under the new weight):
  truth = the mean over interactions of the expected outcome of its pmf in
  that interaction's segment;
- the logged policy: truth = the simulation's online figures.

Which policies this covers, and why: all of them, because the scenario and
the exploration floor give every arm a logged probability of at least 0.1 in
every decision (the controller starts at the middle arm, and a `*` policy is
published before the first request, as a daemon does at start). With the
shipped settings (floor 0.005, far arms at probability 0) fixed thresholds far
from the greedy arm have little or no support; replay warns about those
(tests/golden/test_replay_golden.py), and no interval can be trusted there.

What is asserted, and why so: with 20 seeds a perfectly calibrated 95% interval covers 18 or
more times with probability 0.925, so asserting that for every one of the 45 (policy,
estimator, outcome) cells would fail by chance almost surely (1 - 0.925**45 = 0.97). The brief's
criterion (>= 18/20) is asserted for the reward, per policy and estimator (15 cells); EM and
tokens are held to >= 16/20 per cell (P(<= 15) = 0.3% per cell) and >= 90% pooled.

Margins measured when this was written (learners of 2026-11-30, 09:30 UTC; 10 000 requests per
seed): reward 18-20 in every cell, 18 for SNIPS and DR of fixed 0.9; EM 17 for SNIPS and DR
of fixed 0.9; tokens 17 for IPS of fixed 1; 96.4% of all 900 intervals covered. Over 40 seeds
the z-scores of fixed 0.9's SNIPS and DR had a standard deviation of 1.2-1.3 (their intervals
a little narrow), the same with a static logging policy on the simulator; a pure numpy
simulation of the same design (400 seeds) gave 1.0, so this looks like these seeds, not the
estimators, but it was not settled. DR's reward error was 0.48, 1.06, 0.77 and 0.86 of IPS's
for fixed 0.8, 0.9, 1 and learned: smaller on average, not for fixed 0.9. With 5 000 requests
per seed (an earlier learner) IPS of fixed 0.8, played mostly at the 0.1 floor (weights 0 or
10), covered 16/20: the Wald interval of a skewed IPS mean undercovers at that size, so the
test uses 10 000.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.sources import file_events
from stopbandit.controller.replay.targets import fixed_targets, learned_target, logged_target
from stopbandit.controller.sim.scenario import Truth, load_scenario
from stopbandit.controller.sim.simulate import START_TS, ControllerAgent, Simulation, evaluate_arms
from stopbandit.streams.files import event_log_writer

pytestmark = pytest.mark.slow

SCENARIO = load_scenario(Path(__file__).parents[1] / "data" / "replay-coverage.yaml")
SEEDS = range(20)
INTERACTIONS = 10_000
EXPLORATION = {"floor": 0.1, "plausible_min": 0.0, "max_explore": 0.5}
OUTCOMES = ("reward", "em", "tokens")
ESTIMATORS = ("ips", "snips", "dr")


def config_for(token_cost):
    """The controller config of the test, with one token cost."""
    return load_config(
        None,
        arms=SCENARIO.arms,
        reference_arm=1.0,
        default_arm=0.9,
        reward={"em_weight": 1.0, "token_cost_per_1k": token_cost},
        exploration=EXPLORATION,
    )


LOGGING = config_for(0.02)
REPLAY = config_for(0.05)


def simulate(seed, path):
    """Write one seeded log; return the simulation's report."""
    agent = ControllerAgent(ControllerCore(LOGGING))
    agent.publish(START_TS)  # the `*` fallback before the first request
    with event_log_writer(path) as log:
        simulation = Simulation(
            SCENARIO, agent, seed=seed, weights=LOGGING.reward, fallback_arm=0.9, log=log
        )
        return simulation.run(INTERACTIONS)


def truths(log):
    """True EM, tokens and reward (under REPLAY's weights) of every evaluated policy."""
    truth = Truth(SCENARIO)
    values = {}
    for threshold in SCENARIO.arms:
        figures = evaluate_arms(truth, dict.fromkeys(truth.keys, threshold), REPLAY.reward, 0.9)
        values[f"fixed:{threshold:g}"] = figures
    rows = np.array([truth.keys.index(s) for s in log.segments])[log.segment]
    tables = {"reward": truth.rewards(REPLAY.reward), "em": truth.em, "tokens": truth.tokens}
    values["learned"] = {
        name: float(np.mean(np.einsum("ik,ik->i", log.learned_pmf, table[rows])))
        for name, table in tables.items()
    }
    return values


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(estimates, truth) per seed, for every policy, estimator and outcome."""
    results = []
    for seed in SEEDS:
        path = tmp_path_factory.mktemp("coverage") / f"seed-{seed}.jsonl.gz"
        report = simulate(seed, path)
        log = replay(file_events([path]), REPLAY)
        targets = [logged_target(), *fixed_targets(log), learned_target(log)]
        evaluation = evaluate(log, targets, REPLAY.reward)
        truth = truths(log)
        online = report["online"]
        # The simulation's online reward is under the logging weights; recompute it.
        truth["logged"] = {
            "em": online["em"],
            "tokens": online["tokens"],
            "reward": online["em"] - 0.05 * online["tokens"] / 1000,
        }
        results.append((evaluation, truth))
    return results


POLICIES = ["logged", "fixed:0.8", "fixed:0.9", "fixed:1", "learned"]


def covered(runs, policy, estimator, outcome):
    """How many of the 20 intervals contain the true value."""
    count = 0
    for evaluation, truth in runs:
        estimate = getattr(evaluation.find(policy, estimator), outcome)
        count += estimate.ci_low <= truth[policy][outcome] <= estimate.ci_high
    return count


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("policy", POLICIES)
def test_reward_intervals_cover_the_truth_in_at_least_18_of_20_seeds(runs, policy, estimator):
    """Nominal-95% reward intervals contain the scenario's true value in >= 90% of seeds."""
    count = covered(runs, policy, estimator, "reward")
    assert count >= 18, f"{policy} {estimator} reward: covered {count}/20"


@pytest.mark.parametrize("outcome", ["em", "tokens"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("policy", POLICIES)
def test_em_and_token_intervals_cover_the_truth_in_at_least_16_of_20_seeds(
    runs, policy, estimator, outcome
):
    """EM and token intervals: a floor per cell that only a real miscalibration breaks."""
    count = covered(runs, policy, estimator, outcome)
    assert count >= 16, f"{policy} {estimator} {outcome}: covered {count}/20"


def test_at_least_90_percent_of_all_intervals_cover_the_truth(runs):
    """Pooled over policies, estimators, outcomes and seeds (900 intervals)."""
    cells = [(p, e, o) for p in POLICIES for e in ESTIMATORS for o in OUTCOMES]
    total = sum(covered(runs, *cell) for cell in cells)
    assert total >= 0.9 * 20 * len(cells), total / (20 * len(cells))


@pytest.mark.parametrize("policy", POLICIES[1:])
def test_every_policy_has_full_support_and_no_warnings(runs, policy):
    """The design above holds: replay finds full support and nothing to warn about."""
    for evaluation, _ in runs:
        estimate = evaluation.find(policy, "dr")
        assert estimate.support == pytest.approx(1.0)
        assert estimate.warnings == ()
        assert estimate.reward.max_weight <= 10.0 + 1e-9


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_dr_has_a_smaller_error_than_ips_on_average(runs, outcome):
    """Averaged over the off-policy targets, DR's mean absolute error is below 90% of IPS's."""

    def mae(policy, estimator):
        return np.mean(
            [abs(getattr(e.find(policy, estimator), outcome).value - t[policy][outcome])
             for e, t in runs]
        )  # fmt: skip

    ratios = [mae(p, "dr") / mae(p, "ips") for p in POLICIES[1:]]
    assert np.mean(ratios) < 0.9, ratios


def test_the_learned_policy_differs_from_the_logging_policy(runs):
    """Replayed under another weight, the learned policy is a real off-policy target."""
    for evaluation, _ in runs:
        assert evaluation.find("learned", "ips").reward.ess < 0.99 * INTERACTIONS
