"""`stopbandit fleet` as a user runs it against a broker: events out, usage errors caught."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from stopbandit.streams.codec import decode
from stopbandit.streams.embedded import EmbeddedTansu

STOPBANDIT = str(Path(sys.executable).with_name("stopbandit"))


def read_all(bootstrap_servers: str, topic: str, expected: int) -> list:
    """The first `expected` records of a one-partition topic (fails after 30 s without them)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, consumer_timeout_ms=30_000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        records = []
        for record in consumer:
            records.append(record)
            if len(records) == expected:
                break
        return records
    finally:
        consumer.close()


@pytest.mark.integration
def test_fleet_writes_a_decision_and_an_outcome_per_request():
    """Without a controller the nodes use the fallback and still log every request."""
    with EmbeddedTansu() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics(
            [NewTopic("fleet.events", 1, 1), NewTopic("fleet.policies", 1, 1)],
            wait_for_metadata=True,
        )
        admin.close()
        result = subprocess.run(
            [
                STOPBANDIT, "fleet", "--bootstrap", broker.bootstrap_servers,
                "--interactions", "300", "--rate", "0", "--seed", "4", "--json",
                "--events-topic", "fleet.events", "--policies-topic", "fleet.policies",
            ],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        records = read_all(broker.bootstrap_servers, "fleet.events", 600)
    assert report["interactions"] == 300
    assert report["emitter"] == {"queued": 600, "sent": 600, "dropped": 0, "failed": 0}
    events = [decode(r.key, r.value) for r in records]
    assert [e.type for e in events] == ["decision", "outcome"] * 300
    assert {e.request_id for e in events} == {f"s4-{i:08d}" for i in range(300)}
    decisions = [e for e in events if e.type == "decision"]
    assert all(d.threshold == 1.0 and d.policy_version == 0 for d in decisions)


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--scenario", "no-such-scenario.yaml"],
        ["demo", "--interactions", "0"],
        ["fleet", "--bootstrap", "127.0.0.1:1", "--scenario", "no-such-scenario.yaml"],
        ["fleet", "--bootstrap", "127.0.0.1:1", "--interactions", "0"],
    ],
)
def test_bad_input_exits_2_with_a_reason(args, tmp_path):
    """Usage errors stop before anything starts, with exit code 2 and a one-line reason."""
    result = subprocess.run(
        [STOPBANDIT, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("stopbandit: ")
