"""Regenerate tests/data/replay-golden.jsonl.gz: 3 000 seeded requests of the shipped scenario.

Run from the repository root: `.venv/bin/python tests/golden/make_replay_log.py`. The log
changes only if the simulator or the learners change; test_replay_golden.py then needs new
literals, which is the point of a golden test.
"""

from pathlib import Path

from controller.config import load_config
from controller.core import ControllerCore
from controller.scenario import DEFAULT_SCENARIO, load_scenario
from controller.simulate import ControllerAgent, Simulation
from streams.files import event_log_writer

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


if __name__ == "__main__":
    main()
