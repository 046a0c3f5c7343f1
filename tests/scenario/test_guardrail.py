"""The EM guardrail on long-answers, whose long-form segment's reward-best arm loses 7 EM points.

Fixed seed, token cost 0.02, 100k interactions, `guardrail.max_em_drop_pts: 1`,
with counterfactual traces (share 1, coupling 0.8) and with one outcome per
request. Measured on seeds 1-3 (bench/guardrail.py): every final greedy arm
within 1 point (long-form at 0.95, 0.6 points); long-form's online drop
0.46-0.66 points with traces and 0.94-1.15 without, against 1 + its
0.78-point half-width; final gap closed against the guardrailed oracle
0.993-1.000 with traces, 0.967-1.000 without. Without the guardrail the
same runs end long-form at 0.7 (7.0 points down), so the checks can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.sim.scenario import load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation

pytestmark = pytest.mark.slow

LONG_ANSWERS = Path(__file__).parents[1] / "data" / "scenarios" / "long-answers.yaml"
LONGFORM = "longform/eli5/qwq-32b"
SEED = 1
INTERACTIONS = 100_000


def run(max_em_drop_pts: float | None, *, traced: bool = True) -> dict[str, Any]:
    """One run of long-answers at cost 0.02, guarded or not; its report."""
    scenario = load_scenario(LONG_ANSWERS)
    if traced:
        scenario = scenario.with_trace(1.0, 0.8)
    config = simulation_config(scenario, None, token_cost=0.02)
    guardrail = config.guardrail.model_copy(update={"max_em_drop_pts": max_em_drop_pts})
    config = config.model_copy(update={"guardrail": guardrail})
    return Simulation(
        scenario,
        ControllerAgent(ControllerCore(config)),
        seed=SEED,
        weights=config.reward,
        fallback_arm=config.default_arm,
        guardrail=config.guardrail,
    ).run(INTERACTIONS)


@pytest.mark.parametrize("traced", [True, False], ids=["traces", "bandit"])
def test_no_segment_loses_more_than_the_limit_and_the_gap_still_closes(traced: bool) -> None:
    """Final greedy drops <= 1 point, online drops <= 1 + half-width, gap closed >= 0.95."""
    report = run(1.0, traced=traced)
    for segment, row in report["segments"].items():
        assert row["final_em_drop_pts"] <= 1.0, segment
        limit = 1.0 + row["online_em_drop_halfwidth_pts"]
        assert row["online_em_drop_pts"] <= limit, segment
    assert report["final_policy"]["arms"][LONGFORM] == 0.95
    assert report["final_policy"]["gap_closed"] >= 0.95
    assert report["oracle"]["arms"][LONGFORM] == 0.95


def test_without_the_guardrail_the_long_form_segment_loses_its_points() -> None:
    """The same run unguarded ends long-form on an arm more than 1 point down (measured 7.0)."""
    report = run(None)
    assert report["segments"][LONGFORM]["final_em_drop_pts"] > 1.0
    assert report["segments"][LONGFORM]["online_em_drop_pts"] > 2.0
