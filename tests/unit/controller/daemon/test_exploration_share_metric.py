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


def test_the_guardrail_gauge_counts_the_arms_held_back_per_segment() -> None:
    """stopbandit_guardrail_blocked_arms: what builder.blocked says of the policy's beliefs.

    With a limit of 0 points (any confident loss is too much) on a segment whose
    requests all lost EM at 0.5, that arm is held back; without a limit nothing is.
    """
    for limit, expect_blocked in ((0.0, True), (None, False)):
        metrics = Metrics()
        settings = config(guardrail={"max_em_drop_pts": limit})
        pub = Publisher(settings, Outbox(FakeProducer(Journal())), metrics)
        core = ControllerCore(settings)
        for i in range(400):
            arm = 0.5 if i % 2 else 1.0
            em = 1.0 if arm == 1.0 else 0.0
            for key, value in interaction(i, arm=arm, em=em):
                core.offer(decode(key, value), now=float(i))
        policies = pub.build([(core, False)], WALL_S, with_fallback=True)
        pub.send(policies)
        pub.delivered(policies, 0.01)
        blocked = metrics.registry.get_sample_value(
            "stopbandit_guardrail_blocked_arms", {"segment": SEGMENT}
        )
        assert blocked is not None
        assert (blocked >= 1.0) is expect_blocked
