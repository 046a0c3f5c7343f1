"""Day 1 on a real broker: the first policies keep today's threshold (issue 13's safe start).

A fleet with no policy yet serves every request at its configured threshold
(0.95 here, not the reference arm, so exploration could go either way) and
logs it. The daemon reads that traffic and publishes. Read off the policies
topic in order, the first `*` policy and every segment's first policy put at
least 1 - exploration.max_explore on 0.95, keep it greedy, and explore only its
neighbours (0.9 and 0.99): the traffic has evidence about no other arm.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import pytest
from brokers import create_topics, read_to_end
from daemon_helpers import base_settings, config_of, produce, segment_of

from stopbandit.controller.daemon.loop import Daemon
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import Simulation
from stopbandit.streams.events import FALLBACK_SEGMENT
from stopbandit.streams.files import EventLogWriter

if TYPE_CHECKING:
    from stopbandit.streams.events import Decision, Outcome, Policy

pytestmark = pytest.mark.integration

DEFAULT_ARM = 0.95
INTERACTIONS = 3_000


class NodesWithoutPolicy:
    """Serving nodes before the controller's first policy: every request at the default."""

    def policy_for(self, segment: str) -> Policy | None:  # noqa: ARG002 - none for any segment
        """No policy yet."""
        return None

    def observe(self, decision: Decision, outcome: Outcome, now: float) -> None:
        """Nothing learns here: the daemon under test does."""

    def publish(self, now: float) -> None:
        """Nothing to publish."""


def day_one_lines() -> list[bytes]:
    """Decisions and outcomes of the shipped scenario's fleet, all served at the default."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    buffer = io.BytesIO()
    settings = config_of({"arms": scenario.arms, "default_arm": DEFAULT_ARM})
    Simulation(
        scenario,
        NodesWithoutPolicy(),
        seed=13,
        weights=settings.reward,
        fallback_arm=DEFAULT_ARM,
        log=EventLogWriter(buffer),
    ).run(INTERACTIONS)
    return buffer.getvalue().splitlines()


def test_the_first_policies_keep_the_default_arm(broker, tmp_path) -> None:
    """First `*` and first policy of every segment: >= 1 - max_explore at 0.95, greedy there."""
    topics = create_topics(broker.bootstrap_servers)
    lines = day_one_lines()
    produce(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines])
    settings = base_settings(broker, topics, tmp_path)
    settings["default_arm"] = DEFAULT_ARM
    config = config_of(settings)
    Daemon(config).run(idle_timeout_s=3.0)

    first: dict[str, dict] = {}
    for record in read_to_end(broker.bootstrap_servers, topics.policies):
        if record.value is not None:
            first.setdefault(record.key.decode(), json.loads(record.value))
    segments = {s.key for s in load_scenario(DEFAULT_SCENARIO).segments}
    assert set(first) == {*segments, FALLBACK_SEGMENT}
    arms = list(config.arms)
    default = arms.index(DEFAULT_ARM)
    for segment, policy in first.items():
        pmf = policy["pmf"]
        assert policy["greedy"] == DEFAULT_ARM, segment
        assert pmf[default] >= 1.0 - config.exploration.max_explore - 1e-6, (segment, pmf)
        far = [p for k, p in enumerate(pmf) if abs(k - default) > 1]
        assert far == [0.0] * len(far), (segment, pmf)
