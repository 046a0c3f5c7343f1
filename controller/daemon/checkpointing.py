"""Flush, checkpoint, commit: the order that makes a committed offset safe to resume from.

As in quix-streams (checkpointing/checkpoint.py), an offset is committed only
after the state that includes its events is checkpointed, and a state is
checkpointed only after everything produced from its events is flushed. Each
round takes three steps:

1. Flush. Publish a round and wait until the broker acknowledged it and every
   dead letter queued before it (the daemon's `publish`). If that fails,
   nothing is checkpointed: after a crash, a checkpoint past events whose
   policies or dead letters were lost would skip them for good.
2. Checkpoint. Write each partition that processed events since its last
   checkpoint to the store: the core's state, the next offset, the watermark.
   A failed write leaves that partition's previous checkpoint, and so its
   previous offset, in force.
3. Commit. Commit, for each partition, the offset its last durable checkpoint
   covers, never more. A failed commit is harmless for correctness: a
   restore seeks to the checkpoint's own offset, not to the group's.

A revoke runs steps 1 and 2 for the revoked partitions (`checkpoint`); the
rebalance listener then commits (step 3) with the consumer's async commit,
which its IO thread requires.

`checkpoint_and_commit` says whether every owned partition's state is now
durably checkpointed; on stop that is the daemon's exit code (`stopbandit run`
exits nonzero when the final checkpoint was not written: its events will be
consumed again, and learned once, from the previous checkpoint).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from stopbandit.controller.daemon.checkpoint_stores import Checkpoint, CheckpointError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.daemon.checkpoint_stores import CheckpointStore
    from stopbandit.controller.daemon.consumer import Consumer, Offsets
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.daemon.partitions import PartitionState

log = structlog.get_logger(__name__)

COMMIT_TIMEOUT_MS = 5000


class Checkpointer:
    """Runs the flush -> checkpoint -> commit round, every `checkpoint.interval_s`.

    Args:
        config: the whole configuration (events topic, checkpoint interval).
        flush: step 1: publish and flush everything produced; False if not acknowledged.
        store: where checkpoints are written.
        consumer: commits the offsets.
        metrics: checkpoint durations.
        monotonic: the clock of the schedule and durations.
        wall: the clock of `Checkpoint.written_at`.
        started_s: monotonic time the daemon opened; the first round is due an interval later.
    """

    def __init__(
        self,
        config: StopbanditConfig,
        *,
        flush: Callable[[], bool],
        store: CheckpointStore,
        consumer: Consumer,
        metrics: Metrics,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
        started_s: float,
    ) -> None:
        self._topic = config.kafka.events_topic
        self._interval_s = config.checkpoint.interval_s
        self._flush = flush
        self._store = store
        self._consumer = consumer
        self._metrics = metrics
        self._monotonic = monotonic
        self._wall = wall
        self._due_s = started_s + self._interval_s

    def due(self, now_s: float) -> bool:
        """Whether a round is due at monotonic time `now_s`."""
        return now_s >= self._due_s

    def checkpoint_and_commit(self, states: Sequence[PartitionState]) -> bool:
        """One whole round over the partitions: flush, checkpoint, commit what is covered.

        Returns:
            Whether every partition's state is durably checkpointed now (the commit aside).
        """
        self._due_s = self._monotonic() + self._interval_s
        offsets = self.checkpoint(states)
        written = offsets is not None and not any(state.dirty for state in states)
        if not offsets:
            return written
        # Step 3: commit no further than the checkpoints written (or kept) in step 2.
        try:
            self._consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as error:
            # Harmless for correctness: a restore seeks to the checkpoint's own offset.
            log.warning("offsets.commit_failed", error=repr(error))
        return written

    def checkpoint(self, states: Sequence[PartitionState]) -> Offsets | None:
        """Steps 1 and 2: flush, then checkpoint the partitions; the offsets now safe to commit.

        Returns:
            Per partition, the offset of its last durable checkpoint (partitions
            never checkpointed have none); None when the flush failed, so that
            nothing is checkpointed before what its events produced is acknowledged.
        """
        # Step 1: everything produced from the events is acknowledged, or nothing moves.
        if not self._flush():
            return None
        offsets: Offsets = {}
        for state in states:
            # Step 2: a partition with new events gets a checkpoint; a failed write keeps the old.
            if state.dirty:
                self._write(state)
            if state.checkpointed_offset is not None:
                offsets[TopicPartition(self._topic, state.partition)] = OffsetAndMetadata(
                    state.checkpointed_offset, "", -1
                )
        return offsets

    def _write(self, state: PartitionState) -> None:
        started_s = self._monotonic()
        checkpoint = Checkpoint(
            topic=self._topic,
            partition=state.partition,
            offset=state.offset,
            written_at=self._wall(),
            state=state.core.snapshot(),
            watermark_s=state.watermark_s,
        )
        try:
            self._store.save(checkpoint)
        except CheckpointError as error:
            log.warning("checkpoint.failed", partition=state.partition, error=str(error))
            return
        elapsed_s = self._monotonic() - started_s
        self._metrics.checkpoint_duration.observe(elapsed_s)
        state.checkpointed_offset = state.offset
        state.checkpointed_at_s = self._monotonic()
        state.pending_since_s = None
        log.debug(
            "checkpoint.written",
            partition=state.partition,
            offset=state.offset,
            duration_s=round(elapsed_s, 4),
        )
