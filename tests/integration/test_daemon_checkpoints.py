"""Damaged, missing and stale checkpoints against real brokers: no traceback, no exit, no skip.

Each test runs the daemon as a process (`stopbandit run`), damages what it
left behind as an operator or a disk would, and starts it again.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from brokers import create_topics, read_to_end
from daemon_helpers import (
    STOPBANDIT,
    DaemonProcess,
    base_settings,
    config_of,
    produce,
    segment_of,
    simulated_lines,
    wait_for,
    write_config,
)
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from stopbandit.controller.daemon.checkpoint_stores import (
    CheckpointError,
    DirCheckpointStore,
    KafkaCheckpointStore,
)
from stopbandit.streams.embedded import pick_free_port
from stopbandit.streams.kafka import Outbox

if TYPE_CHECKING:
    from pathlib import Path

    from stopbandit.controller.config import StopbanditConfig

pytestmark = pytest.mark.integration

PARTITIONS = 2
# Bounds against hanging, not speed targets: generous on a shared 2-core machine.
TIMEOUT_S = 120.0


def settings_of(broker: Any, topics: Any, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """`base_settings`, without a target section that is off (its dump does not load back)."""
    settings = base_settings(broker, topics, tmp_path, **overrides)
    target = settings.get("target", {})
    if target.get("token_reduction") is None and target.get("max_em_drop_pts") is None:
        settings.pop("target", None)
    return settings


def store_of(config: StopbanditConfig) -> DirCheckpointStore | KafkaCheckpointStore:
    """The daemon's checkpoint store, read from the test."""
    if config.checkpoint.store == "dir":
        return DirCheckpointStore(config.checkpoint.dir)
    return KafkaCheckpointStore(config.kafka, Outbox(None), config.checkpoint.topic)


def learned(config: StopbanditConfig, partition: int) -> int | None:
    """Interactions in the partition's newest valid checkpoint (None: none readable)."""
    try:
        checkpoint = store_of(config).load(config.kafka.events_topic, partition)
    except CheckpointError:
        return None
    return None if checkpoint is None else int(checkpoint.state["learner"]["learned"])


def interactions_by_partition(bootstrap_servers: str, topic: str) -> Counter[int]:
    """Decisions on the events topic, per partition (each joins one outcome)."""
    return Counter(
        r.partition
        for r in read_to_end(bootstrap_servers, topic)
        if json.loads(r.value)["type"] == "decision"
    )


def events_named(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """The daemon's log events of one name."""
    return [e for e in daemon.events() if e.get("event") == name]


def produce_lines(broker: Any, topic: str, lines: Any) -> None:
    """Produce event lines keyed by segment."""
    produce(broker.bootstrap_servers, topic, [(segment_of(x), x) for x in lines])


def damage_newest(config: StopbanditConfig, partition: int, *, every_copy: bool) -> None:
    """Break the partition's newest copy (or every copy) as a disk or a stray writer would."""
    topic = config.kafka.events_topic
    store = store_of(config)
    if isinstance(store, DirCheckpointStore):
        newest = store.path(topic, partition)
        newest.write_bytes(newest.read_bytes()[:100])  # truncated
        if every_copy:
            previous = store.previous_path(topic, partition)
            flipped = bytearray(previous.read_bytes())
            flipped[len(flipped) // 2] ^= 0x01
            previous.write_bytes(bytes(flipped))
        return
    copies = [c for c in store.copies(topic, partition) if c.checkpoint is not None]
    slots = [c.name.rsplit(" ", 1)[-1] for c in copies]
    base = f"{config.kafka.group_id}/{topic}/{partition}"
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all")
    try:
        for slot in slots if every_copy else slots[:1]:
            producer.send(config.checkpoint.topic, key=f"{base}/{slot}".encode(), value=b"{no")
        producer.flush()
    finally:
        producer.close()


@pytest.mark.parametrize("store", ["dir", "kafka"])
def test_damaged_checkpoints_fall_back_or_refuse_and_the_rest_learns_exactly_once(
    broker, tmp_path, store
):
    """Partition 0's newest copy broken, every copy of partition 1: fallback, refusal, reset.

    Partition 0 is restored from its older copy and learns every interaction once;
    partition 1 is refused (an error with the fix) while partition 0 goes on, until
    `stopbandit checkpoint reset 1` lets it learn its events once too.
    """
    topics = create_topics(broker.bootstrap_servers, events_partitions=PARTITIONS)
    lines = simulated_lines(3_000, 41)
    settings = settings_of(broker, topics, tmp_path, checkpoint={"store": store, "interval_s": 0.5})
    config = config_of(settings)
    config_path = write_config(settings, tmp_path / "config.yaml")
    first = DaemonProcess(config_path, tmp_path / "first.log")
    try:
        for end in (1_000, 2_000):  # two checkpoints per partition: a newest and an older copy
            produce_lines(broker, topics.events, lines[end - 1_000 : end])
            wait_for(
                lambda end=end: sum(learned(config, p) or 0 for p in range(PARTITIONS)) == end // 2,
                TIMEOUT_S,
                f"checkpoints of {end // 2} interactions",
            )
    finally:
        assert first.terminate() == 0

    damage_newest(config, 0, every_copy=False)
    damage_newest(config, 1, every_copy=True)
    produce_lines(broker, topics.events, lines[2_000:])
    expected = interactions_by_partition(broker.bootstrap_servers, topics.events)
    second = DaemonProcess(config_path, tmp_path / "second.log")
    try:
        wait_for(lambda: learned(config, 0) == expected[0], TIMEOUT_S, "partition 0 caught up")
        wait_for(lambda: events_named(second, "partition.refused"), TIMEOUT_S, "a refusal")
        assert second.process.poll() is None
        [fallback] = events_named(second, "checkpoint.fallback")
        assert fallback["partition"] == 0
        refused = events_named(second, "partition.refused")[0]
        assert (refused["partition"], refused["reason"]) == (1, "corrupt")
        assert "stopbandit checkpoint reset 1" in refused["fix"]
        assert not any(
            e["event"] == "partition.restored" and e["partition"] == 1 for e in second.events()
        )

        reset = subprocess.run(
            [
                STOPBANDIT,
                "checkpoint",
                "reset",
                "1",
                "--config",
                str(config_path),
                "--offset",
                "earliest",
                "--yes",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert reset.returncode == 0, reset.stderr
        wait_for(lambda: learned(config, 1) == expected[1], TIMEOUT_S, "partition 1 relearned")
    finally:
        code = second.terminate()

    assert code == 0
    assert (learned(config, 0), learned(config, 1)) == (expected[0], expected[1])
    assert "Traceback" not in second.log_path.read_text()
    assert read_to_end(broker.bootstrap_servers, topics.dlq) == []


def learned_metric(port: int) -> float:
    """stopbandit_interactions_learned_total from the daemon's /metrics (0 before it answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("stopbandit_interactions_learned_total "):
            return float(line.split()[1])
    return 0.0


def test_temporaries_are_cleaned_and_a_failed_final_checkpoint_exits_3(broker, tmp_path):
    """A `.ckpt-*` left by a crash is gone after start; SIGTERM with an unwritable store exits 3."""
    topics = create_topics(broker.bootstrap_servers, events_partitions=PARTITIONS)
    port = pick_free_port()
    settings = settings_of(
        broker, topics, tmp_path, checkpoint={"interval_s": 3600.0}, http={"port": port}
    )
    config = config_of(settings)
    config.checkpoint.dir.mkdir(parents=True)
    stale = config.checkpoint.dir / ".ckpt-k9x2"
    stale.write_bytes(b"half a checkpoint, killed during fsync")
    daemon = DaemonProcess(write_config(settings, tmp_path / "config.yaml"), tmp_path / "d.log")
    try:
        produce_lines(broker, topics.events, simulated_lines(500, 42))
        wait_for(lambda: learned_metric(port) == 500, TIMEOUT_S, "500 interactions learned")
        assert not stale.exists()
        # The volume goes bad: the final checkpoint cannot be written.
        config.checkpoint.dir.rename(tmp_path / "gone")
        config.checkpoint.dir.write_bytes(b"not a directory")
    finally:
        code = daemon.terminate()

    assert code == 3
    [failed] = events_named(daemon, "daemon.final_checkpoint_failed")
    assert sorted(failed["dirty"]) == list(range(PARTITIONS))
    assert daemon.events()[-1]["event"] == "daemon.stopped"


def recreate(bootstrap_servers: str, topic: str, partitions: int) -> None:
    """Delete the topic and create it again, empty (an operator's mistake, or a migration)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="stopbandit-tests")
    try:
        admin.delete_topics([topic])
        new = NewTopic(topic, num_partitions=partitions, replication_factor=1)

        def created() -> bool:
            try:
                admin.create_topics([new], wait_for_metadata=True)
            except (TopicAlreadyExistsError, UnknownTopicOrPartitionError):
                return False  # the deletion is still under way
            return True

        wait_for(created, TIMEOUT_S, f"{topic} recreated", interval_s=0.5)
    finally:
        admin.close()


def test_a_recreated_events_topic_is_refused_then_reset_to_its_beginning(broker, tmp_path):
    """Checkpoints past the end of a recreated topic: refused, then reset to its beginning.

    Never a silent skip: refused by default; with on_offset_ahead reset_offsets
    the state is kept and every event of the new topic is learned once.
    """
    if broker.kind != "kafka":
        pytest.skip("deleting and recreating a topic is tried on Apache Kafka")
    topics = create_topics(broker.bootstrap_servers, events_partitions=PARTITIONS)
    lines = simulated_lines(2_000, 43)
    settings = settings_of(broker, topics, tmp_path, checkpoint={"interval_s": 0.5})
    config = config_of(settings)
    config_path = write_config(settings, tmp_path / "config.yaml")
    first = DaemonProcess(config_path, tmp_path / "first.log")
    try:
        produce_lines(broker, topics.events, lines[:3_000])
        wait_for(
            lambda: sum(learned(config, p) or 0 for p in range(PARTITIONS)) == 1_500,
            TIMEOUT_S,
            "1,500 interactions checkpointed",
        )
    finally:
        assert first.terminate() == 0

    recreate(broker.bootstrap_servers, topics.events, PARTITIONS)
    produce_lines(broker, topics.events, lines[3_000:])  # 500 interactions: offsets below
    refusing = DaemonProcess(config_path, tmp_path / "refusing.log")
    try:
        wait_for(
            lambda: len(events_named(refusing, "partition.refused")) >= PARTITIONS,
            TIMEOUT_S,
            "both partitions refused",
        )
        assert refusing.process.poll() is None
        refusals = events_named(refusing, "partition.refused")
        assert {e["reason"] for e in refusals} == {"offset_ahead"}
        assert all("past the log end" in e["detail"] for e in refusals)
        assert not events_named(refusing, "partition.restored")
    finally:
        assert refusing.terminate() == 0
    assert sum(learned(config, p) for p in range(PARTITIONS)) == 1_500  # nothing skipped

    settings["checkpoint"]["on_offset_ahead"] = "reset_offsets"
    write_config(settings, config_path)
    resetting = DaemonProcess(config_path, tmp_path / "resetting.log")
    try:
        wait_for(
            lambda: sum(learned(config, p) or 0 for p in range(PARTITIONS)) == 2_000,
            TIMEOUT_S,
            "the new topic's 500 interactions learned on top of the 1,500",
        )
    finally:
        assert resetting.terminate() == 0
    assert len(events_named(resetting, "checkpoint.offset_ahead")) == PARTITIONS
