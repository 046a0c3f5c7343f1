"""Golden replay: a checked-in log replays to a fixed learned policy and fixed estimates.

tests/data/replay-golden.jsonl.gz is 3 000 seeded requests (6 000 events) of the shipped
scenario, decided by the controller with tests/data/replay-golden.yaml and policies rebuilt
every 100 interactions (tests/golden/make_replay_log.py wrote it). The estimates of the
logged policy and of fixed thresholds depend only on the log and the estimators. The learned
policy and the sweep depend on the learners too: the log stays as an older daemon wrote it,
and LEARNED_GREEDY, SWEEP and LEARNED say what the current learners make of it (a change to
the learners shows here first; `make_replay_log.py --literals` prints the new values, and
EXPECTED's). Since replay bounds a target's mass on arms the log barely played instead of
extrapolating it, fixed 0.9, 0.99 and 1 and the learned policy are partial-identification
bounds here (DR once put fixed 1 at 0.553 ± 0.05). That replay reproduces the logging policy
exactly when its learners are the logging daemon's is tested on a fresh log in
tests/scenario/test_replay_online.py.
"""

from pathlib import Path

import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.sources import file_events
from stopbandit.controller.replay.targets import (
    Sweep,
    fixed_targets,
    learned_target,
    logged_target,
    sweep_targets,
)

DATA = Path(__file__).parents[1] / "data"
CONFIG = load_config(DATA / "replay-golden.yaml")
# What the current learners make of the log (see the module docstring).
LEARNED_GREEDY = {
    "math/math500/qwen3-14b": 0.95,
    "hard/aime24/qwq-32b": 0.95,
    "comp/amc23/r1-distill-qwen-7b": 0.95,
    "qa/nq/qwq-32b": 0.99,
    "math/gsm8k/r1-distill-qwen-7b": 0.99,
    "science/gpqa/qwen3-14b": 0.95,
    "*": 0.95,
}
SWEEP = {
    "sweep:0.005": {
        "math/math500/qwen3-14b": 0.99,
        "hard/aime24/qwq-32b": 0.95,
        "comp/amc23/r1-distill-qwen-7b": 0.99,
        "qa/nq/qwq-32b": 0.99,
        "math/gsm8k/r1-distill-qwen-7b": 0.99,
        "science/gpqa/qwen3-14b": 0.99,
    },
    "sweep:0.02": {
        "math/math500/qwen3-14b": 0.95,
        "hard/aime24/qwq-32b": 0.95,
        "comp/amc23/r1-distill-qwen-7b": 0.95,
        "qa/nq/qwq-32b": 0.99,
        "math/gsm8k/r1-distill-qwen-7b": 0.99,
        "science/gpqa/qwen3-14b": 0.95,
    },
    "sweep:0.035": {
        "math/math500/qwen3-14b": 0.95,
        "hard/aime24/qwq-32b": 0.95,
        "comp/amc23/r1-distill-qwen-7b": 0.95,
        "qa/nq/qwq-32b": 0.99,
        "math/gsm8k/r1-distill-qwen-7b": 0.95,
        "science/gpqa/qwen3-14b": 0.95,
    },
    "sweep:0.05": {
        "math/math500/qwen3-14b": 0.95,
        "hard/aime24/qwq-32b": 0.9,
        "comp/amc23/r1-distill-qwen-7b": 0.95,
        "qa/nq/qwq-32b": 0.95,
        "math/gsm8k/r1-distill-qwen-7b": 0.95,
        "science/gpqa/qwen3-14b": 0.95,
    },
}
# (policy, estimator): (reward, ci_low, ci_high, em, tokens, ess), overall.
LEARNED = {
    ("learned", "ips"): (
        0.6437508729289639,
        0.5622949490220404,
        0.7252067968358874,
        0.7001712432054383,
        2821.0185138237184,
        2226.4868861738255,
    ),
    ("learned", "snips"): (
        0.6411081423236461,
        0.564256563273284,
        0.7179597213740081,
        0.6973411699770576,
        2811.651382670576,
        2226.4868861738255,
    ),
    ("learned", "dr"): (
        0.6407597764121566,
        0.5641380182982388,
        0.7173815345260743,
        0.6958983663765969,
        2756.9294982220154,
        2226.4868861738255,
    ),
}
# The same, for policies whose estimates depend on the log alone.
EXPECTED = {
    ("logged", "ips"): (
        0.6655039933333333,
        0.6494655721815389,
        0.6815424144851278,
        0.7136666666666667,
        2408.1336666666666,
        3000.0,
    ),
    ("logged", "snips"): (
        0.6655039933333334,
        0.649465572181539,
        0.6815424144851279,
        0.7136666666666667,
        2408.1336666666666,
        3000.0,
    ),
    ("logged", "dr"): (
        0.6655234785007414,
        0.6494632194122016,
        0.6815837375892813,
        0.7135379056847231,
        2400.7213591990826,
        3000.0,
    ),
    ("fixed:0.9", "ips"): (
        0.4302520970539097,
        0.023147512623876182,
        0.8373566814839433,
        0.5231336649225677,
        4644.0783934329065,
        68.8577604088672,
    ),
    ("fixed:0.9", "snips"): (
        0.46869610983410526,
        0.07736452675887912,
        0.8600276929093313,
        0.5633500068886685,
        4732.694852728166,
        68.8577604088672,
    ),
    ("fixed:0.9", "dr"): (
        0.4634984473867268,
        0.08268829298158101,
        0.8443086017918726,
        0.5574337318498175,
        4696.764223154539,
        68.8577604088672,
    ),
    ("fixed:0.95", "ips"): (
        0.6832648542047954,
        0.637641635176117,
        0.7288880732334738,
        0.7301365594459224,
        2343.5852620563537,
        986.7181564771707,
    ),
    ("fixed:0.95", "snips"): (
        0.6755027120601419,
        0.6473733394755562,
        0.7036320846447276,
        0.7218419373465269,
        2316.9612643192418,
        986.7181564771707,
    ),
    ("fixed:0.95", "dr"): (
        0.6805189468552748,
        0.6530083235330012,
        0.7080295701775484,
        0.7266417122530632,
        2306.138269889418,
        986.7181564771707,
    ),
    ("fixed:0.99", "ips"): (
        0.6389218984004461,
        0.4508280294829693,
        0.8270157673179228,
        0.7046982729541037,
        3288.818727682879,
        382.99249614742223,
    ),
    ("fixed:0.99", "snips"): (
        0.6395587891052594,
        0.4862238237768801,
        0.7928937544336387,
        0.7053709397041856,
        3290.607529946312,
        382.99249614742223,
    ),
    ("fixed:0.99", "dr"): (
        0.6460801285644824,
        0.4925754848000672,
        0.7995847723288976,
        0.7119094345232913,
        3291.4652979404473,
        382.99249614742223,
    ),
    ("fixed:1", "ips"): (
        0.3753907399999997,
        -0.24197476666666676,
        0.9927562466666662,
        0.5,
        6230.463,
        0.0,
    ),
    ("fixed:1", "snips"): (
        0.3753907399999997,
        -0.24197476666666676,
        0.9927562466666662,
        0.5,
        6230.463,
        0.0,
    ),
    ("fixed:1", "dr"): (
        0.3753907399999997,
        -0.24197476666666676,
        0.9927562466666662,
        0.5,
        6230.463,
        0.0,
    ),
}


@pytest.fixture(scope="module")
def replayed():
    """The golden log replayed with learning, as the daemon that wrote it would have learned."""
    return replay(file_events([DATA / "replay-golden.jsonl.gz"]), CONFIG, publish_every=100)


@pytest.fixture(scope="module")
def evaluation(replayed):
    """Logged, fixed and learned policies evaluated."""
    targets = [logged_target(), *fixed_targets(replayed), learned_target(replayed)]
    return evaluate(replayed, targets, CONFIG.reward)


def test_the_log_joins_completely(replayed):
    """6 000 valid events, 3 000 interactions, nothing rejected or left pending."""
    stats = replayed.stats.to_json()
    assert (stats["events"], replayed.n, stats["invalid"], stats["pending_at_end"]) == (
        6000, 3000, {}, 0,
    )  # fmt: skip


def test_replay_learns_the_fixed_greedy_policy(replayed):
    """The final policies' greedy thresholds, per segment and for the fallback."""
    assert {s: p.greedy for s, p in replayed.core.policies.items()} == LEARNED_GREEDY


def test_the_sweep_picks_fixed_greedy_thresholds(replayed):
    """Each token cost's greedy threshold per segment from the final estimates."""
    targets = sweep_targets(replayed, Sweep.parse("token_cost_per_1k=0.005:0.05:4"))
    assert {t.name: t.greedy for t in targets} == SWEEP


@pytest.mark.parametrize(("policy", "estimator"), [*EXPECTED, *LEARNED])
def test_estimates_are_fixed(evaluation, policy, estimator):
    """Reward with its interval, EM, tokens and ESS match the recorded values (1e-9)."""
    estimate = evaluation.find(policy, estimator)
    actual = (
        estimate.reward.value,
        estimate.reward.ci_low,
        estimate.reward.ci_high,
        estimate.em.value,
        estimate.tokens.value,
        estimate.reward.ess,
    )
    expected = {**EXPECTED, **LEARNED}[policy, estimator]
    assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_segment_estimate_is_fixed(evaluation):
    """Per-segment estimates use the segment's rows (DR of 0.95 on qa/nq)."""
    value = evaluation.find("fixed:0.95", "dr", "qa/nq/qwq-32b").reward.value
    assert value == pytest.approx(0.43755886503210756, abs=1e-9)


@pytest.mark.parametrize("threshold", ["0.5", "0.7", "0.8", "1"])
def test_thresholds_never_or_barely_logged_get_the_outcomes_range_as_bounds(evaluation, threshold):
    """The shipped exploration never played 0.5-0.8 (and 1 too little in every segment).

    Nothing is identified: EM's bounds are [0, 1] exactly, with one note that says so first.
    """
    for estimator in ("ips", "snips", "dr"):
        estimate = evaluation.find(f"fixed:{threshold}", estimator)
        assert estimate.reward.interval == "bounds"
        assert estimate.reward.identified == pytest.approx(0.0, abs=1e-9)
        assert (estimate.em.ci_low, estimate.em.ci_high) == pytest.approx((0.0, 1.0))
        assert estimate.warnings[0].startswith("bounds, not an interval: 100.0% on arms barely")
        assert estimate.warning_shares[0] == pytest.approx(1.0)
    assert evaluation.find("fixed:0.5", "dr").support == 0.0


@pytest.mark.parametrize(("threshold", "support"), [("0.9", 0.967), ("0.99", 0.967), ("1", 0.427)])
def test_thresholds_with_partial_support_are_bounded_where_unsupported(
    evaluation, threshold, support
):
    """Arms the logging policy sometimes gave zero probability: support < 1, bounds, one note."""
    estimate = evaluation.find(f"fixed:{threshold}", "dr")
    assert estimate.support == pytest.approx(support, abs=5e-4)
    assert estimate.reward.interval == "bounds"
    assert estimate.reward.identified <= support + 5e-4
    notes = [w for w in estimate.warnings if w.startswith("bounds, not an interval")]
    assert notes == [estimate.warnings[0]]


def test_the_threshold_the_log_played_most_has_full_support_and_no_warning(evaluation):
    """0.95 was in every decision's pmf (default arm, then greedy or neighbour)."""
    estimate = evaluation.find("fixed:0.95", "dr")
    assert estimate.support == 1.0
    assert estimate.warnings == ()
