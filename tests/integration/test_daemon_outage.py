"""Broker trouble a running daemon must heal from, or say loudly that it cannot (Apache Kafka).

Each test runs the daemon as a process (`stopbandit run`) against a broker of
this module's own, since one test wipes the broker's disks (`restart_empty`)
and so every topic the session's shared broker holds.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from brokers import (
    KafkaBroker,
    KafkaJarsMissingError,
    TansuBroker,
    Topics,
    create_topics,
)
from daemon_helpers import (
    DaemonProcess,
    base_settings,
    config_of,
    folded_policies,
    learned_in_checkpoints,
    produce,
    segment_of,
    simulated_lines,
    wait_for,
    write_config,
)
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

# Tansu creates a topic that a metadata request names, with 4 partitions: the running
# daemon may do so before the test recreates the events topic on the empty broker.
PARTITIONS = 4
# Bounds against hanging, not speed targets: generous on a shared 2-core machine.
TIMEOUT_S = 180.0


@pytest.fixture(scope="module", params=["kafka", "tansu"], ids=["kafka", "tansu"])
def own_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker | TansuBroker]:
    """A broker of each kind for this module alone (one test wipes it)."""
    started: KafkaBroker | TansuBroker
    if request.param == "kafka":
        try:
            started = KafkaBroker(tmp_path_factory.mktemp("kafka-outage"))
        except KafkaJarsMissingError as error:
            pytest.fail(str(error), pytrace=False)
    else:
        started = TansuBroker()
    started.start()
    try:
        yield started
    finally:
        started.stop()


def settings_of(broker: Any, topics: Any, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """`base_settings`, without a target section that is off (its dump does not load back)."""
    settings = base_settings(broker, topics, tmp_path, **overrides)
    target = settings.get("target", {})
    if target.get("token_reduction") is None and target.get("max_em_drop_pts") is None:
        settings.pop("target", None)
    return settings


def http_port(daemon: DaemonProcess) -> int | None:
    """The port the daemon's endpoint bound (it asks for a free one)."""
    ports = [e["port"] for e in daemon.events() if e.get("event") == "http.started"]
    return ports[0] if ports else None


def status(daemon: DaemonProcess, path: str) -> int:
    """The HTTP status of GET `path` on the daemon (0: no answer)."""
    port = http_port(daemon)
    if port is None:
        return 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def events_named(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """The daemon's log events of one name."""
    return [e for e in daemon.events() if e.get("event") == name]


def produce_lines(broker: Any, topic: str, lines: Any) -> None:
    """Produce event lines keyed by segment."""
    produce(broker.bootstrap_servers, topic, [(segment_of(x), x) for x in lines])


def recreate_topics(bootstrap_servers: str, topics: Topics) -> None:
    """Create the three topics again on an empty broker, as `create_topics` did.

    One by one: the running daemon's clients may have had one auto-created meanwhile
    (Tansu creates a topic a metadata request names).
    """
    specs = [
        NewTopic(topics.events, num_partitions=PARTITIONS, replication_factor=1),
        NewTopic(
            topics.policies,
            num_partitions=1,
            replication_factor=1,
            topic_configs={"cleanup.policy": "compact"},
        ),
        NewTopic(topics.dlq, num_partitions=1, replication_factor=1),
    ]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="stopbandit-tests")
    try:
        for spec in specs:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([spec], wait_for_metadata=True)
        [events] = admin.describe_topics([topics.events])
        assert len(events["partitions"]) == PARTITIONS, events
    finally:
        admin.close()


def test_broker_back_empty_the_daemon_publishes_and_checkpoints_again(own_broker, tmp_path):
    """Broker disks lost under a running daemon: policies and checkpoints again, or a 503.

    The old producer's id means nothing to the new broker. kafka-python bumps its
    epoch where the broker supports that (Kafka); where it cannot (Tansu), the
    producer's state turns fatal and every later batch fails, and the daemon replaces
    it (counted, logged). Either way the events produced after the outage are
    learned, published and checkpointed; a daemon that could not do so must say it
    on /healthz (503), so that Kubernetes restarts it.
    """
    broker = own_broker
    topics = create_topics(broker.bootstrap_servers, events_partitions=PARTITIONS)
    lines = simulated_lines(2_000, 51)
    first, second = lines[:1_000], lines[1_000:]
    interactions = len(lines) // 2
    settings = settings_of(
        broker,
        topics,
        tmp_path,
        # The recreated events topic ends below the checkpoints: consume it from its start.
        checkpoint={"interval_s": 0.5, "on_offset_ahead": "reset_offsets"},
        http={"unhealthy_after_s": 30.0},
    )
    config = config_of(settings)
    config_path = write_config(settings, tmp_path / "config.yaml")
    daemon = DaemonProcess(config_path, tmp_path / "daemon.log")
    try:
        produce_lines(broker, topics.events, first)
        wait_for(
            lambda: learned_in_checkpoints(config, PARTITIONS) == (len(first) // 2, 0),
            TIMEOUT_S,
            "checkpoints of the first interactions",
        )
        assert folded_policies(broker.bootstrap_servers, topics.policies)
        assert status(daemon, "/healthz") == 200

        broker.restart_empty()
        recreate_topics(broker.bootstrap_servers, topics)
        # At once, so the new log may run past the checkpoints' offsets before the daemon
        # restores on it: only the topic's new id then tells that it is another log.
        produce_lines(broker, topics.events, second)

        def healed_or_unhealthy() -> bool:
            healed = learned_in_checkpoints(config, PARTITIONS) == (interactions, 0)
            return healed or status(daemon, "/healthz") == 503

        wait_for(healed_or_unhealthy, TIMEOUT_S, "every interaction checkpointed, or a 503")
        assert status(daemon, "/healthz") == 200, "stuck, and said so (503)"
        segments = {segment_of(x).decode() for x in second} | {"*"}
        wait_for(
            lambda: segments <= set(folded_policies(broker.bootstrap_servers, topics.policies)),
            TIMEOUT_S,
            "the new broker's policies topic to hold every segment's policy",
        )
        assert events_named(daemon, "checkpoint.offset_ahead"), "the new log was not noticed"
        replaced = events_named(daemon, "producer.replaced")
        if broker.kind == "tansu":  # Kafka lets kafka-python bump the epoch instead
            assert replaced, "the stuck producer was not replaced"
    finally:
        code = daemon.terminate()
    assert code == 0


def recreate_policies_topic(bootstrap_servers: str, topic: str) -> None:
    """Delete the policies topic and create it again, empty (as an operator's mistake would)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="stopbandit-tests")
    try:
        admin.delete_topics([topic])

        def gone() -> bool:
            return topic not in admin.list_topics()

        wait_for(gone, TIMEOUT_S, f"{topic} to be deleted")

        def created() -> bool:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            num_partitions=1,
                            replication_factor=1,
                            topic_configs={"cleanup.policy": "compact"},
                        )
                    ],
                    wait_for_metadata=True,
                )
            except TopicAlreadyExistsError:
                return True
            except UnknownTopicOrPartitionError:  # deletion still in flight on the broker
                return False
            return True

        wait_for(created, TIMEOUT_S, f"{topic} to be created again")
    finally:
        admin.close()


def test_policies_topic_deleted_under_the_daemon_is_refilled(own_broker, tmp_path):
    """Every segment's policy is back on a recreated policies topic, with no new event.

    Acknowledged writes into the deleted topic are gone; only changed policies go out
    between rounds, so only the anti-entropy period (`publish.republish_interval_s`)
    sends the unchanged ones again.
    """
    kafka = own_broker
    topics = create_topics(kafka.bootstrap_servers, events_partitions=PARTITIONS)
    lines = simulated_lines(1_000, 52)
    settings = settings_of(kafka, topics, tmp_path, publish={"republish_interval_s": 2.0})
    config_path = write_config(settings, tmp_path / "config.yaml")
    daemon = DaemonProcess(config_path, tmp_path / "daemon.log")
    try:
        produce_lines(kafka, topics.events, lines)
        segments = {segment_of(x).decode() for x in lines} | {"*"}
        wait_for(
            lambda: set(folded_policies(kafka.bootstrap_servers, topics.policies)) == segments,
            TIMEOUT_S,
            "a policy for every segment",
        )
        recreate_policies_topic(kafka.bootstrap_servers, topics.policies)
        wait_for(
            lambda: set(folded_policies(kafka.bootstrap_servers, topics.policies)) == segments,
            TIMEOUT_S,
            "every segment's policy back on the recreated topic",
        )
        policies = folded_policies(kafka.bootstrap_servers, topics.policies)
        assert all(policy["segment"] == segment for segment, policy in policies.items())
    finally:
        code = daemon.terminate()
    assert code == 0
