"""The simulated request generator: reproducible, and drawing what the scenario says.

The statistical checks use fixed seeds and intervals of 4.5 standard
errors around the scenario's value (a correct generator falls outside one
check's interval for about 1 seed in 150,000), so a wrong share, curve
lookup or noise scale fails and sampling noise does not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stopbandit.controller.sim.requests import (
    SECONDS_PER_INTERACTION,
    START_TS,
    Request,
    Requests,
    nearest_arm,
)
from stopbandit.controller.sim.scenario import Scenario, Truth

Z = 4.5
N = 40_000
BLOCK = 4096
ARMS = [0.5, 0.9, 1.0]
# Segment "long" at arm 0.9: EM probability 0.7, mean tokens 0.6 * 2000 = 1200.
SCENARIO = Scenario.model_validate(
    {
        "name": "three",
        "arms": ARMS,
        "reference_arm": 1.0,
        "segments": [
            {
                "key": "short",
                "features": {"task": "qa"},
                "traffic": 0.2,
                "base_tokens": 400,
                "token_cv": 0.3,
                "curve": {"0.5": [0.5, 0.4], "0.9": [0.8, 0.5], "1.0": [1.0, 0.55]},
            },
            {
                "key": "long",
                "features": {"task": "math"},
                "traffic": 0.5,
                "base_tokens": 2000,
                "token_cv": 0.5,
                "curve": {"0.5": [0.3, 0.2], "0.9": [0.6, 0.7], "1.0": [1.0, 0.72]},
            },
            {
                "key": "mid",
                "traffic": 0.3,
                "base_tokens": 900,
                "curve": {"0.5": [0.4, 0.6], "0.9": [0.7, 0.8], "1.0": [1.0, 0.8]},
            },
        ],
        "drift": [
            {
                "at": 10,
                "segment": "long",
                "curve": {"0.5": [0.3, 0.1], "0.9": [0.6, 0.1], "1.0": [1.0, 0.1]},
            },
            {"at": 5, "segment": "mid", "traffic": 0.0},
        ],
    }
)
NO_DRIFT = SCENARIO.model_copy(update={"drift": []})


def _draws(scenario: Scenario, seed: int, n: int) -> list[Request]:
    requests = Requests(Truth(scenario), seed)
    return [requests.draw(i) for i in range(n)]


def test_the_same_seed_gives_the_same_requests_and_outcomes():
    """Two generators with one seed draw equal requests and equal outcomes at every arm."""
    first, second = Requests(Truth(NO_DRIFT), 3), Requests(Truth(NO_DRIFT), 3)
    for i in range(5000):
        a, b = first.draw(i), second.draw(i)
        assert a == b
        assert first.outcome(a, i % 3) == second.outcome(b, i % 3)


def test_another_seed_gives_other_requests():
    """A different seed changes the segments drawn, not only the ids."""
    segments = [[r.segment for r in _draws(NO_DRIFT, seed, 200)] for seed in (3, 4)]
    assert segments[0] != segments[1]


def test_ids_times_and_features_follow_the_index():
    """Request i is `s<seed>-<i:08d>` at START_TS + i steps, with its segment's features."""
    draws = _draws(NO_DRIFT, 42, 4100)
    assert [r.index for r in draws] == list(range(4100))
    assert draws[0].request_id == "s42-00000000"
    assert draws[0].ts == START_TS
    assert draws[4097].request_id == "s42-00004097"
    assert draws[4097].ts == START_TS + 4097 * SECONDS_PER_INTERACTION
    for r in draws[:50]:
        assert r.key == NO_DRIFT.segments[r.segment].key
        assert r.features == dict(NO_DRIFT.segments[r.segment].features)


def test_draws_come_in_blocks_of_segment_then_em_then_token_draws():
    """The stream is consumed per 4096-request block as segment uniforms, EM uniforms, normals."""
    rng = np.random.default_rng(9)
    blocks = [(rng.random(BLOCK), rng.random(BLOCK), rng.standard_normal(BLOCK)) for _ in range(2)]
    draws = _draws(NO_DRIFT, 9, BLOCK + 10)
    for i in (0, 7, BLOCK - 1, BLOCK, BLOCK + 9):
        _, em_u, token_z = blocks[i // BLOCK]
        assert draws[i].em_u == em_u[i % BLOCK]
        assert draws[i].token_z == token_z[i % BLOCK]
    cumulative = np.cumsum([0.2, 0.5, 0.3])
    expected = [int(np.searchsorted(cumulative, u, side="right")) for u in blocks[1][0][:10]]
    assert [r.segment for r in draws[BLOCK:]] == expected


def test_segment_shares_match_the_traffic_weights():
    """Over 40,000 draws each segment's share is within 4.5 standard errors of its traffic."""
    draws = _draws(NO_DRIFT, 11, N)
    counts = np.bincount([r.segment for r in draws], minlength=3)
    for count, share in zip(counts, (0.2, 0.5, 0.3), strict=True):
        assert abs(count / N - share) < Z * math.sqrt(share * (1 - share) / N)


@pytest.mark.parametrize("seed", [5, 6])
def test_em_and_token_means_at_an_arm_match_the_curve(seed: int):
    """At arm 0.9 segment "long" has EM mean 0.7 and token mean 1200 with CV 0.5, within 4.5 SE."""
    requests = Requests(Truth(NO_DRIFT), seed)
    em, tokens = [], []
    for i in range(N):
        request = requests.draw(i)
        if request.key == "long":
            outcome = requests.outcome(request, ARMS.index(0.9))
            em.append(outcome.em)
            tokens.append(outcome.tokens)
    n, p, mean_tokens = len(em), 0.7, 1200.0
    assert abs(np.mean(em) - p) < Z * math.sqrt(p * (1 - p) / n)
    # int() truncates: the mean falls about half a token below the curve's.
    assert abs(np.mean(tokens) + 0.5 - mean_tokens) < Z * 0.5 * mean_tokens / math.sqrt(n)
    assert np.std(tokens) / np.mean(tokens) == pytest.approx(0.5, rel=0.05)


def test_the_outcome_depends_on_the_arm_played():
    """One request at a cheaper arm gets fewer tokens (the noise is the same draw)."""
    requests = Requests(Truth(NO_DRIFT), 2)
    request = requests.draw(0)
    tokens = [requests.outcome(request, k).tokens for k in range(3)]
    assert tokens[0] < tokens[1] < tokens[2]


def test_drift_falls_due_in_order_and_moves_the_outcomes():
    """Drift events come out once each when due, and later outcomes follow the new curve."""
    requests = Requests(Truth(SCENARIO), 1)
    assert requests.pop_drift(4) is None
    first = requests.pop_drift(10)
    assert first is not None
    assert first.segment == "mid"
    requests.apply(first)
    second = requests.pop_drift(10)
    assert second is not None
    assert second.segment == "long"
    requests.apply(second)
    assert requests.pop_drift(10_000) is None
    draws = [requests.draw(i) for i in range(N // 4)]
    assert "mid" not in {r.key for r in draws}
    em = [requests.outcome(r, 1).em for r in draws if r.key == "long"]
    assert abs(np.mean(em) - 0.1) < Z * math.sqrt(0.1 * 0.9 / len(em))
    assert requests.em[1][1] == 0.1


def test_nearest_arm_is_the_closest_and_the_first_of_a_tie():
    """An arm is its own nearest; between two arms the closer wins, and a tie goes to the first."""
    assert nearest_arm(ARMS, 0.9) == 1
    assert nearest_arm(ARMS, 0.96) == 2
    assert nearest_arm(ARMS, 0.2) == 0
    assert nearest_arm([0.25, 0.75], 0.5) == 0


def _traced_outcomes(coupling: float, count: int) -> tuple[Truth, np.ndarray, np.ndarray]:
    """EM and tokens of `count` requests played at the top arm, at every arm (from traces)."""
    truth = Truth(SCENARIO.with_trace(1.0, coupling))
    requests = Requests(truth, seed=5)
    top = len(truth.arms) - 1
    em, tokens = [], []
    for index in range(count):
        request = requests.draw(index)
        if request.segment != 0:
            continue
        outcome = requests.outcome(request, top)
        assert outcome.counterfactual is not None
        em.append([e for _, e, _ in outcome.counterfactual] + [outcome.em])
        tokens.append([t for _, _, t in outcome.counterfactual] + [outcome.tokens])
    return truth, np.array(em), np.array(tokens)


@pytest.mark.parametrize("coupling", [0.0, 0.5, 1.0])
def test_each_arms_traced_em_has_the_curves_marginal(coupling: float) -> None:
    """Whatever the coupling, EM at each arm of a trace is the curve's, within 4.5 se."""
    truth, em, _ = _traced_outcomes(coupling, 20_000)
    expected = truth.em[0]
    se = np.sqrt(expected * (1 - expected) / len(em))
    assert np.all(np.abs(em.mean(axis=0) - expected) <= 4.5 * se + 1e-12)


def test_coupling_makes_one_requests_outcomes_alike_and_tokens_rise_with_the_arm() -> None:
    """Outcomes of neighbouring arms agree more as coupling grows; tokens never fall."""
    agreement = []
    for coupling in (0.0, 0.5, 1.0):
        _, em, tokens = _traced_outcomes(coupling, 8000)
        agreement.append(float((em[:, -1] == em[:, -2]).mean()))
        assert np.all(np.diff(tokens, axis=1) >= 0)
    assert agreement[0] < agreement[1] < agreement[2]
    # One latent for all arms: the two top arms (EM 0.5 and 0.55) disagree only in between.
    assert agreement[2] > 0.9


def test_untraced_requests_carry_no_counterfactual() -> None:
    """Share 0: the copula still draws the outcome, and nothing else is sent."""
    truth = Truth(SCENARIO.with_trace(0.0, 0.8))
    requests = Requests(truth, seed=5)
    outcomes = [requests.outcome(requests.draw(i), len(truth.arms) - 1) for i in range(200)]
    assert all(o.counterfactual is None for o in outcomes)
