"""Replay's intervals and bounds on logs of an adaptive policy, and the direct estimate with traces.

The fleet of tests/data/replay-adaptive.yaml (3 segments, 5 arms) is decided by the
controller's own learner with the shipped exploration (floor 0.005, plausible_min 0.05),
starting at 0.9 and logging every event, as `simulate --log-events` does: arms far from each
segment's greedy arm are played a few times early and then never, so the log supports some
(segment, arm) cells well, some barely and some not at all. Replay must then give, for every
fixed threshold and estimator, either its ordinary interval (adequate support) or
partial-identification bounds (`controller.ope.bounds`), and either must contain the
scenario's true EM, tokens and reward (`evaluate_arms`) in >= 90% of 20 seeds.

The second fleet sends counterfactual traces from every request (trace share 1, coupling
0.8, as `simulate --trace-share 1 --coupling 0.8`): every arm below the played one is
observed, so the direct estimate of each fixed arm (its mean over the requests that observed
it) must cover the arm's true mean in >= 90% of 20 seeds (issue 11).

Logs are small (6 000 requests) and replayed without learning: only fixed targets are
checked here (the learned policy's coverage is tests/scenario/test_replay_coverage.py's).

What is asserted, and why so (as tests/scenario/test_replay_coverage.py argues): 20 seeds of
a calibrated 95% interval cover 18 or more times with probability 0.925, so >= 18/20 in every
one of the 45 (arm, estimator, outcome) cells would fail by chance. Per fixed arm, pooled over
estimators and outcomes (60 intervals), >= 90%; per cell >= 16/20; the direct estimate of
each arm a trace can show, >= 18/20 per outcome, as issue 11 asks (the top arm, which no
trace shows, under the untraced rule: see its test).

Margins measured when this was written (seeds 0-19; then 20-39): without traces, pooled per
arm 100%, 100%, 99.4%, 92.8% (0.95: IPS 19/19/20, SNIPS 18/18/19, DR 17/17/20 for
reward/EM/tokens; seeds 20-39 DR 18/18/17) and 100%; bounds in 20, 17, 12, 1 and 20 of 20
seeds for 0.7 ... 1. After the capped pooling against poisoning (issue 14) changed the
logger: 100%, 100%, 90.0%, 97.2%, 100%, the cells at 17/20 now at 0.9 (SNIPS EM and tokens,
DR reward and EM) and 0.95 at 19-20 everywhere: which cell dips moves with the logger. The
arm most often greedy was the one below 95%: on its identified
seeds SNIPS's and DR's EM z-scores had mean +0.5 and sd 1.25, IPS's +0.3 and 0.97, the
optimism of the mean of an arm an adaptive logger keeps playing while it looks good (Hadad et
al. 2021, "Confidence intervals for policy evaluation in adaptive experiments", PNAS): not a
support problem, so the bounds do not touch it. With
traces, the direct estimate covered 19-20 of 20 for every arm a trace shows, and 17-20 at 1
(observed only when played; bounded in 12 of 20 seeds). Re-measured after the capped pooling
against poisoning (issue 14), seeds 0-19 and 20-39, in the same runs as the top arm's test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.sources import file_events
from stopbandit.controller.replay.targets import fixed_targets
from stopbandit.controller.sim.scenario import Truth, load_scenario
from stopbandit.controller.sim.simulate import START_TS, ControllerAgent, Simulation, evaluate_arms
from stopbandit.streams.files import event_log_writer

pytestmark = pytest.mark.slow

SCENARIO = load_scenario(Path(__file__).parents[1] / "data" / "replay-adaptive.yaml")
SEEDS = range(20)
INTERACTIONS = 6_000
OUTCOMES = ("reward", "em", "tokens")
CONFIG = load_config(
    None,
    arms=SCENARIO.arms,
    reference_arm=1.0,
    default_arm=0.9,
    reward={"em_weight": 1.0, "token_cost_per_1k": 0.02},
)


def simulate(seed, path, scenario):
    """Write one seeded log of the controller's own adaptive policy."""
    agent = ControllerAgent(ControllerCore(CONFIG))
    agent.publish(START_TS)
    with event_log_writer(path) as log:
        Simulation(
            scenario, agent, seed=seed, weights=CONFIG.reward, fallback_arm=0.9, log=log
        ).run(INTERACTIONS)


def truths():
    """True EM, tokens and reward of every fixed threshold."""
    truth = Truth(SCENARIO)
    return {
        f"fixed:{t:g}": evaluate_arms(truth, dict.fromkeys(truth.keys, t), CONFIG.reward, 0.9)
        for t in SCENARIO.arms
    }


def evaluations(tmp_path_factory, scenario):
    """The evaluation of every fixed threshold on each seed's log."""
    results = []
    for seed in SEEDS:
        path = tmp_path_factory.mktemp("adaptive") / f"seed-{seed}.jsonl.gz"
        simulate(seed, path, scenario)
        log = replay(file_events([path]), CONFIG, learn=False)
        results.append(evaluate(log, fixed_targets(log), CONFIG.reward))
    return results


@pytest.fixture(scope="module")
def untraced(tmp_path_factory):
    """Evaluations of the adaptive logs without traces."""
    return evaluations(tmp_path_factory, SCENARIO)


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """Evaluations of the adaptive logs with a trace from every request (coupling 0.8)."""
    return evaluations(tmp_path_factory, SCENARIO.with_trace(1.0, 0.8))


TRUTH = truths()
POLICIES = list(TRUTH)


def covered(runs, policy, estimator, outcome):
    """How many of the 20 intervals (or bounds) contain the true value."""
    truth = TRUTH[policy][outcome]
    count = 0
    for evaluation in runs:
        estimate = getattr(evaluation.find(policy, estimator), outcome)
        count += estimate.ci_low <= truth <= estimate.ci_high
    return count


ESTIMATORS = ("ips", "snips", "dr")
TRACED_ESTIMATORS = (*ESTIMATORS, "ips_graph", "dr_graph", "direct")


@pytest.mark.parametrize("policy", POLICIES)
def test_without_traces_every_fixed_arm_is_covered_in_90_percent_of_seeds(untraced, policy):
    """Intervals or bounds of every estimator and outcome, pooled per arm: >= 90% of 60."""
    counts = {(e, o): covered(untraced, policy, e, o) for e in ESTIMATORS for o in OUTCOMES}
    assert sum(counts.values()) >= 0.9 * 20 * len(counts), counts
    assert min(counts.values()) >= 16, counts


def test_the_adaptive_log_barely_plays_some_arms_and_replay_bounds_them(untraced):
    """The design holds: far arms are bounded (not extrapolated) in most seeds, 0.95 estimated."""
    for policy in ("fixed:0.7", "fixed:1"):
        bounded = sum(e.find(policy, "dr").reward.interval == "bounds" for e in untraced)
        assert bounded >= 18, (policy, bounded)
        for evaluation in untraced:
            note = evaluation.find(policy, "dr").warnings[0]
            assert note.startswith("bounds, not an interval"), note
    estimated = sum(e.find("fixed:0.95", "dr").reward.identified > 0.9 for e in untraced)
    assert estimated >= 18


@pytest.mark.parametrize("policy", POLICIES)
def test_with_traces_every_fixed_arm_is_covered_in_90_percent_of_seeds(traced, policy):
    """Every estimator, the graph ones too, pooled per arm: >= 90%; per cell >= 16/20."""
    counts = {(e, o): covered(traced, policy, e, o) for e in TRACED_ESTIMATORS for o in OUTCOMES}
    assert sum(counts.values()) >= 0.9 * 20 * len(counts), counts
    assert min(counts.values()) >= 16, counts


TOP = f"fixed:{max(SCENARIO.arms):g}"


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("policy", [p for p in POLICIES if p != TOP])
def test_the_direct_estimate_of_each_fixed_arm_covers_its_true_mean(traced, policy, outcome):
    """With a trace from every request (coupling 0.8): >= 18 of 20 seeds (issue 11)."""
    count = covered(traced, policy, "direct", outcome)
    assert count >= 18, f"{policy} direct {outcome}: covered {count}/20"


def test_the_top_arm_seen_only_when_played_is_covered_as_without_traces(traced):
    """The top arm: no trace can show it, so its direct estimate is its played mean.

    An adaptive logger plays it early and drops it when it looks bad, so its mean
    carries the adaptive-sampling bias of every untraced estimate (Nie et al. 2018,
    "Why adaptively collected data have negative bias"), and it gets the untraced
    test's rule: >= 90 % pooled over the outcomes, >= 16/20 each. Measured on seeds
    0-19 and 20-39: 17 + 19 of 40 for the reward, 18 + 19 for EM, 19 + 20 for tokens;
    a propensity-weighted (Hajek) cell mean gave 18 + 18, 18 + 18, 20 + 19, no better.
    """
    counts = {o: covered(traced, TOP, "direct", o) for o in OUTCOMES}
    assert sum(counts.values()) >= 0.9 * 20 * len(counts), counts
    assert min(counts.values()) >= 16, counts


def test_traces_identify_arms_the_log_never_played(traced):
    """Below the greedy arm traces observe every request: the direct estimate needs no bounds."""
    for evaluation in traced:
        for policy in ("fixed:0.7", "fixed:0.8", "fixed:0.9"):
            direct = evaluation.find(policy, "direct").reward
            assert direct.interval == "wald"
            assert evaluation.find(policy, "dr").reward.identified < direct.identified
