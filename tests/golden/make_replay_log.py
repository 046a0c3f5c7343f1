"""Regenerate tests/data/replay-golden.jsonl.gz: 3 000 seeded requests of the shipped scenario.

Run from the repository root: `.venv/bin/python tests/golden/make_replay_log.py`. The log is
checked in and stays as it is when the learners change (it is what an older daemon logged);
what replay learns from it does change, and `--literals` prints the learner-dependent literals
of test_replay_golden.py (LEARNED_GREEDY, SWEEP, LEARNED) for the current learners, and
EXPECTED (the logged and fixed policies, which depend on the log and the estimators alone:
they change only when the estimators do, as when replay began to bound the mass of arms the
log barely played instead of extrapolating it).
"""

import sys
from pathlib import Path

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
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
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.streams.files import event_log_writer

DATA = Path(__file__).parents[1] / "data"
PATH = DATA / "replay-golden.jsonl.gz"
CONFIG = DATA / "replay-golden.yaml"
SEED = 7
INTERACTIONS = 3_000
PUBLISH_EVERY = 100


def main() -> None:
    """Write the log."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = load_config(CONFIG)
    agent = ControllerAgent(ControllerCore(config))
    with event_log_writer(PATH) as log:
        Simulation(
            scenario,
            agent,
            seed=SEED,
            weights=config.reward,
            fallback_arm=config.default_arm,
            publish_every=PUBLISH_EVERY,
            log=log,
        ).run(INTERACTIONS)


def print_literals() -> None:
    """Print what replay learns from the checked-in log with the current learners."""
    config = load_config(CONFIG)
    log = replay(file_events([PATH]), config, publish_every=PUBLISH_EVERY)
    assert log.core is not None
    print("LEARNED_GREEDY =", {s: p.greedy for s, p in log.core.policies.items()})  # noqa: T201
    sweep = sweep_targets(log, Sweep.parse("token_cost_per_1k=0.005:0.05:4"))
    print("SWEEP =", {t.name: t.greedy for t in sweep})  # noqa: T201
    evaluation = evaluate(
        log, [logged_target(), *fixed_targets(log), learned_target(log)], config.reward
    )
    found = {
        (e.name, e.estimator): (
            e.reward.value, e.reward.ci_low, e.reward.ci_high, e.em.value, e.tokens.value,
            e.reward.ess,
        )
        for e in evaluation.overall
        if e.name in ("logged", "learned", *(f"fixed:{t:g}" for t in (0.9, 0.95, 0.99, 1.0)))
    }  # fmt: skip
    print("LEARNED =", {k: v for k, v in found.items() if k[0] == "learned"})  # noqa: T201
    print("EXPECTED =", {k: v for k, v in found.items() if k[0] != "learned"})  # noqa: T201


if __name__ == "__main__":
    if "--literals" in sys.argv:
        print_literals()
    else:
        main()
