"""The serving node's edges against real brokers: EventEmitter and TopicFollower."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from brokers import read_to_end
from kafka import KafkaProducer

from stopbandit.policies.client import PolicyClient
from stopbandit.policies.emitter import EventEmitter
from stopbandit.policies.sources import TopicFollower
from stopbandit.streams.codec import decode
from stopbandit.streams.events import Decision, Outcome, Policy

if TYPE_CHECKING:
    from brokers import Broker, Topics

pytestmark = pytest.mark.integration

ARMS = [0.5, 0.9, 1.0]


def policy_value(segment: str, version: int, arm: int) -> bytes:
    """A point-mass policy on ARMS[arm], as the controller would produce it."""
    pmf = [1.0 if k == arm else 0.0 for k in range(len(ARMS))]
    policy = Policy(
        segment=segment, version=version, issued_at=0.0, arms=ARMS, pmf=pmf, greedy=ARMS[arm]
    )
    return policy.model_dump_json(exclude_none=True).encode()


def test_emitter_writes_decodable_events_keyed_by_segment_in_order(broker: Broker, topics: Topics):
    """300 events arrive once each, keyed by segment, in emit order per segment."""
    segments = ["math/gsm8k", "qa/nq", "code/humaneval"]
    events: list[Decision | Outcome] = []
    for i in range(150):
        segment = segments[i % 3]
        events.append(
            Decision(
                v=1,
                request_id=f"r{i}",
                ts=float(i),
                segment=segment,
                threshold=0.9,
                probability=1.0,
                policy_version=0,
            )
        )
        events.append(
            Outcome(v=1, request_id=f"r{i}", ts=float(i), segment=segment, em=1.0, tokens=i)
        )
    with EventEmitter(broker.bootstrap_servers, topics.events) as emitter:
        assert all(emitter.emit(event) for event in events)
        assert emitter.flush(timeout_s=30.0)
        assert (emitter.stats.sent, emitter.stats.dropped, emitter.stats.failed) == (300, 0, 0)
    records = read_to_end(broker.bootstrap_servers, topics.events)
    received = [decode(r.key, r.value) for r in records]
    assert sorted(received, key=lambda e: (e.request_id, e.type)) == sorted(
        events, key=lambda e: (e.request_id, e.type)
    )
    for segment in segments:
        mine = [e for e in events if e.segment == segment]
        assert [e for e in received if e.segment == segment] == mine
    assert len({r.partition for r in records if r.key == b"qa/nq"}) == 1


def test_follower_folds_the_log_then_keeps_following(
    broker: Broker, topics: Topics, request: pytest.FixtureRequest
):
    """Catch-up folds duplicates, older versions and tombstones; later policies still arrive."""
    log = [
        (b"a", policy_value("a", 3, 1)),
        (b"a", policy_value("a", 2, 0)),
        (b"a", policy_value("a", 3, 0)),
        (b"b", policy_value("b", 4, 0)),
        (b"b", None),
        (b"*", policy_value("*", 5, 2)),
        (b"c", b"not json"),
    ]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    request.addfinalizer(producer.close)
    for key, value in log:
        producer.send(topics.policies, key=key, value=value)
    producer.flush()
    client = PolicyClient(fallback_threshold=0.5)
    with TopicFollower(client, broker.bootstrap_servers, topics.policies) as follower:
        assert follower.wait_caught_up(timeout_s=30.0)
        assert {s: p.version for s, p in client.policies.items()} == {"a": 3, "*": 5}
        assert client.choose("r", "a").threshold == 0.9
        assert client.choose("r", "b").threshold == 1.0
        assert client.rejected["json"] == 1
        producer.send(topics.policies, key=b"b", value=policy_value("b", 9, 1))
        producer.flush()
        assert client.wait_for(9, timeout_s=30.0)
        assert client.choose("r", "b").threshold == 0.9
        assert follower.wait_position({0: len(log) + 1}, timeout_s=30.0)
        assert follower.position() == {0: len(log) + 1}
