"""stopbandit_exploration_share: what each delivered policy draws off its greedy arm."""

from __future__ import annotations

import pytest
from daemon_fakes import SEGMENT, FakeProducer, Journal, config, interaction

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.publish import Publisher
from stopbandit.streams.codec import decode
from stopbandit.streams.kafka import Outbox

WALL_S = 1_764_489_600.0


def test_each_delivered_policy_sets_its_segments_exploration_share() -> None:
    """1 - pmf[greedy] per segment (and `*`), within the configured cap."""
    metrics = Metrics()
    settings = config()
    pub = Publisher(settings, Outbox(FakeProducer(Journal())), metrics)
    core = ControllerCore(settings)
    for i in range(50):
        for key, value in interaction(i, arm=1.0):
            core.offer(decode(key, value), now=float(i))
    policies = pub.build([(core, False)], WALL_S, with_fallback=True)
    pub.send(policies)
    pub.delivered(policies, 0.01)
    assert {p.segment for p in policies} == {SEGMENT, "*"}
    for policy in policies:
        share = metrics.registry.get_sample_value(
            "stopbandit_exploration_share", {"segment": policy.segment}
        )
        greedy = policy.arms.index(policy.greedy)
        assert share == pytest.approx(1.0 - policy.pmf[greedy])
        assert 0.0 < share <= settings.exploration.max_explore + 1e-9
