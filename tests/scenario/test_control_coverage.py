"""Statistical check: the control group's reported differences cover the scenario's truth.

The shipped mixed-reasoning scenario runs for 20,000 interactions with a 5 %
control group at the reference arm, on 20 fixed seeds, through the
simulator's real path (the policies carry the control group, requests are
served as a node serves them, the groups recomputed from request_ids by
`controller.savings`). The truth is the scenario's curves: each controlled
request's expected EM and tokens under the pmf that served it against the
control arm's, averaged over the controlled traffic. Nominal 95 % intervals
must hold it in at least 18 of 20 seeds, fleet-wide and for the busiest
segment.
"""

from __future__ import annotations

from typing import Any

import pytest

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.sim.control import ControlLedger
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation

pytestmark = pytest.mark.slow

SEEDS = range(1, 21)
INTERACTIONS = 20_000
FRACTION = 0.05
FIGURES = ("em_change_pts", "tokens_change", "token_reduction")


def _run(seed: int) -> dict[str, Any]:
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = simulation_config(scenario, None, control_fraction=FRACTION)
    ledger = ControlLedger(config.control.fraction, config.control_arm)
    Simulation(
        scenario,
        ControllerAgent(ControllerCore(config)),
        seed=seed,
        weights=config.reward,
        fallback_arm=config.default_arm,
        control=ledger,
    ).run(INTERACTIONS)
    return ledger.report()


@pytest.fixture(scope="module")
def reports() -> list[dict[str, Any]]:
    """One report per seed, for every assertion below."""
    return [_run(seed) for seed in SEEDS]


def _covers(figure: dict[str, float | None], truth: float) -> bool:
    low, high = figure["low"], figure["high"]
    assert low is not None
    assert high is not None
    return low <= truth <= high


@pytest.mark.parametrize("figure", FIGURES)
def test_fleet_intervals_cover_the_truth_in_18_of_20_seeds(
    reports: list[dict[str, Any]], figure: str
) -> None:
    """Fleet-wide (post-stratified) EM change, token change and token reduction."""
    covered = [_covers(r["fleet"][figure], r["truth"]["fleet"][figure]) for r in reports]
    assert sum(covered) >= 18, f"{figure}: covered in {sum(covered)} of {len(covered)} seeds"


@pytest.mark.parametrize("figure", FIGURES)
def test_busiest_segment_intervals_cover_the_truth_in_18_of_20_seeds(
    reports: list[dict[str, Any]], figure: str
) -> None:
    """The plain difference of means in the segment with the most traffic."""
    covered = []
    for report in reports:
        segment = next(iter(report["segments"]))
        truth = report["truth"]["segments"][segment][figure]
        covered.append(_covers(report["segments"][segment][figure], truth))
    assert sum(covered) >= 18, f"{figure}: covered in {sum(covered)} of {len(covered)} seeds"


def test_the_intervals_are_informative(reports: list[dict[str, Any]]) -> None:
    """Coverage is no feat with huge intervals: the token reduction is known to ±6 points.

    And the controller does save: every seed's interval lies above zero.
    """
    for report in reports:
        reduction = report["fleet"]["token_reduction"]
        assert reduction["high"] - reduction["low"] < 0.12
        assert reduction["low"] > 0
        requests = report["fleet"]["requests"]
        share = requests["control"] / (requests["control"] + requests["controlled"])
        assert abs(share - FRACTION) < 0.01
