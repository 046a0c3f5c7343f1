"""Offline calibration of λ to a target: the search, its bounds, and its arguments."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.config import TargetConfig
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.calibrate import (
    _achieved,
    calibrate,
    parse_target,
    summary_lines,
)
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation


@pytest.fixture(scope="module")
def trained() -> tuple[ControllerCore, dict[str, float]]:
    """A core that learned 6,000 interactions of the default scenario, and its traffic."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = simulation_config(scenario, None)
    core = ControllerCore(config)
    Simulation(
        scenario, ControllerAgent(core), seed=3, weights=config.reward, fallback_arm=1.0
    ).run(6_000)
    traffic = {s.key: s.traffic for s in scenario.segments}
    return core, traffic


def test_token_target_takes_the_least_lambda_that_meets_it(trained) -> None:
    """At λ the estimated reduction meets the target; a little below λ it does not."""
    core, traffic = trained
    calibration = calibrate(core, traffic, TargetConfig(token_reduction=0.45))
    assert calibration.reachable
    assert calibration.achieved >= 45.0
    below = _achieved(core, traffic, "token_reduction", calibration.lambda_ * 0.999)[0]
    assert below < 45.0
    assert set(calibration.greedy) == set(traffic)
    assert all(np.isclose(sum(p), 1.0) for p in calibration.pmf.values())
    curve = [a for _, a in calibration.curve]
    assert curve[-1] > curve[0]  # dearer tokens save more


def test_em_budget_takes_the_largest_lambda_within_it(trained) -> None:
    """At λ the estimated EM drop is within the budget; a little above λ it is not."""
    core, traffic = trained
    calibration = calibrate(core, traffic, TargetConfig(max_em_drop_pts=2.0))
    assert calibration.reachable
    assert calibration.achieved <= 2.0
    above = _achieved(core, traffic, "em_drop_pts", calibration.lambda_ * 1.001)[0]
    assert above > 2.0


def test_unreachable_target_rests_at_the_bound(trained) -> None:
    """A reduction no λ in the bounds reaches gives λ_max, marked unreachable."""
    core, traffic = trained
    calibration = calibrate(core, traffic, TargetConfig(token_reduction=0.99, lambda_max=1.0))
    assert not calibration.reachable
    assert calibration.lambda_ == pytest.approx(1.0)
    assert "not reachable" in summary_lines(calibration)[0]


def test_parse_target() -> None:
    """FIELD=VALUE, validated as the config's target section."""
    assert parse_target("token_reduction=0.3").token_reduction == 0.3
    assert parse_target("max_em_drop_pts=1").max_em_drop_pts == 1.0
    for bad, reason in (
        ("token_reduction", "expected"),
        ("tokens=0.3", "expected"),
        ("token_reduction=x", "not a number"),
        ("token_reduction=1.5", "less than 1"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_target(bad)
