"""The controller daemon: a plain poll loop over the events topic.

Each iteration, in order:

1. restore partitions assigned since the last iteration (partitions.py);
2. poll a batch; decode, join and learn each message in its partition's core,
   dead-lettering what is invalid (the loop never stops for bad data) and
   counting counterfactual traces dropped, at decode or by the core;
3. if `checkpoint.interval_s` passed: flush, checkpoint, commit
   (checkpointing.py; the flush publishes a round); otherwise, if
   `publish.interval_s` passed: build and send the changed policies, flush;
4. report the gauges.

Signals only set a stop flag; the loop then finishes its batch, publishes,
checkpoints, commits and closes. Broker trouble is logged and retried with
backoff from the loop itself, so the loop keeps iterating (and /healthz stays
green) through a broker restart. A producer that can never deliver again (its
idempotence state lost with a broker's disks, its sender thread dead) is closed
and opened again, counted and logged. Liveness and readiness fail when, with
work to do, no flush or checkpoint succeeded for `http.unhealthy_after_s`, so
a daemon stuck in any other way is restarted rather than silently idle. Clocks
are injectable: `monotonic` for deadlines, `wall` for policies' `issued_at`,
versions and the event-time clamp.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError

from stopbandit.controller.daemon.checkpoint_stores import open_store
from stopbandit.controller.daemon.checkpointing import Checkpointer
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.offsets import KafkaLogOffsets
from stopbandit.controller.daemon.outcomes import Outcomes
from stopbandit.controller.daemon.partitions import Partitions, RebalanceListener
from stopbandit.controller.daemon.publish import Publisher
from stopbandit.controller.daemon.restoring import lost_to_retention
from stopbandit.controller.daemon.stats import FleetStats, KafkaStatsReader
from stopbandit.controller.daemon.traces import DroppedTraces
from stopbandit.streams.codec import InvalidEventError, decode
from stopbandit.streams.dlq import DeadLetter
from stopbandit.streams.kafka import (
    Backoff,
    DeliveryError,
    Message,
    Outbox,
    TopicSpec,
    ensure_topics,
    open_consumer,
    open_producer,
    retry_until_up,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import TypeAlias

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.daemon.checkpoint_stores import CheckpointStore
    from stopbandit.controller.daemon.consumer import ConsumedRecord, Consumer
    from stopbandit.controller.daemon.offsets import LogOffsets
    from stopbandit.controller.daemon.stats import StatsReader
    from stopbandit.streams.events import Event, Policy

    # What one poll returns.
    Records: TypeAlias = Mapping[TopicPartition, Sequence[ConsumedRecord]]

log = structlog.get_logger(__name__)

NO_KEY_REASON = "the message has no key; events are keyed by their segment (wire contract)"


def decode_keyed(key: bytes | None, value: bytes | None) -> Event:
    """`decode`, and a message without key is invalid too.

    Unkeyed, a producer's partitioner spreads one segment over every partition, so
    several owners would each learn a part of it. (Logs have no keys: replay decodes
    with `decode`.)
    """
    if key is None:
        raise InvalidEventError("key", NO_KEY_REASON)
    return decode(key, value)


T = TypeVar("T")

MAX_CLOCK_SKEW_S = 60.0
POLL_TIMEOUT_MS = 200
FLUSH_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_MS = 5000
# Liveness: the loop must come round this often; a poll, a flush or a checkpoint
# may each take up to their timeouts, so the bound leaves room for all of them.
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class Connected:
    """What `Daemon.open` opens, all of it: it exists only once every part does.

    The producer is `outbox.producer`: replaced there when it cannot recover.
    """

    consumer: Consumer
    outbox: Outbox
    store: CheckpointStore
    publisher: Publisher
    partitions: Partitions
    checkpointer: Checkpointer
    log_offsets: LogOffsets | None = None

    @property
    def producer(self) -> Any:  # noqa: ANN401 - kafka-python's KafkaProducer, or a fake
        """The producer in use (the outbox's: a replacement is seen here too)."""
        return self.outbox.producer


class Daemon:
    """The controller loop over one consumer-group membership.

    Constructing it opens nothing (its probes answer meanwhile); `open` or
    `run` connects, retrying the broker.

    Args:
        config: the whole configuration, parsed once.
        metrics: where to count; a fresh registry by default.
        consumer_factory: builds the events consumer, not yet subscribed (tests
            pass fakes); by default kafka-python from `config.kafka`.
        producer: the producer of policies, dead letters and Kafka checkpoints; by
            default opened from `config.kafka` by `producer_factory`.
        producer_factory: opens a producer, at start and whenever the current one can
            never deliver again; by default kafka-python's from `config.kafka`, and none
            when `producer` is given (a producer that breaks then only fails liveness).
        store: the checkpoint store; by default from `config.checkpoint`.
        monotonic: the clock of deadlines and intervals.
        wall: the wall clock (policies' `issued_at`, version floor, event-time clamp).
        check_topics: check (and maybe create) the topics at start.
        log_offsets: the log's ends and commits a restore checks against; by default
            read through the consumer when it is kafka-python's (no `consumer_factory`).
        stats_reader: target mode's reader of the stats topic (daemon/stats.py); by
            default kafka-python's.
    """

    def __init__(
        self,
        config: StopbanditConfig,
        *,
        metrics: Metrics | None = None,
        consumer_factory: Callable[[], Consumer] | None = None,
        producer: Any = None,  # noqa: ANN401 - kafka-python is untyped
        producer_factory: Callable[[], Any] | None = None,
        store: CheckpointStore | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        check_topics: bool = True,
        log_offsets: Callable[[Consumer], LogOffsets] | None = None,
        stats_reader: Callable[[], StatsReader] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self._consumer_factory = consumer_factory or (lambda: open_consumer(config.kafka))
        self._producer = producer
        if producer_factory is None and producer is None:
            producer_factory = lambda: open_producer(config.kafka)  # noqa: E731
        self._producer_factory = producer_factory
        self._store = store
        self._monotonic = monotonic
        self._wall = wall
        self._check_topics = check_topics
        if log_offsets is None and consumer_factory is None:
            log_offsets = lambda consumer: KafkaLogOffsets(consumer, config.kafka)  # noqa: E731
        self._log_offsets = log_offsets
        self._stats_reader = stats_reader or (lambda: KafkaStatsReader(config))
        self._stats: FleetStats | None = None  # target mode only, set by open
        # Whether the final checkpoint covered every partition (`stopbandit run`'s exit code).
        self.final_checkpoint_written = True
        self._connected: Connected | None = None
        self._flush_backoff = Backoff()
        # Monotonic time since which flushes fail (None: the last one succeeded), and since
        # which work has waited unfinished (set by the loop, read by the probes' thread).
        self._flush_failing_since_s: float | None = None
        self._stuck_since_s: float | None = None
        self._stopping = False
        self._closing = False
        self.events_processed = 0
        self.heartbeat_s = monotonic()
        self._next_publish_s = 0.0
        self._next_republish_s = float("inf")  # set by open
        self._dropped_traces = DroppedTraces(self.metrics)
        # Controlled vs control figures of what this replica learned (/savings, gauges).
        self.outcomes = Outcomes(config, self.metrics)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Ask the loop to stop after its current batch (safe from a signal handler)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (SIGTERM, SIGINT or `stop`)."""
        return self._stopping

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT set the stop flag; nothing else happens in the handler."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    @property
    def healthy(self) -> bool:
        """Whether the loop came round recently, and finishes its work (/healthz).

        Unhealthy too when work (policies, dead letters, a partition's new events)
        has waited `checkpoint.interval_s` + `http.unhealthy_after_s` without a
        successful flush or checkpoint.
        """
        now_s = self._monotonic()
        return now_s - self.heartbeat_s < STALE_AFTER_S and self._progressing(now_s)

    @property
    def ready(self) -> bool:
        """Assigned, restored and published, with no work stuck (see `healthy`).

        Assigned may be nothing; every assigned partition restored; a publish acknowledged.
        """
        return (
            self._connected is not None
            and self._connected.partitions.ready
            and self._progressing(self._monotonic())
        )

    def _progressing(self, now_s: float) -> bool:
        stuck_since_s = self._stuck_since_s
        # A healthy daemon's oldest unfinished work is up to one checkpoint round old.
        limit_s = self.config.checkpoint.interval_s + self.config.http.unhealthy_after_s
        return stuck_since_s is None or now_s - stuck_since_s < limit_s

    def savings(self) -> dict[str, Any]:
        """The controlled vs control figures as of the last publish (/savings)."""
        return self.outcomes.document

    def target_report(self) -> dict[str, Any] | None:
        """Target mode: λ, its target and path as partition 0 here tuned it (else None)."""
        state = self._connected.partitions.owned.get(0) if self._connected is not None else None
        if state is None or state.core.target is None:
            return None
        return state.core.target.report()

    def policies(self) -> dict[str, Policy]:
        """The policies this replica last published, by segment."""
        return dict(self._connected.publisher.current) if self._connected is not None else {}

    def open(self) -> Connected:
        """Check topics, open the producer, the store and the consumer (retrying the broker).

        Opens once; later calls return what the first opened.
        """
        if self._connected is None:
            self._connected = self._connect()
        return self._connected

    def _connect(self) -> Connected:
        kafka = self.config.kafka
        specs = [
            TopicSpec(kafka.events_topic, kafka.partitions),
            TopicSpec(kafka.policies_topic, 1, compact=True),
            TopicSpec(kafka.dlq_topic, kafka.partitions),
        ]
        if self.config.checkpoint.store == "kafka":
            specs.append(TopicSpec(self.config.checkpoint.topic, 1, compact=True))
        if self.config.target.enabled:
            specs.append(TopicSpec(self.config.target.stats_topic, 1, compact=True))
        self._retry_until_up(
            "topics.check", lambda: ensure_topics(kafka, specs) if self._check_topics else None
        )
        producer = self._producer
        if producer is None:
            assert self._producer_factory is not None  # noqa: S101 - set when producer is None
            producer = self._retry_until_up("producer.open", self._producer_factory)
        outbox = Outbox(producer)
        if self.config.target.enabled:
            reader = self._retry_until_up("stats.open", self._stats_reader)
            self._stats = FleetStats(self.config, outbox, reader, self.metrics)
        store = (
            self._store
            if self._store is not None
            else open_store(self.config.checkpoint, kafka, outbox)
        )
        publisher = Publisher(self.config, outbox, self.metrics)
        consumer = self._retry_until_up("consumer.open", self._consumer_factory)
        now_s = self._monotonic()
        checkpointer = Checkpointer(
            self.config,
            flush=self.publish,
            store=store,
            consumer=consumer,
            metrics=self.metrics,
            monotonic=self._monotonic,
            wall=self._wall,
            started_s=now_s,
        )
        log_offsets = self._log_offsets(consumer) if self._log_offsets is not None else None
        partitions = Partitions(
            self.config,
            consumer,
            store,
            publisher,
            self.metrics,
            checkpoint=checkpointer.checkpoint,
            log_offsets=log_offsets,
        )
        # Subscribed last: the listener needs the partitions, which need the consumer.
        consumer.subscribe([kafka.events_topic], listener=RebalanceListener(partitions, consumer))
        self._next_publish_s = now_s + self.config.publish.interval_s
        self._next_republish_s = now_s + self.config.publish.republish_interval_s
        log.info("daemon.started", topic=kafka.events_topic, group_id=kafka.group_id)
        return Connected(consumer, outbox, store, publisher, partitions, checkpointer, log_offsets)

    def _retry_until_up(self, what: str, action: Callable[[], T]) -> T:
        return retry_until_up(
            what, action, monotonic=self._monotonic, stopping=lambda: self._stopping
        )

    def run(self, *, max_events: int | None = None, idle_timeout_s: float | None = None) -> None:
        """Run the loop until stopped, `max_events` processed, or idle for `idle_timeout_s`.

        Idle means no message for `idle_timeout_s` while every assigned partition
        is restored. Whatever ends the loop, the final publish, checkpoint, commit
        and close run.
        """
        connected = self.open()
        partitions = connected.partitions
        last_message_s = self._monotonic()
        try:
            while not self._stopping:
                now_s = self._monotonic()
                self.heartbeat_s = now_s
                if partitions.restore_assigned(now_s):
                    # Publish at once: the previous owner may have issued newer policies
                    # since its checkpoint.
                    self._next_publish_s = now_s
                count = self._process(connected, self._poll(connected.consumer))
                now_s = self._monotonic()
                if count:
                    last_message_s = now_s
                if connected.checkpointer.due(now_s):
                    connected.checkpointer.checkpoint_and_commit(partitions.states())
                elif now_s >= self._next_publish_s:
                    self.publish()
                self._report_gauges(connected, now_s)
                self._stuck_since_s = self._oldest_unfinished(connected)
                if max_events is not None and self.events_processed >= max_events:
                    break
                if (
                    idle_timeout_s is not None
                    and now_s - last_message_s >= idle_timeout_s
                    and partitions.restored
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
        connected = self._connected
        if connected is not None:
            connected.partitions.closing()
            try:
                states = connected.partitions.states()
                written = connected.checkpointer.checkpoint_and_commit(states)
                self.final_checkpoint_written = written
                if not written:
                    log.error(
                        "daemon.final_checkpoint_failed",
                        dirty=[s.partition for s in states if s.dirty],
                        note="their events are consumed again from the previous checkpoint",
                    )
            except BaseException:
                self.final_checkpoint_written = False
                raise
            finally:
                try:
                    connected.consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
                except KafkaError as error:
                    log.warning("consumer.close_failed", error=repr(error))
                connected.outbox.producer.close(timeout=CLOSE_TIMEOUT_MS / 1000)
                connected.store.close()
                if self._stats is not None:
                    self._stats.close()
        log.info("daemon.stopped", events=self.events_processed)

    # -- consuming ---------------------------------------------------------------------------

    def _poll(self, consumer: Consumer) -> Records:
        # Never wait in poll past the next publish: an idle wait would delay policies.
        until_publish_ms = (self._next_publish_s - self._monotonic()) * 1000
        timeout_ms = int(min(POLL_TIMEOUT_MS, max(until_publish_ms, 0)))
        try:
            return consumer.poll(
                timeout_ms=timeout_ms, max_records=self.config.kafka.max_poll_records
            )
        except KafkaError as error:
            log.warning("consumer.poll_failed", error=repr(error))
            time.sleep(POLL_TIMEOUT_MS / 1000)
            return {}

    def _process(self, connected: Connected, records: Records) -> int:
        ceiling_s = self._wall() + MAX_CLOCK_SKEW_S
        types: Counter[str] = Counter()
        count = 0
        for tp, batch in records.items():
            state = connected.partitions.owned.get(tp.partition)
            if state is None:
                continue  # revoked or not yet restored: it will be read again from its checkpoint
            if batch and batch[0].offset < state.offset:
                # The log moved back under the partition (topic recreated, consumer reset):
                # skipping up to state.offset would be silent loss; restore decides instead.
                connected.partitions.moved_back(state, batch[0].offset)
                continue
            if batch and batch[0].offset > state.offset + 1:
                self._check_gap(connected, tp, state.offset)
            for message in batch:
                if message.offset < state.offset:
                    continue
                try:
                    event = decode_keyed(message.key, message.value)
                    state.watermark_s = max(state.watermark_s, min(event.ts, ceiling_s))
                    interaction = state.core.offer(event, state.watermark_s)
                    types[event.type] += 1
                    self._dropped_traces.count(state, event, interaction, message)
                except InvalidEventError as error:
                    self._dead_letter(connected.outbox, message, error.kind, error.reason)
                except Exception as error:  # one message must not stop the loop
                    # Named here, not bound per message (1.5 us each): nothing else logs meanwhile.
                    log.exception("event.failed", partition=tp.partition, offset=message.offset)
                    self._dead_letter(
                        connected.outbox, message, "error", f"internal error: {error!r}"
                    )
                state.offset = message.offset + 1
                count += 1
            state.core.expire(state.watermark_s)
            state.report(self.metrics)
        for event_type, n in types.items():
            self.metrics.events_consumed.labels(event_type).inc(n)
        self.events_processed += count
        return count

    def _check_gap(self, connected: Connected, tp: TopicPartition, offset: int) -> None:
        """A batch starting past the partition's next offset: removed by retention, unread?

        The consumer's offset reset (a fetch out of range) skips to the log's beginning
        without a word. A gap of one is a transaction marker and is not checked.
        """
        if connected.log_offsets is None:
            return
        try:
            beginning = connected.log_offsets.beginning(tp)
        except KafkaError as error:
            log.warning("partition.gap_unchecked", partition=tp.partition, error=repr(error))
            return
        if beginning > offset:
            lost_to_retention(self.metrics, tp.partition, offset, beginning, "consuming")

    def _dead_letter(self, outbox: Outbox, message: ConsumedRecord, kind: str, reason: str) -> None:
        letter = DeadLetter(
            reason=reason,
            kind=kind,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
        )
        outbox.send(Message(self.config.kafka.dlq_topic, message.key, letter.record()))
        self.metrics.events_invalid.labels(kind).inc()
        log.info(
            "event.dead_lettered",
            kind=kind,
            reason=reason[:200],
            partition=message.partition,
            offset=message.offset,
        )

    # -- publish and gauges ------------------------------------------------------------------

    def publish(self) -> bool:
        """Build and send the round's policies and flush everything queued; True on success.

        Also the first step of every checkpoint (checkpointing.py), so a subclass
        that withholds a round (returns False) holds the checkpoint back too.
        Before `open` there is nothing to publish: False.
        """
        now_s = self._monotonic()
        self._next_publish_s = now_s + self.config.publish.interval_s
        if self._connected is None or not self._flush_backoff.ready(now_s):
            return False
        publisher, partitions = self._connected.publisher, self._connected.partitions
        states = partitions.states()
        if now_s >= self._next_republish_s:
            # Only changed policies go out otherwise: a lost topic would never be refilled.
            self._next_republish_s = now_s + self.config.publish.republish_interval_s
            for state in states:
                state.force_publish = True
        if self._stats is not None:  # target mode: λ from every partition's sums
            self._stats.exchange(states, self._wall())
        policies = publisher.build(
            [(s.core, s.force_publish) for s in states],
            self._wall(),
            with_fallback=0 in partitions.owned,
            force_fallback=any(s.force_publish for s in states),
        )
        publisher.send(policies)
        try:
            self._connected.outbox.flush(FLUSH_TIMEOUT_S)
        except DeliveryError as error:
            delay_s = self._flush_backoff.failed(now_s)
            if self._flush_failing_since_s is None:
                self._flush_failing_since_s = now_s
            log.warning("publish.failed", error=str(error), fatal=error.fatal, retry_in_s=delay_s)
            for state in states:
                state.force_publish = True  # built but maybe never delivered: send again
            if error.fatal is not None:
                self._replace_producer(self._connected.outbox, error.fatal)
            return False
        self._flush_backoff.succeeded()
        self._flush_failing_since_s = None
        for state in states:
            state.force_publish = False
        publisher.delivered(policies, self._monotonic() - now_s)
        partitions.published()
        self.outcomes.refresh(state.core.savings for state in states)
        return True

    def _replace_producer(self, outbox: Outbox, reason: str) -> None:
        """Open a new producer, re-send what the old one holds through it, close the old.

        Opened first: if the broker refuses until a stop is requested, the old one stays.
        """
        if self._producer_factory is None:
            log.error(
                "producer.unrecoverable",
                reason=reason,
                note="no factory to open another; liveness fails after http.unhealthy_after_s",
            )
            return
        log.error("producer.replacing", reason=reason, undelivered=outbox.pending)
        try:
            producer = self._retry_until_up("producer.open", self._producer_factory)
        except KafkaError as error:  # only once stopping: the final round tries the old one
            log.warning("producer.replace_failed", reason=reason, error=repr(error))
            return
        old = outbox.replace(producer)
        # A broken producer may raise anything on close; it is dropped either way.
        with contextlib.suppress(Exception):
            old.close(timeout=0)
        self.metrics.producer_replacements.labels(reason).inc()
        log.warning("producer.replaced", reason=reason, resent=outbox.pending)

    def _oldest_unfinished(self, connected: Connected) -> float | None:
        """Since when the oldest work waits: a failing flush, or events not checkpointed."""
        since = [s.pending_since_s for s in connected.partitions.owned.values()]
        since.append(self._flush_failing_since_s)
        known = [s for s in since if s is not None]
        return min(known) if known else None

    def _report_gauges(self, connected: Connected, now_s: float) -> None:
        topic = self.config.kafka.events_topic
        for partition, state in connected.partitions.owned.items():
            highwater = connected.consumer.highwater(TopicPartition(topic, partition))
            state.report_gauges(self.metrics, highwater, now_s)
