"""Golden replay: a checked-in log replays to a fixed learned policy and fixed estimates.

tests/data/replay-golden.jsonl.gz is 3 000 seeded requests (6 000 events) of the shipped
scenario, decided by the controller with tests/data/replay-golden.yaml and policies rebuilt
every 100 interactions (tests/golden/make_replay_log.py wrote it). The estimates of the
logged policy and of fixed thresholds depend only on the log and the estimators. The learned
policy and the sweep depend on the learners too: the log stays as an older daemon wrote it,
and LEARNED_GREEDY, SWEEP and LEARNED say what the current learners make of it (a change to
the learners shows here first; `make_replay_log.py --literals` prints the new values). That
replay reproduces the logging policy exactly when its learners are the logging daemon's is
tested on a fresh log in tests/scenario/test_replay_online.py.
"""

from pathlib import Path

import numpy as np
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
        0.39879840258727045,
        0.3817547794637991,
        0.4158420257107418,
        0.4248354774375385,
        1301.8537425133995,
        1800.7317855205165,
    ),
    ("learned", "snips"): (
        0.6613335426674521,
        0.6403500744257357,
        0.6823170109091686,
        0.7045112255260421,
        2158.8841429294866,
        1800.7317855205165,
    ),
    ("learned", "dr"): (
        0.6592044264601229,
        0.646786628278023,
        0.6716222246422228,
        0.7053478500975227,
        2307.171181869988,
        1800.7317855205165,
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
        0.5606284321220486,
        0.44818539646673583,
        0.6730714677773614,
        0.5956888493547102,
        1753.0208616330804,
        131.91880275704676,
    ),
    ("fixed:0.9", "snips"): (
        0.6502968027032101,
        0.569242241419337,
        0.7313513639870832,
        0.6909648743198078,
        2033.4035808298866,
        131.91880275704676,
    ),
    ("fixed:0.9", "dr"): (
        0.6418354705618844,
        0.5734118121422781,
        0.7102591289814907,
        0.6831227279922855,
        2064.3628715200575,
        131.91880275704676,
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
        0.6429607418995832,
        0.5713431329399324,
        0.7145783508592339,
        0.689643376872937,
        2334.1317486676917,
        410.61150481820135,
    ),
    ("fixed:0.99", "snips"): (
        0.6840188487460732,
        0.6435422979277535,
        0.7244953995643929,
        0.733682537599869,
        2483.184442689794,
        410.61150481820135,
    ),
    ("fixed:0.99", "dr"): (
        0.6870927339886136,
        0.6507002531145618,
        0.7234852148626654,
        0.7381697483980417,
        2553.8507204714083,
        410.61150481820135,
    ),
    ("fixed:1", "ips"): (
        0.2635463341171563,
        0.17879723415982862,
        0.34829543407448393,
        0.28620303523486695,
        1132.8350558855313,
        65.09615803138065,
    ),
    ("fixed:1", "snips"): (
        0.552954047100388,
        0.431783985430657,
        0.674124108770119,
        0.6004907150603103,
        2376.8333979961103,
        65.09615803138065,
    ),
    ("fixed:1", "dr"): (
        0.5533704969796293,
        0.5026312586339935,
        0.604109735325265,
        0.606644581100391,
        2663.7042060380863,
        65.09615803138065,
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


@pytest.mark.parametrize("threshold", ["0.5", "0.7", "0.8"])
def test_thresholds_never_logged_get_no_weight_and_a_warning(evaluation, threshold):
    """The shipped exploration never played these: zero ESS and SNIPS undefined, with warnings."""
    for estimator in ("ips", "snips", "dr"):
        estimate = evaluation.find(f"fixed:{threshold}", estimator)
        assert estimate.reward.ess == 0.0
        assert estimate.support == 0.0
        assert any(w.startswith("no weight") for w in estimate.warnings)
        assert any(w.startswith("no support for 100.0%") for w in estimate.warnings)
    assert np.isnan(evaluation.find(f"fixed:{threshold}", "snips").reward.value)


@pytest.mark.parametrize(("threshold", "support"), [("0.9", 0.967), ("0.99", 0.967), ("1", 0.427)])
def test_thresholds_with_partial_support_are_warned_about(evaluation, threshold, support):
    """Arms the logging policy sometimes gave zero probability: support < 1 and a warning."""
    estimate = evaluation.find(f"fixed:{threshold}", "dr")
    assert estimate.support == pytest.approx(support, abs=5e-4)
    assert any(w.startswith("no support for") for w in estimate.warnings)


def test_the_threshold_the_log_played_most_has_full_support_and_no_warning(evaluation):
    """0.95 was in every decision's pmf (default arm, then greedy or neighbour)."""
    estimate = evaluation.find("fixed:0.95", "dr")
    assert estimate.support == 1.0
    assert estimate.warnings == ()
