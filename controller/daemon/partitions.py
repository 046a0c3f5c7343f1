"""The partitions this member owns: their state, how they are assigned, revoked, lost, restored.

The partition is the unit of state (docs/design.md): each has its own
`ControllerCore` (segments, join buffer, learned ids, models), created empty
or restored from its checkpoint when the partition is assigned, and dropped
when it is revoked.

An assigned partition is paused until the loop restores it
(`Partitions.restore_assigned`): load its checkpoint, seek to the offset the
checkpoint covers, resume (restoring.py decides what a partition starts from,
and refuses what must not be consumed). Each partition is restored on its
own: one that cannot be (a store failure, a refusal) waits for its own
backoff and never holds back the others. Restore runs on the loop's thread,
not in the rebalance callback, so a slow store never stalls the group's rebalance. A
revoked partition is checkpointed (checkpointing.py) and its offsets committed
before the rebalance goes on; a lost one is dropped without a checkpoint,
as another member may own it already.

kafka-python 3 runs the rebalance callbacks on the consumer's IO thread, where
a blocking consumer call is refused; the async form lets the revoke commit be
awaited while the checkpoint itself (file or producer I/O) runs inline, before
the partition can be assigned elsewhere. Nothing in `RebalanceListener` may
raise into the consumer: an exception would abort the rebalance.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog
from kafka import TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError

from stopbandit.controller.daemon.checkpoint_stores import CheckpointError
from stopbandit.controller.daemon.restoring import REASONS, Refusal, Restorer
from stopbandit.streams.kafka import Backoff

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.core import ControllerCore
    from stopbandit.controller.daemon.checkpoint_stores import CheckpointStore
    from stopbandit.controller.daemon.consumer import Consumer, Offsets
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.daemon.offsets import LogOffsets
    from stopbandit.controller.daemon.publish import Publisher

log = structlog.get_logger(__name__)

# Join-buffer counters mirrored into Prometheus counters of the same meaning.
_JOIN_COUNTERS = ("joined", "expired", "orphans", "duplicates", "evicted")
# A refused partition is retried slowly: only an operator's fix (a reset) changes the verdict.
_REFUSED_RETRY_S = (5.0, 60.0)


@dataclass
class PartitionState:
    """What the daemon holds for one partition it owns.

    Attributes:
        partition: the partition number.
        core: the pure controller of the partition's segments.
        offset: the next offset to process; every event before it is in `core`.
        watermark_s: the highest event time seen (clamped to the wall clock), the
            core's `now` for joins and expiry.
        checkpointed_offset: the offset of the last durable checkpoint (None: none yet).
        checkpointed_at_s: monotonic time of that checkpoint (or of the restore).
        pending_since_s: monotonic time the loop first saw the partition dirty since its
            last checkpoint (None: clean); the checkpoint age counts from it.
        force_publish: issue every policy of this core at the next publish (after a
            restore the topic may hold a newer policy from the previous owner).
    """

    partition: int
    core: ControllerCore
    offset: int
    watermark_s: float
    checkpointed_offset: int | None
    checkpointed_at_s: float
    force_publish: bool = True
    pending_since_s: float | None = None
    _seen: dict[str, int] = field(default_factory=dict)
    # The core's dropped traces by reason when last taken (`dropped_traces`).
    _traces_dropped: Counter[str] = field(default_factory=Counter, init=False)

    def __post_init__(self) -> None:
        self._seen = self._counters()
        self._traces_dropped = self.core.counterfactual_dropped.copy()

    def dropped_traces(self) -> Counter[str]:
        """The counterfactual traces the core dropped since the last call, by reason.

        Called only after an interaction with a trace is learned (no other can be
        dropped), so the comparison stays off the path of every other message.
        """
        now = self.core.counterfactual_dropped
        if now == self._traces_dropped:
            return Counter()
        dropped = now - self._traces_dropped
        self._traces_dropped = now.copy()
        return dropped

    def _counters(self) -> dict[str, int]:
        stats = self.core.join.stats
        counters = {name: getattr(stats, name) for name in _JOIN_COUNTERS}
        counters["skipped"] = stats.already_joined
        counters["learned"] = self.core.learner.learned
        return counters

    def report(self, metrics: Metrics) -> None:
        """Add what the core counted since the last report to the Prometheus counters."""
        now = self._counters()
        for name, value in now.items():
            delta = value - self._seen[name]
            if delta > 0:
                getattr(metrics, name).inc(delta)
        self._seen = now

    def report_gauges(self, metrics: Metrics, highwater: int | None, now_s: float) -> None:
        """Set the partition's gauges: lag behind `highwater`, checkpoint age, drift resets."""
        label = str(self.partition)
        if highwater is not None:
            metrics.consumer_lag.labels(label).set(max(0, highwater - self.offset))
        # Aged from the first event not yet checkpointed, not from the last checkpoint:
        # an idle partition has nothing to lose and must not look stale.
        if not self.dirty:
            self.pending_since_s = None
        elif self.pending_since_s is None:
            self.pending_since_s = now_s
        age_s = 0.0 if self.pending_since_s is None else now_s - self.pending_since_s
        metrics.checkpoint_age.labels(label).set(age_s)
        # The segments' drift resets are set with the other per-segment gauges, bounded to
        # the busiest segments (daemon/segment_gauges.py), at each publish.

    @property
    def dirty(self) -> bool:
        """Whether events were processed since the last checkpoint."""
        return self.checkpointed_offset != self.offset


class Partitions:
    """The partitions this member owns, and those assigned but not restored yet.

    Args:
        config: the whole configuration (the events topic; what a new core is).
        consumer: the events consumer (pause, seek, position, resume).
        store: where restores read checkpoints from.
        publisher: its policies of a dropped partition are forgotten (the new owner's now).
        metrics: a dropped partition's gauges (and its segments' drift gauges) are removed.
        checkpoint: flushes and checkpoints partitions, returning the offsets now
            safe to commit, or None when the flush failed (`Checkpointer.checkpoint`).
        log_offsets: the log's ends and the group's commits, to refuse a resume offset past
            the end or a missing checkpoint behind committed offsets (None: not checked).
    """

    def __init__(
        self,
        config: StopbanditConfig,
        consumer: Consumer,
        store: CheckpointStore,
        publisher: Publisher,
        metrics: Metrics,
        *,
        checkpoint: Callable[[Sequence[PartitionState]], Offsets | None],
        log_offsets: LogOffsets | None = None,
    ) -> None:
        self._config = config
        self._topic = config.kafka.events_topic
        self._consumer = consumer
        self._store = store
        self._publisher = publisher
        self._metrics = metrics
        self._checkpoint = checkpoint
        self._restorer = Restorer(config, store, consumer, log_offsets, metrics)
        self.owned: dict[int, PartitionState] = {}
        self._to_restore: set[int] = set()
        self._backoffs: dict[int, Backoff] = {}
        self.refused: dict[int, Refusal] = {}
        self._assigned_once = False
        self._published = False
        self._closing = False

    @property
    def restored(self) -> bool:
        """Assigned (possibly nothing) at least once, and every assigned partition restored."""
        return self._assigned_once and not self._to_restore

    @property
    def ready(self) -> bool:
        """Restored, and a publish acknowledged since the last partitions were assigned."""
        return self.restored and self._published

    def states(self) -> list[PartitionState]:
        """The owned partitions' states, by partition number."""
        return [self.owned[n] for n in sorted(self.owned)]

    def published(self) -> None:
        """Note a publish the broker acknowledged (it covers them all once all are restored)."""
        if self.restored:
            self._published = True

    def closing(self) -> None:
        """The member closes: its final checkpoint covers every partition, so revokes only drop."""
        self._closing = True

    # -- rebalance handlers (called by RebalanceListener, inside the loop's poll) ------------

    def assign(self, assigned: Collection[TopicPartition]) -> None:
        """Pause newly assigned partitions until the loop restores them."""
        self._assigned_once = True
        fresh = [tp for tp in assigned if tp.partition not in self.owned]
        if fresh:
            self._consumer.pause(*fresh)
            self._to_restore.update(tp.partition for tp in fresh)
            self._published = False
        log.info("partitions.assigned", partitions=sorted(tp.partition for tp in assigned))

    def revoke(self, revoked: Collection[TopicPartition]) -> Offsets:
        """Checkpoint the revoked partitions and drop them; return the offsets to commit."""
        numbers = sorted(tp.partition for tp in revoked)
        self._to_restore.difference_update(numbers)
        for n in numbers:
            self._forget_refusal(n)
        owned = [n for n in numbers if n in self.owned]
        offsets: Offsets = {}
        if owned and not self._closing:
            offsets = self._checkpoint([self.owned[n] for n in owned]) or {}
        self.drop(TopicPartition(self._topic, n) for n in owned)
        log.info("partitions.revoked", partitions=numbers)
        return offsets

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the partitions' state (after a checkpoint, or when the membership is lost)."""
        for tp in partitions:
            state = self.owned.pop(tp.partition, None)
            self._to_restore.discard(tp.partition)
            self._forget_refusal(tp.partition)
            if state is not None:
                # The new owner publishes and reports them; the gauges follow at the next round.
                self._publisher.forget_segments(state.core.segments)
            label = str(tp.partition)
            for gauge in (self._metrics.consumer_lag, self._metrics.checkpoint_age):
                with contextlib.suppress(KeyError):
                    gauge.remove(label)

    def moved_back(self, state: PartitionState, offset: int) -> None:
        """The consumer returned `offset`, below the partition's own: restore it again.

        The topic was recreated or truncated while the partition was consumed (the
        consumer's reset went to the log's beginning). Dropped without a checkpoint
        and restored from the last one, the partition goes through restoring.py's
        checks: past the log's end, `checkpoint.on_offset_ahead` decides.
        """
        tp = TopicPartition(self._topic, state.partition)
        log.error(
            "partition.offset_moved_back",
            partition=state.partition,
            offset=offset,
            expected=state.offset,
            note="the log moved back (topic recreated?): restored again from its checkpoint",
        )
        self._consumer.pause(tp)
        self.drop([tp])
        self._to_restore.add(state.partition)
        self._published = False

    # -- restore -------------------------------------------------------------------------------

    def restore_assigned(self, now_s: float) -> bool:
        """Restore each partition assigned and not restored yet, whose backoff allows; resume it.

        A partition that fails (store or broker: retried soon) or is refused
        (restoring.py: retried slowly, with `stopbandit_checkpoint_refused` set)
        stays paused; the others go on.

        Returns:
            True when at least one partition was restored.
        """
        restored = False
        for partition in sorted(self._to_restore):
            backoff = self._backoffs.setdefault(partition, Backoff())
            if backoff.ready(now_s) and self._restore(partition, backoff, now_s):
                restored = True
        return restored

    def _restore(self, partition: int, backoff: Backoff, now_s: float) -> bool:
        tp = TopicPartition(self._topic, partition)
        try:
            plan = self._restorer.plan(partition)
            if plan.seek_to is not None:
                self._consumer.seek(tp, plan.seek_to)
            offset = self._consumer.position(tp)
        except Refusal as refusal:
            backoff.initial_s, backoff.max_s = _REFUSED_RETRY_S
            self._refuse(refusal, backoff.failed(now_s))
            return False
        except (CheckpointError, KafkaError) as error:
            delay_s = backoff.failed(now_s)
            log.warning(
                "partition.restore_failed",
                partition=partition,
                error=repr(error),
                retry_in_s=delay_s,
            )
            return False
        checkpoint = plan.checkpoint
        self.owned[partition] = PartitionState(
            partition=partition,
            core=plan.core,
            offset=offset,
            watermark_s=checkpoint.watermark_s if checkpoint is not None else 0.0,
            checkpointed_offset=checkpoint.offset if checkpoint is not None else None,
            checkpointed_at_s=now_s,
        )
        self._to_restore.discard(partition)
        self._forget_refusal(partition)
        self._consumer.resume(tp)
        log.info(
            "partition.restored",
            partition=partition,
            offset=offset,
            from_checkpoint=checkpoint is not None,
            learned=plan.core.learner.learned,
        )
        return True

    def _refuse(self, refusal: Refusal, retry_in_s: float) -> None:
        partition = refusal.partition
        self.refused[partition] = refusal
        for reason in REASONS:
            value = 1.0 if reason == refusal.reason else 0.0
            self._metrics.checkpoint_refused.labels(str(partition), reason).set(value)
        log.error(
            "partition.refused",
            partition=partition,
            reason=refusal.reason,
            detail=refusal.detail,
            fix=refusal.fix,
            retry_in_s=retry_in_s,
        )

    def _forget_refusal(self, partition: int) -> None:
        self._backoffs.pop(partition, None)
        if self.refused.pop(partition, None) is not None:
            for reason in REASONS:
                with contextlib.suppress(KeyError):
                    self._metrics.checkpoint_refused.remove(str(partition), reason)


class RebalanceHandler(Protocol):
    """What the rebalance listener hands kafka-python's callbacks to (`Partitions`)."""

    def assign(self, assigned: Collection[TopicPartition]) -> None:
        """Take the assigned partitions (the loop restores them)."""

    def revoke(self, revoked: Collection[TopicPartition]) -> Offsets:
        """Give the revoked partitions up; the offsets to commit before they move."""

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the partitions without a checkpoint (the membership was lost)."""


class RebalanceListener(AsyncConsumerRebalanceListener):  # type: ignore[misc] # untyped base
    """Hands kafka-python's rebalance callbacks to a handler; never raises into the consumer."""

    def __init__(self, handler: RebalanceHandler, consumer: Consumer) -> None:
        self._handler = handler
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Checkpoint and commit each revoked partition, then drop it."""
        try:
            offsets = self._handler.revoke(revoked)
            if offsets:
                await self._consumer.commit_async(offsets)
                log.info(
                    "offsets.committed",
                    offsets={tp.partition: o.offset for tp, o in offsets.items()},
                )
        except Exception as error:  # noqa: BLE001 - a raise here would abort the rebalance
            log.warning("rebalance.revoke_failed", error=repr(error))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Queue the assigned partitions for restore by the loop (they stay paused until then)."""
        try:
            self._handler.assign(assigned)
        except Exception as error:  # noqa: BLE001
            log.warning("rebalance.assign_failed", error=repr(error))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Another member may own them already: drop without checkpointing."""
        self._handler.drop(lost)
