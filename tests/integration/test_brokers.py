"""Smoke tests of both real brokers with the client the controller uses (kafka-python)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from brokers import CONSUMER_SETTINGS, Broker, Topics, fold_latest, read_to_end, topic_config
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.integration

KEYS = [b"math/gsm8k/r1", b"qa/nq/qwq-32b", b"code/humaneval/r1"]


def produce(bootstrap_servers: str, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
    """Send keyed messages in one batch per partition and wait for every ack."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush()
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close()


def consume_in_group(
    bootstrap_servers: str, topic: str, group_id: str, count: int, *, timeout_s: float = 30.0
) -> tuple[list[object], KafkaConsumer]:
    """Poll as a group member until `count` records arrived; the consumer stays open."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **CONSUMER_SETTINGS,
    )
    records: list[object] = []
    deadline_s = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline_s:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    except BaseException:
        consumer.close()
        raise
    return records, consumer


def keyed_messages(count: int, tag: str) -> list[tuple[bytes, bytes | None]]:
    """`count` messages spread round-robin over three segment keys."""
    return [(KEYS[i % len(KEYS)], f"{tag}-{i}".encode()) for i in range(count)]


def test_topics_are_created(broker: Broker, topics: Topics) -> None:
    """The three contract topics exist with the partitions asked for."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        described = {t["name"]: t for t in admin.describe_topics([topics.events, topics.dlq])}
    finally:
        admin.close()
    assert len(described[topics.events]["partitions"]) == 4
    assert len(described[topics.dlq]["partitions"]) == 1
    if broker.compacts:
        assert topic_config(broker.bootstrap_servers, topics.policies) == {
            "cleanup.policy": "compact"
        }


def test_keyed_messages_round_trip_with_manual_commit(broker: Broker, topics: Topics) -> None:
    """Keyed messages come back per key in order, and a manual commit records the end."""
    sent = keyed_messages(30, "a")
    produce(broker.bootstrap_servers, topics.events, sent)

    records, consumer = consume_in_group(broker.bootstrap_servers, topics.events, "g-rt", 30)
    try:
        by_key: dict[bytes, list[bytes]] = defaultdict(list)
        partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
        for record in records:
            by_key[record.key].append(record.value)
            partitions_of_key[record.key].add(record.partition)
        consumer.commit()
        committed = {tp: consumer.committed(tp) for tp in consumer.assignment()}
        highwater = {tp: consumer.highwater(tp) for tp in consumer.assignment()}
    finally:
        consumer.close()

    assert len(records) == 30
    for key in KEYS:
        assert by_key[key] == [value for k, value in sent if k == key]
        assert len(partitions_of_key[key]) == 1
    assert committed == highwater
    assert sum(committed.values()) == 30


def test_committed_offset_survives_a_new_consumer(broker: Broker, topics: Topics) -> None:
    """A new member of the group resumes after the committed offsets, not from the start."""
    produce(broker.bootstrap_servers, topics.events, keyed_messages(12, "old"))
    records, consumer = consume_in_group(broker.bootstrap_servers, topics.events, "g-resume", 12)
    consumer.commit()
    consumer.close()
    assert len(records) == 12

    produce(broker.bootstrap_servers, topics.events, keyed_messages(5, "new"))
    resumed, consumer = consume_in_group(broker.bootstrap_servers, topics.events, "g-resume", 5)
    consumer.close()

    assert sorted(r.value for r in resumed) == sorted(v for _, v in keyed_messages(5, "new"))


def test_highwater_counts_every_record_of_a_batch(broker: Broker, topics: Topics) -> None:
    """The fetch high-water mark reaches the last record even when batches hold many."""
    produce(broker.bootstrap_servers, topics.events, keyed_messages(40, "hw"))

    records = read_to_end(broker.bootstrap_servers, topics.events)

    assert len(records) == 40


def test_compacted_topic_folds_to_last_value_per_key(broker: Broker, topics: Topics) -> None:
    """Folding the policies log gives the last value per key; a tombstone removes its key."""
    history: list[tuple[bytes, bytes | None]] = [
        (b"*", b"v1"),
        (b"seg-a", b"v1"),
        (b"seg-b", b"v1"),
        (b"seg-a", b"v2"),
        (b"*", b"v2"),
        (b"seg-b", None),
        (b"seg-a", b"v3"),
    ]
    produce(broker.bootstrap_servers, topics.policies, history)

    latest = fold_latest(read_to_end(broker.bootstrap_servers, topics.policies))

    assert latest == {b"*": b"v2", b"seg-a": b"v3"}


def test_restart_keeps_data_and_committed_offsets(broker: Broker, topics: Topics) -> None:
    """After a broker restart the records and the group's commits are still there."""
    group_id = f"g-restart-{uuid.uuid4().hex[:6]}"
    produce(broker.bootstrap_servers, topics.events, keyed_messages(10, "before"))
    records, consumer = consume_in_group(broker.bootstrap_servers, topics.events, group_id, 10)
    consumer.commit()
    consumer.close()
    assert len(records) == 10

    broker.restart()

    produce(broker.bootstrap_servers, topics.events, keyed_messages(4, "after"))
    resumed, consumer = consume_in_group(broker.bootstrap_servers, topics.events, group_id, 4)
    consumer.close()
    everything = read_to_end(broker.bootstrap_servers, topics.events)
    assert sorted(r.value for r in resumed) == sorted(v for _, v in keyed_messages(4, "after"))
    assert len(everything) == 14
