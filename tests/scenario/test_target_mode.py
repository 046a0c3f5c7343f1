"""Target mode on the shipped scenarios: the true token reduction holds the target.

Fixed seeds 1-3, 80k interactions, control.fraction 0.15. The target is measured
against the reference arm's tokens, which the policies stop playing once they
save: the control group is what measures them, and the precision of the
achieved figure is the precision of that mean (drift-example's heavy segment has
token cv 0.7). Measured when written (bench/target_mode.py, seeds 1-6, mean over
50k-80k): at 15 %, mixed-reasoning 44.85-45.70 against 45 and drift-example
29.17-31.08 against 30; at 5 %, 44.18-46.12 and 28.05-32.78 (seed 6 2.8 points
off), so a 5 % control group holds the target within ±3, not ±2. Targets the
reward binds on: mixed-reasoning at 45 % (it saves ~36 % at any λ, so 30 %
would rest λ at its floor) and drift-example at 30 %, whose curves and traffic
drift at 20k. Offline λ / online λ: 0.85 and 0.99 (seed 1).

Through a drift inside the steady window (drift-example's drift moved to 50k,
100k interactions), seeds 1-6 at 15 % measured 28.0-30.8 over the 10k after the
drift and 29.6-31.0 over the 40k after that (at 5 %: 25.9-32.2 and 28.1-31.5).
"""

import math

import pytest
import yaml

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.calibrate import calibrate_log
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.sources import file_events
from stopbandit.controller.sim.scenario import SHIPPED_DIR, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.streams.files import event_log_writer

pytestmark = pytest.mark.slow

INTERACTIONS = 80_000
STEADY_FROM = 50_000
CONTROL_FRACTION = 0.15
TARGETS = {"mixed-reasoning": 0.45, "drift-example": 0.30}


def run(tmp_path, name, seed, log=None, *, drift_at=None, interactions=INTERACTIONS):
    """A target-mode run; its report's target section and the config it ran with."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"control": {"fraction": CONTROL_FRACTION}}))
    scenario = load_scenario(SHIPPED_DIR / f"{name}.yaml")
    if drift_at is not None:
        drift = [d.model_copy(update={"at": drift_at}) for d in scenario.drift]
        scenario = scenario.model_copy(update={"drift": drift})
    config = simulation_config(scenario, path, target={"token_reduction": TARGETS[name]})
    agent = ControllerAgent(ControllerCore(config))
    simulation = {
        "scenario": scenario,
        "agent": agent,
        "seed": seed,
        "weights": config.reward,
        "fallback_arm": config.default_arm,
    }
    if log is None:
        return Simulation(**simulation).run(interactions)["target"], config
    with event_log_writer(log) as writer:
        return Simulation(**simulation, log=writer).run(interactions)["target"], config


def steady(target, start=STEADY_FROM, end=None):
    """The true token reduction (points) over the 10k blocks from `start` to `end`."""
    blocks = [
        b["true_achieved"]
        for b in target["blocks"]
        if b["from"] >= start and (end is None or b["to"] <= end)
    ]
    return sum(blocks) / len(blocks)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", list(TARGETS))
def test_true_reduction_within_two_points_after_50k(tmp_path, name, seed):
    """After 50k interactions (and, on drift-example, after its drift) the truth meets it."""
    target, _ = run(tmp_path, name, seed)
    assert target["target"] == pytest.approx(100 * TARGETS[name])
    assert abs(steady(target) - target["target"]) <= 2.0
    # λ kept moving: the controller, not a lucky configured weight, meets the target.
    assert target["updates"] > 50
    assert target["lambda"] != pytest.approx(0.02, rel=0.2)


@pytest.mark.parametrize("name", list(TARGETS))
def test_replay_calibrates_lambda_within_20_percent_of_online(tmp_path, name):
    """`replay --target` on the run's own log finds λ within 20 % of the online one."""
    log = tmp_path / "events.jsonl.gz"
    target, config = run(tmp_path, name, 1, log)
    end = target["true_path"][-1][0]
    recent = [row[1] for row in target["true_path"] if row[0] > end - 20_000]
    online = math.exp(sum(math.log(v) for v in recent) / len(recent))
    replayed = replay(file_events([log]), config, learn=True)
    offline = calibrate_log(replayed, f"token_reduction={TARGETS[name]}").lambda_
    assert offline == pytest.approx(online, rel=0.2)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_target_holds_through_a_drift_inside_the_window(tmp_path, seed):
    """With drift-example's drift moved to 50k, λ re-tunes and the target holds after it."""
    target, _ = run(tmp_path, "drift-example", seed, drift_at=50_000, interactions=100_000)
    assert abs(steady(target, 40_000, 50_000) - 30.0) <= 2.0  # before
    assert abs(steady(target, 50_000, 60_000) - 30.0) <= 3.0  # the drift's 10k
    assert abs(steady(target, 60_000) - 30.0) <= 2.0  # after
