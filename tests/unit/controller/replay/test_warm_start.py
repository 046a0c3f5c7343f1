"""Replay's warm start: checkpoints per partition, segments where Kafka's partitioner puts them."""

from __future__ import annotations

from kafka.partitioner import DefaultPartitioner

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import DirCheckpointStore
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.warm_start import default_partition, export_checkpoints


def test_default_partition_matches_kafka_python():
    """Segments go where kafka-python's (and Java's) default partitioner sends their key."""

    class Cluster:
        def topics(self):
            return {"t"}

        def partitions_for_topic(self, _):
            return set(range(6))

        def available_partitions_for_topic(self, _):
            return set(range(6))

    partitioner = DefaultPartitioner()
    for segment in ["a", "b", "math/gsm8k/r1-distill-qwen-7b", "*"]:
        key = segment.encode()
        assert default_partition(segment, 6) == partitioner.partition(
            "t", key, key, None, None, Cluster()
        )


def test_exported_checkpoints_restore_into_cores_holding_each_segment_once(
    tmp_path, config, lines, raw
):
    """Warm start: one checkpoint per partition, each segment in exactly one of them.

    Restored, each segment's policy and stats live in the partition that owns it, and the
    learned request_ids in every one.
    """
    result = replay(raw(lines), config)
    assert result.core is not None
    files = export_checkpoints(result.core, tmp_path, written_at=101.0)
    assert len(files) == config.kafka.partitions
    store = DirCheckpointStore(tmp_path)
    owners = {}
    for partition in range(config.kafka.partitions):
        checkpoint = store.load(config.kafka.events_topic, partition)
        assert checkpoint is not None
        assert checkpoint.offset == 0
        core = ControllerCore(config)
        core.restore(checkpoint.state)
        assert core.join.has_joined("r1")
        for segment in core.segments:
            owners.setdefault(segment, []).append(partition)
            assert core.policies[segment] == result.core.policies[segment]
    assert owners == {s: [default_partition(s, config.kafka.partitions)] for s in ("a", "b")}
