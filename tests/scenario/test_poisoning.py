"""One fake segment or one absurd outcome leaves every real segment's greedy arm alone (issue 14).

mixed-reasoning, 20,000 interactions at cost 0.02 (seed 1), then a poison:
a fake segment of constant outcomes (EM 1, 1,000 tokens) at every arm or
at the two ends only, 300 or 3,000 of them; or one outcome of
tokens = 2^63 - 1 at a real segment's greedy arm. Before the fix (the
shape fitted on precision-weighted means with a 0.01 variance floor, and
no token bound), 3,000 fake interactions at every arm moved 2 real
segments' greedy arms (math500 0.9 -> 0.5, aime24 1.0 -> 0.8), 300 at the
two ends moved gpqa's (0.95 -> 0.99), and the huge outcome moved its
segment's (gpqa 0.95 -> 0.99, or -> 0.8 at 10k). After: none moves.
"""

from __future__ import annotations

import pytest

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore, fallback_beliefs
from stopbandit.controller.sim.scenario import SHIPPED_DIR, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.streams.codec import InvalidEventError
from stopbandit.streams.events import FALLBACK_SEGMENT, Decision, Outcome
from stopbandit.streams.join import Interaction

pytestmark = pytest.mark.slow

MIXED = SHIPPED_DIR / "mixed-reasoning.yaml"
REAL_INTERACTIONS = 20_000
FAKE = "fake/constant"


def _learned(seed: int) -> ControllerCore:
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
    return core


def _greedy(core: ControllerCore) -> dict[str, float]:
    estimates = core.learner.estimates_all()
    arms = core.config.arms
    greedy = {
        segment: arms[core.builder.decide(beliefs, core.weights, segment=segment).greedy]
        for segment, beliefs in estimates.items()
        if segment != FAKE
    }
    fallback = fallback_beliefs(core.learner, estimates)
    greedy[FALLBACK_SEGMENT] = arms[core.builder.decide(fallback, core.weights).greedy]
    return greedy


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


@pytest.mark.parametrize("ends_only", [False, True], ids=["every-arm", "two-ends"])
@pytest.mark.parametrize("count", [300, 3000])
def test_a_fake_segment_moves_no_real_greedy_arm(count: int, ends_only: bool) -> None:
    """Constant outcomes of one fake segment leave every real segment's greedy arm as it was."""
    core = _learned(seed=1)
    clean = _greedy(core)
    arms = list(core.config.arms)
    _fake_segment(core, count, [arms[0], arms[-1]] if ends_only else arms)
    poisoned = _greedy(core)
    moved = {s: (clean[s], poisoned[s]) for s in clean if poisoned[s] != clean[s]}
    assert moved == {}


def test_an_outcome_of_absurd_tokens_is_dead_lettered_and_moves_nothing() -> None:
    """Tokens of 2^63 - 1 (schema-valid) are refused as `range`; no greedy arm moves, nor `*`."""
    core = _learned(seed=1)
    clean = _greedy(core)
    segment = "science/gpqa/qwen3-14b"
    ts = 1.0e9
    decision = Decision(
        v=1,
        request_id="huge-1",
        segment=segment,
        ts=ts,
        threshold=clean[segment],
        probability=1.0,
        policy_version=1,
    )
    outcome = Outcome(v=1, request_id="huge-1", segment=segment, ts=ts, em=1.0, tokens=2**63 - 1)
    core.offer(decision, ts)
    with pytest.raises(InvalidEventError) as refused:
        core.offer(outcome, ts)
    assert refused.value.kind == "range"
    assert "limits.max_tokens" in refused.value.reason
    assert _greedy(core) == clean
