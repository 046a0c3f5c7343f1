"""Warm start: checkpoints the daemon can start from, written from a core trained by replay.

The daemon keeps one checkpoint per partition of the events topic
(`controller.daemon.checkpoint_stores`): `<dir>/<topic>-<partition>.json.gz` holding a
`ControllerCore.snapshot()` and the next offset to consume. Replay writes
one such file per partition, each with the state of the segments that
partition owns: the shared VW models (a prior for every segment) in all of
them, per-segment statistics, pending join sides and policies only in their
owner's. Every file keeps the whole set of learned request_ids, so a daemon
that reads the same events again from the topic skips them instead of
learning them twice.

Which partition owns a segment: the partition its events were read from
(replay of a topic), else the Kafka default partitioner (murmur2 of the
segment key, as the Java client and kafka-python hash keys) over
`kafka.partitions`. The offset is where replay of the topic stopped, else 0:
a daemon started from a file-trained checkpoint reads its topic from the
beginning and skips what it already learned.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import structlog
from kafka.partitioner.default import murmur2

from stopbandit.controller.daemon.checkpoint_stores import Checkpoint, DirCheckpointStore

if TYPE_CHECKING:
    from pathlib import Path

    from stopbandit.controller.core import ControllerCore

log = structlog.get_logger(__name__)

_POSITIVE = 0x7FFFFFFF


def default_partition(segment: str, partitions: int) -> int:
    """The partition the Kafka default partitioner sends a key to (murmur2, positive, modulo)."""
    return int(murmur2(segment.encode()) & _POSITIVE) % partitions


def partition_state(state: dict[str, Any], owned: set[str]) -> dict[str, Any]:
    """A core snapshot restricted to the segments in `owned` (shared models kept whole)."""
    result = copy.deepcopy(state)
    learner = result["learner"]
    learner["stats"] = {s: v for s, v in learner["stats"].items() if s in owned}
    learner["contexts"] = {s: v for s, v in learner["contexts"].items() if s in owned}
    join = result["join"]
    join["decisions"] = [d for d in join["decisions"] if d[0]["segment"] in owned]
    join["outcomes"] = [o for o in join["outcomes"] if o[0]["segment"] in owned]
    result["policies"] = {s: p for s, p in result["policies"].items() if s in owned}
    return result


def export_checkpoints(
    core: ControllerCore,
    directory: Path,
    *,
    written_at: float,
    watermark_s: float | None = None,
    partition_of: dict[str, int] | None = None,
    offsets: dict[int, int] | None = None,
    topic: str | None = None,
) -> list[Path]:
    """Write one warm-start checkpoint per partition of the events topic.

    Args:
        core: The core trained by replay.
        directory: The checkpoint directory (`checkpoint.dir` of the daemon).
        written_at: Timestamp recorded in the checkpoints.
        watermark_s: The event-time watermark replay ended at (default `written_at`).
        partition_of: Segment to partition, when known (replay of a topic);
            other segments go where the default partitioner sends them.
        offsets: Next offset per partition (replay of a topic); 0 where absent. Its
            partitions are the topic's; without it, `kafka.partitions` of the config.
        topic: The events topic the checkpoints are for (default `kafka.events_topic`).

    Returns:
        The files written, by partition.
    """
    kafka = core.config.kafka
    topic = topic or kafka.events_topic
    partitions = len(offsets) if offsets else kafka.partitions
    state = core.snapshot()
    known = partition_of or {}
    segments = set(state["learner"]["stats"]) | set(state["policies"])
    owners: dict[int, set[str]] = {p: set() for p in range(partitions)}
    for segment in segments:
        partition = known.get(segment, default_partition(segment, partitions))
        owners.setdefault(partition, set()).add(segment)
    store = DirCheckpointStore(directory)
    written = []
    for partition, owned in sorted(owners.items()):
        checkpoint = Checkpoint(
            topic=topic,
            partition=partition,
            offset=(offsets or {}).get(partition, 0),
            written_at=written_at,
            state=partition_state(state, owned),
            watermark_s=written_at if watermark_s is None else watermark_s,
        )
        store.save(checkpoint)
        written.append(store.path(topic, partition))
        log.info(
            "replay.checkpoint_written",
            topic=topic,
            partition=partition,
            offset=checkpoint.offset,
            segments=len(owned),
        )
    return written
