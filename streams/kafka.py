"""The kafka-python edges: clients from config, topic checks, a producer outbox, topic folding.

Everything that talks to a broker for the daemon is here, so the loop in
controller/daemon/loop.py reads as the steps it takes. Connection and security
settings pass straight through from `KafkaConfig`; secrets are unwrapped
only when handed to the client and never logged.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
import tenacity
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaError,
    OutOfOrderSequenceNumberError,
    ProducerFencedError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from stopbandit.streams.kafka_config import KafkaConfig

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Bounded so a broker outage stalls the loop for seconds, not a minute (the default).
PRODUCER_MAX_BLOCK_MS = 2000


class MissingTopicsError(RuntimeError):
    """Topics the daemon needs do not exist and `kafka.create_topics` is off.

    Attributes:
        topics: the missing topic names.
    """

    def __init__(self, topics: list[str]) -> None:
        super().__init__(
            f"topics missing: {', '.join(topics)} (create them, or set kafka.create_topics: true)"
        )
        self.topics = topics


class DeliveryError(KafkaError):  # type: ignore[misc] # kafka-python is untyped
    """Messages were not acknowledged by the broker; they stay queued for the next flush.

    Attributes:
        topics: the topics of the undelivered messages.
        undelivered: how many are waiting.
    """

    def __init__(
        self, topics: set[str], undelivered: int, cause: str, *, fatal: str | None = None
    ) -> None:
        super().__init__(f"{undelivered} messages to {sorted(topics)} undelivered: {cause}")
        self.topics = topics
        self.undelivered = undelivered
        self.fatal = fatal
        """Why the producer can never deliver again (`producer_broken`); None: transient."""


# Producer-state errors: the broker no longer knows the producer's id, epoch or sequence
# (a broker back with empty disks, a recreated topic). kafka-python bumps the epoch
# itself where the broker supports it (KIP-360, Kafka >= 2.5); where it cannot (Tansu),
# its transaction manager turns fatal and fails every later batch, for good.
FATAL_PRODUCER_ERRORS: tuple[type[KafkaError], ...] = (
    UnknownProducerIdError,
    OutOfOrderSequenceNumberError,
    InvalidProducerEpochError,
    ProducerFencedError,
)


def producer_broken(producer: Any, error: BaseException | None = None) -> str | None:  # noqa: ANN401
    """Why `producer` can never deliver again, or None when its failures may be transient.

    A new producer (a new id, sequence 0) is the way out of each: the sender thread
    died, the producer was closed, its idempotence state is fatal, or `error` is a
    producer-state error. Timeouts, lost connections and unknown topics are transient:
    the same producer delivers once the broker is back.
    """
    # kafka-python has no public view of these; read defensively (a fake has none).
    sender = getattr(producer, "_sender", None)
    if sender is not None and not sender.is_alive() and not getattr(producer, "_closed", False):
        return "sender_dead"
    if getattr(producer, "_closed", False) or isinstance(error, IllegalStateError):
        return "closed"
    manager = getattr(producer, "_transaction_manager", None)
    if manager is not None and manager.has_fatal_error():
        return "fatal_state"
    if isinstance(error, FATAL_PRODUCER_ERRORS):
        return "producer_state"
    return None


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings every kafka-python client of the daemon shares."""
    settings: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "bootstrap_timeout_ms": config.bootstrap_timeout_ms,
    }
    if config.sasl_mechanism is not None:
        settings["sasl_mechanism"] = config.sasl_mechanism
        settings["sasl_plain_username"] = config.sasl_username
        if config.sasl_password is not None:
            settings["sasl_plain_password"] = config.sasl_password.get_secret_value()
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(config, name)
        if path is not None:
            settings[name] = str(path)
    return settings


def open_consumer(config: KafkaConfig) -> KafkaConsumer:
    """The events consumer: in the group, manual commits; the caller subscribes it."""
    return KafkaConsumer(
        **client_settings(config),
        group_id=config.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=config.max_poll_records,
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=max(config.session_timeout_ms // 4, 100),
    )


def open_producer(config: KafkaConfig) -> KafkaProducer:
    """The producer of policies, dead letters and checkpoints: acks from all replicas."""
    return KafkaProducer(
        **client_settings(config),
        acks="all",
        linger_ms=5,
        max_block_ms=PRODUCER_MAX_BLOCK_MS,
    )


@dataclass(frozen=True)
class TopicSpec:
    """A topic the daemon needs, and how to create it."""

    name: str
    partitions: int
    compact: bool = False


DEFAULT_REPLICATION = 3


def replication_factor(config: KafkaConfig, brokers: int) -> int:
    """The configured factor, or 3 capped at the cluster's size (warned about when capped)."""
    if config.replication_factor is not None:
        return config.replication_factor
    if brokers < DEFAULT_REPLICATION:
        log.warning(
            "topics.under_replicated",
            brokers=brokers,
            replication_factor=brokers,
            fix="set kafka.replication_factor, or create the topics (docs/operations.md)",
        )
    return max(1, min(DEFAULT_REPLICATION, brokers))


def topic_configs(spec: TopicSpec, replicas: int) -> dict[str, str]:
    """Topic settings: compaction for keyed state; two in-sync copies once there are three."""
    configs = {"cleanup.policy": "compact"} if spec.compact else {}
    if replicas >= DEFAULT_REPLICATION:
        # acks=all then waits for two copies: one broker lost loses no acknowledged write,
        # and writes go on while it is down.
        configs["min.insync.replicas"] = "2"
    return configs


def ensure_topics(config: KafkaConfig, specs: list[TopicSpec]) -> list[str]:
    """Check the topics exist; create the missing ones if `create_topics` is set.

    Returns:
        The names created.

    Raises:
        MissingTopicsError: some are missing and creating them is off.
    """
    admin = KafkaAdminClient(**client_settings(config))
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            return []
        if not config.create_topics:
            raise MissingTopicsError([spec.name for spec in missing])
        replicas = replication_factor(config, len(admin.describe_cluster()["brokers"]))
        new_topics = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=replicas,
                topic_configs=topic_configs(spec, replicas),
            )
            for spec in missing
        ]
        # Another replica may create them between our list and our create.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(new_topics, wait_for_metadata=True)
    finally:
        admin.close()
    created = [spec.name for spec in missing]
    log.info("topics.created", topics=created, replication_factor=replicas)
    return created


@dataclass
class Backoff:
    """Exponential delays between retries of one operation, reset on success."""

    initial_s: float = 0.2
    max_s: float = 10.0
    _next_s: float = 0.0
    _not_before_s: float = 0.0

    def ready(self, now_s: float) -> bool:
        """Whether the operation may be tried at monotonic time `now_s`."""
        return now_s >= self._not_before_s

    def failed(self, now_s: float) -> float:
        """Record a failure at `now_s`; return the delay before the next try."""
        self._next_s = min(self.max_s, max(self.initial_s, self._next_s * 2))
        self._not_before_s = now_s + self._next_s
        return self._next_s

    def succeeded(self) -> None:
        """Forget past failures."""
        self._next_s = 0.0
        self._not_before_s = 0.0


RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 10.0
_STOP_CHECK_S = 0.1


def retry_until_up(
    what: str,
    action: Callable[[], T],
    *,
    monotonic: Callable[[], float],
    stopping: Callable[[], bool],
) -> T:
    """Run `action` until the broker lets it succeed, with jittered exponential waits.

    The waits are tenacity's "full jitter" (uniform up to 0.2 s, 0.4 s, ... capped at
    10 s), so replicas that lost the same broker do not retry in step. A stop request
    ends a wait within a tenth of a second.

    Raises:
        KafkaError: the last failure, once `stopping()` is true.
    """

    def sleep(delay_s: float) -> None:
        deadline_s = monotonic() + delay_s
        while not stopping() and (left_s := deadline_s - monotonic()) > 0:
            time.sleep(min(_STOP_CHECK_S, left_s))

    def warn(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay_s = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("broker.unavailable", step=what, error=repr(error), retry_in_s=delay_s)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(KafkaError),
        wait=tenacity.wait_random_exponential(multiplier=RETRY_INITIAL_S, max=RETRY_MAX_S),
        stop=lambda _state: stopping(),
        sleep=sleep,
        before_sleep=warn,
        reraise=True,
    )
    return retrying(action)


@dataclass(frozen=True)
class Message:
    """A message to produce."""

    topic: str
    key: bytes | None
    value: bytes | None


@dataclass
class Outbox:
    """Messages produced but not yet known to be acknowledged.

    `flush` waits for the broker and raises if any message failed; failed
    messages stay queued and are sent again on the next flush, so a caller
    that checkpoints only after a successful flush never loses one.
    """

    producer: KafkaProducer
    _inflight: list[tuple[Message, Any]] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged."""
        return len(self._inflight)

    def send(self, message: Message) -> None:
        """Queue one message; a send refused at once is kept for the next flush."""
        try:
            future = self.producer.send(message.topic, key=message.key, value=message.value)
        except KafkaError:
            future = None
        self._inflight.append((message, future))

    def flush(self, timeout_s: float) -> None:
        """Wait until every queued message is acknowledged.

        Raises:
            DeliveryError: some were not; they are re-sent and stay queued. Its `fatal`
                says when this producer never will deliver them (`replace` it).
        """
        if any(future is None for _, future in self._inflight):
            self._resend()
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as error:
            raise DeliveryError(
                {m.topic for m, _ in self._inflight},
                len(self._inflight),
                repr(error),
                fatal=producer_broken(self.producer, error),
            ) from None
        failed = [(m, f) for m, f in self._inflight if f is None or not f.succeeded()]
        if failed:
            errors = [f.exception for _, f in failed if f is not None]
            cause = repr(errors[0]) if errors else "not sent"
            fatal = producer_broken(self.producer) or next(
                (reason for e in errors if (reason := producer_broken(None, e))), None
            )
            self._inflight = failed
            self._resend()
            raise DeliveryError({m.topic for m, _ in failed}, len(failed), cause, fatal=fatal)
        self._inflight = []

    def replace(self, producer: KafkaProducer) -> KafkaProducer:
        """Send every unacknowledged message again through `producer`; return the old one.

        The caller closes the old producer: its batches fail rather than deliver later.
        """
        old, self.producer = self.producer, producer
        self._resend()
        return old

    def _resend(self) -> None:
        messages = [m for m, _ in self._inflight]
        self._inflight = []
        for message in messages:
            self.send(message)


def read_topic(
    config: KafkaConfig,
    topic: str,
    *,
    start: dict[int, int] | None = None,
    timeout_s: float = 30.0,
) -> tuple[list[Any], dict[int, int]]:
    """Every record of `topic` from `start` (default: the beginning) to its high-water marks.

    The end is the fetch response's high-water mark, not `end_offsets`: Tansu
    answers ListOffsets(latest) short of the end when a batch held several records.

    Returns:
        The records in offset order per partition, and the next offset per partition.

    Raises:
        TimeoutError: the end was not reached within `timeout_s`.
    """
    consumer = KafkaConsumer(**client_settings(config), enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        for tp in assigned:
            offset = (start or {}).get(tp.partition)
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        records: list[Any] = []
        deadline_s = time.monotonic() + timeout_s
        while not _at_end(consumer, assigned):
            if time.monotonic() > deadline_s:
                raise TimeoutError(f"{topic}: end not reached within {timeout_s} s")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records, {tp.partition: consumer.position(tp) for tp in assigned}
    finally:
        consumer.close(autocommit=False)


def _at_end(consumer: KafkaConsumer, partitions: Iterable[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or consumer.position(tp) < highwater:
            return False
    return True
