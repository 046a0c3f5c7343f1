"""`replay --sweep` under a guardrail: its points come from the one builder path, limits and all.

A traced log of long-answers (whose long-form segment's reward-best arm, 0.7,
loses 7 EM points), replayed with and without `guardrail.max_em_drop_pts: 1`:
the guarded sweep's long-form arm is one whose estimated drop is within the
limit, the unguarded one's is not, and the segments the limit does not name
in a per-segment mapping are swept as without it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.config import RewardConfig
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.targets import greedy_under
from stopbandit.controller.sim.scenario import load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.policies.guardrail import em_drop
from stopbandit.streams.files import EventLogWriter

LONG_ANSWERS = Path(__file__).parents[3] / "data" / "scenarios" / "long-answers.yaml"
LONGFORM = "longform/eli5/qwq-32b"
WEIGHTS = RewardConfig(em_weight=1.0, token_cost_per_1k=0.02)

pytestmark = pytest.mark.slow  # a 15k-interaction simulation and three replays of it


def test_the_sweep_keeps_the_guardrail_per_segment(raw) -> None:
    """Guarded: long-form's swept arm within 1 point as estimated; unguarded: beyond it."""
    scenario = load_scenario(LONG_ANSWERS).with_trace(1.0, 0.8)
    config = simulation_config(scenario, None, token_cost=0.02)
    buffer = io.BytesIO()
    Simulation(
        scenario,
        ControllerAgent(ControllerCore(config)),
        seed=5,
        weights=config.reward,
        fallback_arm=config.default_arm,
        log=EventLogWriter(buffer),
    ).run(15_000)
    lines = buffer.getvalue().decode().splitlines()

    def swept(max_em_drop_pts: object) -> tuple[dict[str, float], ControllerCore]:
        guardrail = config.guardrail.model_copy(update={"max_em_drop_pts": max_em_drop_pts})
        guarded = config.model_copy(update={"guardrail": guardrail})
        core = replay(raw(lines), guarded).core
        assert core is not None
        return greedy_under(core, WEIGHTS), core

    free, _ = swept(None)
    guarded, core = swept(1.0)
    named, _ = swept({LONGFORM: 1.0})
    reference = config.arms.index(config.reference_arm)
    drop, _ = em_drop(*_em_of(core, LONGFORM), reference)
    assert 100.0 * drop[config.arms.index(guarded[LONGFORM])] <= 1.0
    assert 100.0 * drop[config.arms.index(free[LONGFORM])] > 1.0
    assert named[LONGFORM] == guarded[LONGFORM]
    assert {k: v for k, v in named.items() if k != LONGFORM} == {
        k: v for k, v in free.items() if k != LONGFORM
    }


def _em_of(core: ControllerCore, segment: str) -> tuple:
    """The segment's EM belief: mean and covariance."""
    beliefs = core.learner.estimates_all()[segment]
    return beliefs.em, beliefs.em_cov
