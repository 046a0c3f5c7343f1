"""Replay of the events a controller consumed reaches the policy that controller learned online."""

from pathlib import Path

import numpy as np
import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.sources import file_events
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.streams.codec import decode
from stopbandit.streams.files import event_log_writer, read_event_lines

CONFIG = load_config(Path(__file__).parents[1] / "data" / "replay-golden.yaml")
INTERACTIONS = 2_000
PUBLISH_EVERY = 200


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    """A simulated fleet driven by a controller core; the events it consumed, logged."""
    path = tmp_path_factory.mktemp("online") / "events.jsonl.gz"
    agent = ControllerAgent(ControllerCore(CONFIG))
    with event_log_writer(path) as log:
        Simulation(
            load_scenario(DEFAULT_SCENARIO),
            agent,
            seed=11,
            weights=CONFIG.reward,
            fallback_arm=CONFIG.default_arm,
            publish_every=PUBLISH_EVERY,
            log=log,
        ).run(INTERACTIONS)
    agent.publish(2e9)  # the last build, as replay does at the end of its log
    return agent.core, path


def core_fed_directly(path):
    """A ControllerCore fed every event in order, building every PUBLISH_EVERY interactions."""
    core = ControllerCore(CONFIG)
    joined = 0
    for _, _, line in read_event_lines([path]):
        event = decode(None, line)
        if core.offer(event, event.ts) is not None:
            joined += 1
            if joined % PUBLISH_EVERY == 0:
                core.build_policies(event.ts)
    core.build_policies(2e9)
    return core


def policies_of(core):
    """Greedy threshold and pmf per segment."""
    return {s: (p.greedy, p.pmf) for s, p in core.policies.items()}


def test_replay_learns_what_the_online_core_learned(online):
    """Same greedy thresholds and pmfs per segment, same learned count and statistics."""
    core, path = online
    replayed = replay(file_events([path]), CONFIG, publish_every=PUBLISH_EVERY)
    assert replayed.core is not None
    assert policies_of(replayed.core) == policies_of(core)
    assert replayed.core.learner.learned == core.learner.learned == INTERACTIONS
    assert replayed.core.snapshot()["learner"]["stats"] == core.snapshot()["learner"]["stats"]


def test_replay_matches_a_core_fed_the_events_directly(online):
    """Replay's join and learning are the core's: a core fed the events ends the same."""
    _, path = online
    replayed = replay(file_events([path]), CONFIG, publish_every=PUBLISH_EVERY)
    direct = core_fed_directly(path)
    assert replayed.core is not None
    assert policies_of(replayed.core) == policies_of(direct)
    assert replayed.core.snapshot()["learner"] == direct.snapshot()["learner"]


def test_replay_reproduces_every_logged_pmf(online):
    """Scored progressively, the learned policy is the logging policy, row by row."""
    _, path = online
    replayed = replay(file_events([path]), CONFIG, publish_every=PUBLISH_EVERY)
    assert replayed.learned_pmf is not None
    assert np.array_equal(replayed.learned_pmf, replayed.logged_pmf)


def test_another_rebuild_cadence_changes_the_scored_pmfs_not_what_is_learned(online):
    """Learning does not depend on when policies are built; the pmfs in force do."""
    core, path = online
    replayed = replay(file_events([path]), CONFIG, publish_every=PUBLISH_EVERY * 2)
    assert replayed.core is not None
    assert replayed.core.snapshot()["learner"] == core.snapshot()["learner"]
    assert not np.array_equal(replayed.learned_pmf, replayed.logged_pmf)
