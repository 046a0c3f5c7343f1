"""The controller daemon: a plain poll loop over the events topic.

Each iteration, in order:

1. restore partitions assigned since the last iteration (checkpoint, seek);
2. poll a batch; decode, join and learn each message in its partition's core,
   dead-lettering what is invalid (the loop never stops for bad data);
3. if `publish.interval_s` passed: build and send the changed policies, flush;
4. if `checkpoint.interval_s` passed: publish, flush policies and dead letters,
   write each changed partition's checkpoint, then commit the offsets those
   checkpoints cover (the quix-streams order: produce+flush, checkpoint, commit).

Signals only set a stop flag; the loop then finishes its batch, publishes,
checkpoints, commits and closes. Broker trouble is logged and retried with
backoff from the loop itself, so the loop keeps iterating (and /healthz stays
green) through a broker restart. Clocks are injectable: `monotonic` for
deadlines, `wall` for policies' `issued_at`, versions and the event-time clamp.

Time for the cores is event time: each partition keeps a watermark, the
highest `ts` seen, clamped to the wall clock plus `MAX_CLOCK_SKEW_S` so one
event from a node with a wrong clock cannot expire every pending join. Replay
of the same events gives the same joins whatever the processing speed.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from controller.core import ControllerCore
from controller.daemon.checkpoint_stores import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    DirCheckpointStore,
    KafkaCheckpointStore,
)
from controller.daemon.metrics import Metrics
from controller.daemon.partitions import PartitionState
from controller.daemon.publish import Publisher
from controller.daemon.rebalance import RebalanceListener
from streams.codec import InvalidEventError, decode
from streams.dlq import DeadLetter
from streams.kafka import (
    Backoff,
    DeliveryError,
    Message,
    Outbox,
    TopicSpec,
    ensure_topics,
    open_consumer,
    open_producer,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from controller.config import StopbanditConfig
    from streams.events import Policy

log = structlog.get_logger(__name__)

MAX_CLOCK_SKEW_S = 60.0
POLL_TIMEOUT_MS = 200
FLUSH_TIMEOUT_S = 10.0
COMMIT_TIMEOUT_MS = 5000
CLOSE_TIMEOUT_MS = 5000
# Liveness: the loop must come round this often; a poll, a flush or a checkpoint
# may each take up to their timeouts, so the bound leaves room for all of them.
STALE_AFTER_S = 60.0


class Daemon:
    """The controller loop over one consumer-group membership.

    Args:
        config: the whole configuration, parsed once.
        metrics: where to count; a fresh registry by default.
        consumer_factory: builds the events consumer given the rebalance listener
            (tests pass fakes); by default kafka-python from `config.kafka`.
        producer: the producer of policies, dead letters and Kafka checkpoints.
        store: the checkpoint store; by default from `config.checkpoint`.
        monotonic: the clock of deadlines and intervals.
        wall: the wall clock (policies' `issued_at`, version floor, event-time clamp).
        check_topics: check (and maybe create) the topics at start.
    """

    def __init__(
        self,
        config: StopbanditConfig,
        *,
        metrics: Metrics | None = None,
        consumer_factory: Callable[[Any], Any] | None = None,
        producer: Any = None,  # noqa: ANN401 - kafka-python is untyped
        store: CheckpointStore | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        check_topics: bool = True,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self._consumer_factory = consumer_factory or (
            lambda listener: open_consumer(config.kafka, listener)
        )
        self._producer = producer
        self._store = store
        self._monotonic = monotonic
        self._wall = wall
        self._check_topics = check_topics
        self.consumer: Any = None
        self.outbox: Outbox | None = None
        self.partitions: dict[int, PartitionState] = {}
        self._to_restore: set[int] = set()
        self._restore_backoff = Backoff()
        self._flush_backoff = Backoff()
        self._stopping = False
        self._closing = False
        self.events_processed = 0
        self.heartbeat_s = monotonic()
        self.assigned_once = False
        self.publish_succeeded = False
        self._publisher: Publisher | None = None
        self._next_publish_s = 0.0
        self._next_checkpoint_s = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Ask the loop to stop after its current batch (safe from a signal handler)."""
        self._stopping = True

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT set the stop flag; nothing else happens in the handler."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    @property
    def healthy(self) -> bool:
        """Whether the loop came round recently."""
        return self._monotonic() - self.heartbeat_s < STALE_AFTER_S

    @property
    def ready(self) -> bool:
        """Assigned (possibly nothing), every partition restored, and a publish acknowledged."""
        return self.assigned_once and not self._to_restore and self.publish_succeeded

    def policies(self) -> dict[str, Policy]:
        """The policies this replica last published, by segment."""
        return dict(self._publisher.current) if self._publisher is not None else {}

    def open(self) -> None:
        """Check topics, open the producer, the store and the consumer (retrying the broker)."""
        kafka = self.config.kafka
        specs = [
            TopicSpec(kafka.events_topic, kafka.partitions),
            TopicSpec(kafka.policies_topic, 1, compact=True),
            TopicSpec(kafka.dlq_topic, kafka.partitions),
        ]
        if self.config.checkpoint.store == "kafka":
            specs.append(TopicSpec(self.config.checkpoint.topic, 1, compact=True))
        self._retry_until_up(
            "topics.check", lambda: ensure_topics(kafka, specs) if self._check_topics else None
        )
        if self._producer is None:
            self._producer = self._retry_until_up("producer.open", lambda: open_producer(kafka))
        self.outbox = Outbox(self._producer)
        if self._store is None:
            checkpoint = self.config.checkpoint
            self._store = (
                DirCheckpointStore(checkpoint.dir)
                if checkpoint.store == "dir"
                else KafkaCheckpointStore(kafka, self.outbox, checkpoint.topic)
            )
        self._publisher = Publisher(self.config, self.outbox, self.metrics)
        listener = RebalanceListener(self)
        self.consumer = self._retry_until_up(
            "consumer.open", lambda: self._consumer_factory(listener)
        )
        now_s = self._monotonic()
        self._next_publish_s = now_s + self.config.publish.interval_s
        self._next_checkpoint_s = now_s + self.config.checkpoint.interval_s
        log.info("daemon.started", topic=kafka.events_topic, group_id=kafka.group_id)

    def _retry_until_up(self, what: str, action: Callable[[], Any]) -> Any:  # noqa: ANN401
        backoff = Backoff()
        while True:
            try:
                return action()
            except KafkaError as error:
                delay_s = backoff.failed(self._monotonic())
                log.warning("broker.unavailable", step=what, error=repr(error), retry_in_s=delay_s)
                if self._stopping:
                    raise
                time.sleep(delay_s)

    def run(self, *, max_events: int | None = None, idle_timeout_s: float | None = None) -> None:
        """Run the loop until stopped, `max_events` processed, or idle for `idle_timeout_s`.

        Idle means no message for `idle_timeout_s` while every assigned partition
        is restored. Whatever ends the loop, the final publish, checkpoint, commit
        and close run.
        """
        if self.consumer is None:
            self.open()
        last_message_s = self._monotonic()
        try:
            while not self._stopping:
                now_s = self._monotonic()
                self.heartbeat_s = now_s
                self._restore_assigned(now_s)
                count = self._process(self._poll())
                now_s = self._monotonic()
                if count:
                    last_message_s = now_s
                if now_s >= self._next_checkpoint_s:
                    self.checkpoint_and_commit()
                elif now_s >= self._next_publish_s:
                    self.publish()
                self._report_gauges(now_s)
                if max_events is not None and self.events_processed >= max_events:
                    break
                if (
                    idle_timeout_s is not None
                    and now_s - last_message_s >= idle_timeout_s
                    and self.assigned_once
                    and not self._to_restore
                ):
                    log.info("daemon.idle", idle_s=round(now_s - last_message_s, 3))
                    break
        finally:
            self.close()

    def close(self) -> None:
        """Final publish, checkpoint and commit, then close the clients (bounded in time)."""
        if self._closing:
            return
        self._closing = True
        log.info("daemon.stopping", events=self.events_processed)
        try:
            if self.consumer is not None and self.outbox is not None:
                self.checkpoint_and_commit()
        finally:
            if self.consumer is not None:
                try:
                    self.consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
                except KafkaError as error:
                    log.warning("consumer.close_failed", error=repr(error))
            if self._producer is not None:
                self._producer.close(timeout=CLOSE_TIMEOUT_MS / 1000)
            if self._store is not None:
                self._store.close()
        log.info("daemon.stopped", events=self.events_processed)

    # -- consuming ---------------------------------------------------------------------------

    def _poll(self) -> dict[Any, list[Any]]:
        # Never wait in poll past the next publish: an idle wait would delay policies.
        until_publish_ms = (self._next_publish_s - self._monotonic()) * 1000
        timeout_ms = int(min(POLL_TIMEOUT_MS, max(until_publish_ms, 0)))
        try:
            records: dict[Any, list[Any]] = self.consumer.poll(
                timeout_ms=timeout_ms, max_records=self.config.kafka.max_poll_records
            )
        except KafkaError as error:
            log.warning("consumer.poll_failed", error=repr(error))
            time.sleep(POLL_TIMEOUT_MS / 1000)
            return {}
        return records

    def _process(self, records: dict[Any, list[Any]]) -> int:
        ceiling_s = self._wall() + MAX_CLOCK_SKEW_S
        types: Counter[str] = Counter()
        count = 0
        for tp, batch in records.items():
            state = self.partitions.get(tp.partition)
            if state is None:
                continue  # revoked or not yet restored: it will be read again from its checkpoint
            for message in batch:
                if message.offset < state.offset:
                    continue
                try:
                    event = decode(message.key, message.value)
                    state.watermark_s = max(state.watermark_s, min(event.ts, ceiling_s))
                    state.core.offer(event, state.watermark_s)
                    types[event.type] += 1
                except InvalidEventError as error:
                    self._dead_letter(message, error.kind, error.reason)
                except Exception as error:  # one message must not stop the loop
                    # Named here, not bound per message (1.5 us each): nothing else logs meanwhile.
                    log.exception("event.failed", partition=tp.partition, offset=message.offset)
                    self._dead_letter(message, "error", f"internal error: {error!r}")
                state.offset = message.offset + 1
                count += 1
            state.core.expire(state.watermark_s)
            state.report(self.metrics)
        for event_type, n in types.items():
            self.metrics.events_consumed.labels(event_type).inc(n)
        self.events_processed += count
        return count

    def _dead_letter(self, message: Any, kind: str, reason: str) -> None:  # noqa: ANN401
        letter = DeadLetter(
            reason=reason,
            kind=kind,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
        )
        assert self.outbox is not None  # noqa: S101 - opened before the loop
        self.outbox.send(Message(self.config.kafka.dlq_topic, message.key, letter.record()))
        self.metrics.events_invalid.labels(kind).inc()
        log.info(
            "event.dead_lettered",
            kind=kind,
            reason=reason[:200],
            partition=message.partition,
            offset=message.offset,
        )

    # -- rebalance ---------------------------------------------------------------------------

    def assign(self, assigned: Iterable[TopicPartition]) -> None:
        """Pause newly assigned partitions until the loop restores them (rebalance callback)."""
        self.assigned_once = True
        fresh = [tp for tp in assigned if tp.partition not in self.partitions]
        if fresh:
            self.consumer.pause(*fresh)
            self._to_restore.update(tp.partition for tp in fresh)
            self.publish_succeeded = False
        log.info("partitions.assigned", partitions=sorted(tp.partition for tp in assigned))

    def revoke(self, revoked: Iterable[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        """Checkpoint the revoked partitions and drop them; return the offsets to commit."""
        numbers = sorted(tp.partition for tp in revoked)
        self._to_restore.difference_update(numbers)
        owned = [n for n in numbers if n in self.partitions]
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        if owned and not self._closing:
            offsets = self._checkpoint(owned) or {}
        self.drop(TopicPartition(self.config.kafka.events_topic, n) for n in owned)
        log.info("partitions.revoked", partitions=numbers)
        return offsets

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the partitions' state (after a checkpoint, or when the membership is lost)."""
        for tp in partitions:
            state = self.partitions.pop(tp.partition, None)
            self._to_restore.discard(tp.partition)
            if state is not None and self._publisher is not None:
                for segment in state.core.segments:
                    self._publisher.current.pop(segment, None)
            label = str(tp.partition)
            for gauge in (self.metrics.consumer_lag, self.metrics.checkpoint_age):
                with contextlib.suppress(KeyError):
                    gauge.remove(label)

    def _restore_assigned(self, now_s: float) -> None:
        if not self._to_restore or not self._restore_backoff.ready(now_s):
            return
        topic = self.config.kafka.events_topic
        for partition in sorted(self._to_restore):
            tp = TopicPartition(topic, partition)
            try:
                checkpoint = self._store.load(topic, partition) if self._store else None
                core = ControllerCore(self.config)
                if checkpoint is not None:
                    core.restore(checkpoint.state)
                    self.consumer.seek(tp, checkpoint.offset)
                offset = self.consumer.position(tp)
            except (CheckpointError, KafkaError) as error:
                delay_s = self._restore_backoff.failed(now_s)
                log.warning(
                    "partition.restore_failed",
                    partition=partition,
                    error=repr(error),
                    retry_in_s=delay_s,
                )
                return
            self.partitions[partition] = PartitionState(
                partition=partition,
                core=core,
                offset=offset,
                watermark_s=_watermark_of(checkpoint),
                checkpointed_offset=checkpoint.offset if checkpoint is not None else None,
                checkpointed_at_s=now_s,
            )
            self._to_restore.discard(partition)
            self.consumer.resume(tp)
            log.info(
                "partition.restored",
                partition=partition,
                offset=offset,
                from_checkpoint=checkpoint is not None,
                learned=core.learner.learned,
            )
        self._restore_backoff.succeeded()
        # Publish at once: the previous owner may have issued newer policies since its checkpoint.
        self._next_publish_s = now_s

    # -- publish, checkpoint, commit ---------------------------------------------------------

    def publish(self) -> bool:
        """Build and send the round's policies and flush everything queued; True on success."""
        now_s = self._monotonic()
        self._next_publish_s = now_s + self.config.publish.interval_s
        assert self._publisher is not None  # noqa: S101
        assert self.outbox is not None  # noqa: S101
        if not self._flush_backoff.ready(now_s):
            return False
        states = [self.partitions[n] for n in sorted(self.partitions)]
        policies = self._publisher.build(
            [(s.core, s.force_publish) for s in states],
            self._wall(),
            with_fallback=0 in self.partitions,
            force_fallback=any(s.force_publish for s in states),
        )
        self._publisher.send(policies)
        try:
            self.outbox.flush(FLUSH_TIMEOUT_S)
        except DeliveryError as error:
            delay_s = self._flush_backoff.failed(now_s)
            log.warning("publish.failed", error=str(error), retry_in_s=delay_s)
            for state in states:
                state.force_publish = True  # built but maybe never delivered: send again
            return False
        self._flush_backoff.succeeded()
        for state in states:
            state.force_publish = False
        self._publisher.delivered(policies, self._monotonic() - now_s)
        if not self._to_restore and self.assigned_once:
            self.publish_succeeded = True
        return True

    def _checkpoint(
        self, partitions: Iterable[int]
    ) -> dict[TopicPartition, OffsetAndMetadata] | None:
        """Publish and flush, then checkpoint the partitions; the offsets now safe to commit.

        Returns None when the flush failed: nothing may be checkpointed before
        the policies and dead letters derived from its events are acknowledged.
        """
        if not self.publish():
            return None
        topic = self.config.kafka.events_topic
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for partition in partitions:
            state = self.partitions[partition]
            if state.dirty:
                started_s = self._monotonic()
                checkpoint = Checkpoint(
                    topic=topic,
                    partition=partition,
                    offset=state.offset,
                    written_at=self._wall(),
                    state=state.core.snapshot(),
                    watermark_s=state.watermark_s,
                )
                try:
                    assert self._store is not None  # noqa: S101
                    self._store.save(checkpoint)
                except CheckpointError as error:
                    log.warning("checkpoint.failed", partition=partition, error=str(error))
                    continue
                elapsed_s = self._monotonic() - started_s
                self.metrics.checkpoint_duration.observe(elapsed_s)
                state.checkpointed_offset = state.offset
                state.checkpointed_at_s = self._monotonic()
                log.debug(
                    "checkpoint.written",
                    partition=partition,
                    offset=state.offset,
                    duration_s=round(elapsed_s, 4),
                )
            if state.checkpointed_offset is not None:
                offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(
                    state.checkpointed_offset, "", -1
                )
        return offsets

    def checkpoint_and_commit(self) -> None:
        """Publish+flush, checkpoint every owned partition, commit what the checkpoints cover."""
        self._next_checkpoint_s = self._monotonic() + self.config.checkpoint.interval_s
        offsets = self._checkpoint(sorted(self.partitions))
        if not offsets:
            return
        try:
            self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as error:
            # Harmless for correctness: a restore seeks to the checkpoint's own offset.
            log.warning("offsets.commit_failed", error=repr(error))

    def _report_gauges(self, now_s: float) -> None:
        topic = self.config.kafka.events_topic
        for partition, state in self.partitions.items():
            label = str(partition)
            highwater = self.consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                self.metrics.consumer_lag.labels(label).set(max(0, highwater - state.offset))
            self.metrics.checkpoint_age.labels(label).set(now_s - state.checkpointed_at_s)


def _watermark_of(checkpoint: Checkpoint | None) -> float:
    return checkpoint.watermark_s if checkpoint is not None else 0.0
