"""Target mode in simulate: the flag, λ's path, and the true figures per block."""

from __future__ import annotations

import argparse

import pytest

from stopbandit.controller.commands.simulate import simulation_config, target_argument
from stopbandit.controller.config import TargetConfig
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.controller.sim.targets import TargetTrace
from stopbandit.controller.targets import TargetMode, Totals


def test_target_argument() -> None:
    """FIELD=VALUE for either target; anything else is a usage error."""
    assert target_argument("token_reduction=0.45") == {"token_reduction": 0.45}
    assert target_argument("max_em_drop_pts=1") == {"max_em_drop_pts": 1.0}
    for bad in ("token_reduction", "tokens=0.3", "token_reduction=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            target_argument(bad)


def test_trace_blocks_use_the_truth() -> None:
    """A block's true achieved value is the difference of the recorded true sums."""
    trace = TargetTrace(TargetMode.of(TargetConfig(token_reduction=0.3), 0.02), block=2)
    trace.record(1, Totals(n=1, tokens=50, reference_tokens=100))
    trace.record(2, Totals(n=2, tokens=100, reference_tokens=200))
    trace.record(3, Totals(n=3, tokens=190, reference_tokens=300))
    trace.record(4, Totals(n=4, tokens=280, reference_tokens=400))
    report = trace.report()
    assert [b["true_achieved"] for b in report["blocks"]] == [
        pytest.approx(50.0),
        pytest.approx(10.0),
    ]
    assert [row[2] for row in report["true_path"]] == [
        pytest.approx(50.0),
        pytest.approx(50.0),
        pytest.approx(10.0),
        pytest.approx(10.0),
    ]


def test_simulate_reports_target_mode() -> None:
    """A short run in target mode reports λ's path and per-block truth; without it, nothing."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = simulation_config(scenario, None, target={"token_reduction": 0.45})
    core = ControllerCore(config)
    report = Simulation(
        scenario,
        ControllerAgent(core),
        seed=1,
        weights=config.reward,
        fallback_arm=config.default_arm,
    ).run(20_000)
    target = report["target"]
    assert target["metric"] == "token_reduction"
    assert target["target"] == pytest.approx(45.0)
    assert target["updates"] == len(target["path"]) > 10
    assert core.target is not None
    assert target["lambda"] == core.target.lambda_
    assert [b["to"] for b in target["blocks"]] == [10_000, 20_000]
    plain = simulation_config(scenario, None)
    report = Simulation(
        scenario,
        ControllerAgent(ControllerCore(plain)),
        seed=1,
        weights=plain.reward,
        fallback_arm=plain.default_arm,
    ).run(2_000)
    assert "target" not in report
