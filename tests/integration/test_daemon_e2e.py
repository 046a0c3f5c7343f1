"""The daemon end to end on a real broker: policies as an in-process core's, hostile input."""

# ruff: noqa: ARG005 - every maker takes the message index, some ignore it

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import pytest
from brokers import create_topics, read_to_end
from daemon_helpers import (
    HMAC_KEY,
    base_settings,
    config_of,
    folded_policies,
    produce,
    reference_core,
    segment_of,
    simulated_lines,
)

from stopbandit.controller.daemon.loop import Daemon
from stopbandit.policies.signing import verify
from stopbandit.streams.events import FALLBACK_SEGMENT

if TYPE_CHECKING:
    from stopbandit.controller.core import ControllerCore

pytestmark = pytest.mark.integration

# 5k interactions (10k events): enough for the learners to move off the default arm.
INTERACTIONS = 5_000
# 10k hostile messages, one between every two valid ones (10k interactions, 20k events).
HOSTILE = 10_000
HOSTILE_RUN_INTERACTIONS = 10_000


def run_daemon(settings) -> Daemon:
    """Run an in-process daemon over the topic until it has been idle for 3 s."""
    daemon = Daemon(config_of(settings))
    daemon.run(idle_timeout_s=3.0)
    return daemon


def greedy_of(core: ControllerCore) -> dict[str, float]:
    """Greedy arm per segment (and `*`) of every policy the core builds now."""
    return {p.segment: p.greedy for p in core.build_policies(0.0, force=True)}


def test_published_policies_equal_an_in_process_core(broker, tmp_path):
    """Policies folded from the topic have the greedy arms of a core fed the same events."""
    topics = create_topics(broker.bootstrap_servers, events_partitions=1)
    lines = list(simulated_lines(INTERACTIONS, 11))
    produce(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines])
    settings = base_settings(broker, topics, tmp_path)

    daemon = run_daemon(settings)

    published = folded_policies(broker.bootstrap_servers, topics.policies)
    expected = greedy_of(reference_core(settings, lines))
    assert {s: p["greedy"] for s, p in published.items()} == expected
    assert len(expected) > 2
    assert set(expected) - {FALLBACK_SEGMENT}
    assert any(g != 1.0 for g in expected.values())  # it learned something
    assert all(verify(p, HMAC_KEY.encode()) for p in published.values())
    records = read_to_end(broker.bootstrap_servers, topics.policies)
    versions = [json.loads(r.value)["version"] for r in records]
    assert versions == sorted(set(versions))
    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_interactions_learned_total") == INTERACTIONS
    assert read_to_end(broker.bootstrap_servers, topics.dlq) == []


def hostile_messages(
    count: int, valid_segment: str
) -> list[tuple[bytes | None, bytes | None, str]]:
    """`count` invalid messages of every kind the contract forbids, with their reason kind."""
    key = valid_segment.encode()

    def event(**fields):
        base = {
            "type": "decision",
            "v": 1,
            "request_id": "hostile-0",
            "ts": 1_764_489_600.0,
            "segment": valid_segment,
            "threshold": 0.95,
            "probability": 0.5,
            "policy_version": 1,
        }
        base.update(fields)
        return json.dumps(base, allow_nan=True).encode()

    outcome = {"type": "outcome", "em": 1.0, "tokens": 10}
    makers = [
        lambda i: (key, b'{"type": "decision", "v": 1,', "json"),
        lambda i: (key, event(request_id=f"h{i}", threshold="high"), "schema"),
        lambda i: (key, event(request_id=f"h{i}", **{**outcome, "em": math.nan}), "schema"),
        lambda i: (key, event(request_id=f"h{i}", ts=math.inf), "schema"),
        lambda i: (key, event(request_id=f"h{i}", **{**outcome, "tokens": -5}), "schema"),
        lambda i: (key, event(request_id=f"h{i}", probability=0.0), "schema"),
        lambda i: (key, event(request_id=f"h{i}", probability=1.5), "schema"),
        lambda i: (key, event(request_id=f"h{i}", threshold=0.42), "arm"),
        lambda i: (b"some/other/segment", event(request_id=f"h{i}"), "key"),
        lambda i: (key, bytes(range(256)) * 3, "json"),
        lambda i: (key, event(request_id=f"h{i}", v=2), "version"),
        lambda i: (key, b"[1, 2, 3]", "json"),
        lambda i: (key, None, "empty"),
    ]
    messages = [makers[i % len(makers)](i) for i in range(count)]
    # A few oversized values (each is ~70 KB on the wire; keep the test light).
    for i in range(0, count, max(count // 5, 1)):
        messages[i] = (key, b'{"pad": "' + b"x" * (70 * 1024) + b'"}', "size")
    return messages


def test_hostile_messages_are_dead_lettered_and_change_nothing(broker, tmp_path):
    """Interleaved hostile messages each land in the DLQ; the policies equal a clean run's."""
    topics = create_topics(broker.bootstrap_servers, events_partitions=1)
    lines = list(simulated_lines(HOSTILE_RUN_INTERACTIONS, 12))
    valid = [(segment_of(x), x) for x in lines]
    hostile = hostile_messages(HOSTILE, json.loads(lines[0])["segment"])
    stride = len(valid) // len(hostile)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i, (key, value, _) in enumerate(hostile):
        messages += valid[i * stride : (i + 1) * stride]
        messages.append((key, value))
    messages += valid[len(hostile) * stride :]
    produce(broker.bootstrap_servers, topics.events, messages)
    settings = base_settings(broker, topics, tmp_path)

    daemon = run_daemon(settings)

    letters = [json.loads(r.value) for r in read_to_end(broker.bootstrap_servers, topics.dlq)]
    assert len(letters) == HOSTILE
    assert all(letter["reason"] and letter["topic"] == topics.events for letter in letters)
    assert all(letter["partition"] == 0 for letter in letters)
    valid_set = set(valid)
    hostile_offsets = [i for i, m in enumerate(messages) if m not in valid_set]
    assert sorted(letter["offset"] for letter in letters) == hostile_offsets
    sample = daemon.metrics.registry.get_sample_value
    for kind in {k for _, _, k in hostile}:
        expected = sum(1 for _, _, k in hostile if k == kind)
        assert sample("stopbandit_events_invalid_total", {"reason": kind}) == expected, kind
    published = folded_policies(broker.bootstrap_servers, topics.policies)
    clean = greedy_of(reference_core(settings, lines))
    assert {s: p["greedy"] for s, p in published.items()} == clean
    assert sample("stopbandit_interactions_learned_total") == HOSTILE_RUN_INTERACTIONS
