"""One fake segment or one absurd outcome moves no real segment's greedy arm far (issue 14).

mixed-reasoning, 20,000 interactions at cost 0.02 (seeds 1-3), then a poison:
a fake segment of constant outcomes (EM 1, 1,000 tokens) at every arm or
at the two ends only, 300, 3,000 or 20,000 of them; or one outcome of
tokens = 2^63 - 1 at a real segment's greedy arm (refused by
limits.max_tokens). The fake segment is forgotten between cases, which gives
the clean run back exactly (its statistics are all a real segment's beliefs
see of it).

What counts as moved far: a real segment's (or `*`'s) greedy arm moved by
more than one arm step, or at a true reward loss above `TRUE_LOSS_MARGIN`,
where the clean run's own beliefs held the poisoned arm more than
`NEAR_TIE` below the clean greedy arm. A near-tie flipping is not poisoning:
the clean run had no evidence for its choice, and any extra segment flips
it. bench/poisoning.py measures that with a benign control, a new segment
drawn from math500's true curves: over seeds 1-8 it moved 14 real greedy
arms in 24 cases, by up to 4 arm steps and 0.149 of true reward (mostly
hard/aime24, whose 1,000 requests leave its arms 0.7-1.0 within a hundredth
of each other in its beliefs), always from a clean gap of at most 0.015.

Before the fix (the shape by 25 alternating updates, which left it where it
started at an arm one segment held; no segment's share of an arm capped; the
others' traffic lent as support uncapped), these cases on seeds 2-3 moved
gsm8k 0.9 -> 0.5 (clean gap 0.170), math500 0.9 -> 0.5 (0.159), qa/nq
0.95 -> 0.5 (0.115) and aime24 0.99 -> 0.5 or 0.9 -> 0.5 (0.092, 0.065):
3 to 5 steps against the clean run's own evidence (seeds 1-8: clean gaps up
to 0.17). After, over seeds 1-8, the fake segments' moves (every-arm,
two-ends, cheapest-arm) were all from clean gaps of at most 0.016, as the
benign control's; on seeds 1-3 here, at most 0.012.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

import pytest

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore, fallback_beliefs
from stopbandit.controller.sim.scenario import SHIPPED_DIR, Truth, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.policies.reward import reward
from stopbandit.streams.codec import InvalidEventError
from stopbandit.streams.events import FALLBACK_SEGMENT, Decision, Outcome
from stopbandit.streams.join import Interaction

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from stopbandit.policies.builder import ArmBeliefs

pytestmark = pytest.mark.slow

MIXED = SHIPPED_DIR / "mixed-reasoning.yaml"
REAL_INTERACTIONS = 20_000
FAKE = "fake/constant"
SEEDS = (1, 2, 3)
# Under this gap in the clean run's own estimated reward, two arms are a near-tie.
NEAR_TIE = 0.02
# A one-step move off a clear choice may cost at most this much true reward.
TRUE_LOSS_MARGIN = 0.01


class Clean(NamedTuple):
    """One seed's clean run: the core, its beliefs and greedy arms, and the true rewards."""

    core: ControllerCore
    beliefs: dict[str, ArmBeliefs]
    greedy: dict[str, int]
    truth: dict[str, NDArray[np.float64]]


@functools.cache
def _clean(seed: int) -> Clean:
    scenario = load_scenario(MIXED)
    config = simulation_config(scenario, None, token_cost=0.02)
    core = ControllerCore(config)
    Simulation(
        scenario,
        ControllerAgent(core),
        seed=seed,
        weights=config.reward,
        fallback_arm=config.default_arm,
    ).run(REAL_INTERACTIONS)
    truth = Truth(scenario)
    rewards = truth.rewards(config.reward)
    true = {key: rewards[i] for i, key in enumerate(truth.keys)}
    # `*` serves a segment never seen: the real segments' rewards by their traffic.
    true[FALLBACK_SEGMENT] = truth.share @ rewards
    beliefs = _beliefs(core)
    return Clean(core, beliefs, _greedy(core, beliefs), true)


def _beliefs(core: ControllerCore) -> dict[str, ArmBeliefs]:
    estimates = core.learner.estimates_all()
    real = {s: b for s, b in estimates.items() if s != FAKE}
    real[FALLBACK_SEGMENT] = fallback_beliefs(core.learner, estimates)
    return real


def _greedy(core: ControllerCore, beliefs: dict[str, ArmBeliefs]) -> dict[str, int]:
    return {
        s: core.builder.decide(b, core.weights, segment=None if s == FALLBACK_SEGMENT else s).greedy
        for s, b in beliefs.items()
    }


def _fake_segment(core: ControllerCore, count: int, arms: list[float]) -> None:
    for i in range(count):
        core.learn(
            Interaction(
                request_id=f"fake-{i}",
                segment=FAKE,
                context={},
                threshold=arms[i % len(arms)],
                probability=1.0 / len(arms),
                policy_version=1,
                em=1.0,
                tokens=1000,
                decision_ts=0.0,
                outcome_ts=0.0,
            )
        )


def _moved_far(clean: Clean, poisoned: dict[str, int]) -> dict[str, str]:
    """Every greedy arm moved far against the clean run's own evidence, described."""
    arms = clean.core.config.arms
    far: dict[str, str] = {}
    for segment, was in clean.greedy.items():
        now = poisoned[segment]
        if now == was:
            continue
        beliefs = clean.beliefs[segment]
        estimated = reward(beliefs.em, beliefs.tokens, clean.core.weights)
        gap = float(estimated[was] - estimated[now])
        loss = float(clean.truth[segment][was] - clean.truth[segment][now])
        if gap > NEAR_TIE and (abs(now - was) > 1 or loss > TRUE_LOSS_MARGIN):
            far[segment] = (
                f"{arms[was]} -> {arms[now]} (clean gap {gap:.4f}, true loss {loss:+.4f})"
            )
    return far


@pytest.mark.parametrize("ends_only", [False, True], ids=["every-arm", "two-ends"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_fake_segment_moves_no_real_greedy_arm_far(seed: int, ends_only: bool) -> None:
    """Constant outcomes of one fake segment, of any size, move no greedy arm far, nor `*`'s."""
    clean = _clean(seed)
    core = clean.core
    arms = list(core.config.arms)
    far: dict[int, dict[str, str]] = {}
    try:
        for count in (300, 3000, 20_000):
            _fake_segment(core, count, [arms[0], arms[-1]] if ends_only else arms)
            far[count] = _moved_far(clean, _greedy(core, _beliefs(core)))
            core.learner.forget(FAKE)
    finally:
        core.learner.forget(FAKE)
    assert _greedy(core, _beliefs(core)) == clean.greedy  # forgotten, the clean run is back
    assert far == {300: {}, 3000: {}, 20_000: {}}


def test_an_outcome_of_absurd_tokens_is_dead_lettered_and_moves_nothing() -> None:
    """Tokens of 2^63 - 1 (schema-valid) are refused as `range`; no greedy arm moves, nor `*`."""
    clean = _clean(1)
    core = clean.core
    segment = "science/gpqa/qwen3-14b"
    ts = 1.0e9
    decision = Decision(
        v=1,
        request_id="huge-1",
        segment=segment,
        ts=ts,
        threshold=core.config.arms[clean.greedy[segment]],
        probability=1.0,
        policy_version=1,
    )
    outcome = Outcome(v=1, request_id="huge-1", segment=segment, ts=ts, em=1.0, tokens=2**63 - 1)
    core.offer(decision, ts)
    with pytest.raises(InvalidEventError) as refused:
        core.offer(outcome, ts)
    assert refused.value.kind == "range"
    assert "limits.max_tokens" in refused.value.reason
    assert _greedy(core, _beliefs(core)) == clean.greedy
