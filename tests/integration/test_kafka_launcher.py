"""The Apache Kafka launcher on its own: port collisions and crash recovery."""

from __future__ import annotations

import socket
import uuid
from typing import TYPE_CHECKING

import brokers
import pytest
from brokers import KafkaBroker, create_topics, read_to_end
from kafka import KafkaProducer

from stopbandit.streams.embedded import pick_free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id like "-Xy..." made the storage tool fail: it read the id as an option."""
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))
    plain = uuid.UUID(bytes=bytes(16))
    draws = iter([dash_first, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert brokers.kafka_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"


def test_taken_port_is_retried_on_fresh_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the picked client port is taken before Kafka binds it, start picks new ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, pick_free_port(), pick_free_port(), pick_free_port()])
        monkeypatch.setattr(brokers, "pick_free_port", lambda: next(ports))
        broker = KafkaBroker(tmp_path)
        try:
            broker.start()
            assert not broker.bootstrap_servers.endswith(f":{taken}")
        finally:
            broker.stop()


def test_killed_broker_comes_back_with_its_data(tmp_path: Path) -> None:
    """After a SIGKILL, starting again recovers every acknowledged record."""
    broker = KafkaBroker(tmp_path)
    broker.start()
    try:
        topics = create_topics(broker.bootstrap_servers)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        try:
            for i in range(20):
                producer.send(topics.events, key=b"seg", value=str(i).encode()).get(timeout=10)
        finally:
            producer.close()

        broker.kill()
        broker.start()

        values = [r.value for r in read_to_end(broker.bootstrap_servers, topics.events)]
        assert values == [str(i).encode() for i in range(20)]
    finally:
        broker.stop()
