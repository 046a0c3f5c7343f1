"""The outbox: which delivery failures a producer never recovers from, and its replacement."""

# ruff: noqa: D102 - the fake mirrors kafka-python's producer, documented there

from __future__ import annotations

import inspect
import threading

import pytest
from kafka import KafkaProducer
from kafka.errors import (
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumberError,
    UnknownProducerIdError,
    UnknownTopicOrPartitionError,
)
from kafka.future import Future
from kafka.producer.transaction_manager import TransactionManager

from stopbandit.streams.kafka import DeliveryError, Message, Outbox, producer_broken


class ScriptedProducer:
    """Each send's future fails with `error` (None: succeeds); `flush` settles them."""

    def __init__(self, error: KafkaError | None = None) -> None:
        self.error = error
        self.sent: list[Message] = []
        self._pending: list[tuple[Message, Future]] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> Future:
        future = Future()
        self._pending.append((Message(topic, key, value), future))
        return future

    def flush(self, timeout: float | None = None) -> None:  # noqa: ARG002
        for message, future in self._pending:
            if self.error is None:
                self.sent.append(message)
                future.success(None)
            else:
                future.failure(self.error)
        self._pending = []


class ProducerInternals:
    """kafka-python's KafkaProducer as `producer_broken` reads it, without a broker.

    Its real transaction manager (the idempotence state), a sender thread, the closed flag.
    """

    def __init__(self) -> None:
        self._transaction_manager = TransactionManager(api_version=(4, 0))
        self._sender = threading.Thread(target=lambda: None)
        self._closed = False


def test_the_producer_internals_read_are_kafka_pythons():
    """The attributes `producer_broken` reads exist on kafka-python's producer."""
    source = inspect.getsource(KafkaProducer.__init__)
    assert all(name in source for name in ("_transaction_manager", "_sender", "_closed"))


def test_a_producer_is_broken_when_its_sender_died_its_state_is_fatal_or_it_closed():
    """Sound while its sender runs; then each way it can never deliver again."""
    producer = ProducerInternals()
    producer._sender.start()
    producer._sender.join()
    assert producer_broken(producer) == "sender_dead"

    producer._sender = threading.current_thread()
    assert producer_broken(producer) is None
    producer._transaction_manager.transition_to_fatal_error(KafkaError("InitProducerId"))
    assert producer_broken(producer) == "fatal_state"

    producer._closed = True
    assert producer_broken(producer) == "closed"
    assert producer_broken(None, IllegalStateError("KafkaProducer already closed!")) == "closed"


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (UnknownProducerIdError(), "producer_state"),
        (OutOfOrderSequenceNumberError(), "producer_state"),
        (KafkaTimeoutError(), None),
        (KafkaConnectionError(), None),
        (NotLeaderForPartitionError(), None),
        (UnknownTopicOrPartitionError(), None),
    ],
)
def test_producer_state_errors_are_fatal_broker_trouble_is_not(error, fatal):
    """A new producer id cures the producer-state errors; waiting cures the rest."""
    assert producer_broken(None, error) == fatal


def test_a_fatal_delivery_failure_says_so_and_the_replacement_delivers_everything():
    """UnknownProducerId on every batch: DeliveryError(fatal); a new producer gets them all."""
    broken = ScriptedProducer(UnknownProducerIdError())
    outbox = Outbox(broken)
    messages = [Message("policies", f"s{i}".encode(), b"{}") for i in range(3)]
    for message in messages:
        outbox.send(message)

    with pytest.raises(DeliveryError) as raised:
        outbox.flush(1.0)
    assert (raised.value.fatal, raised.value.undelivered) == ("producer_state", 3)

    fresh = ScriptedProducer()
    assert outbox.replace(fresh) is broken
    outbox.flush(1.0)
    assert (fresh.sent, outbox.pending) == (messages, 0)


def test_a_transient_delivery_failure_keeps_the_producer():
    """A timeout is not fatal: the messages stay queued on the same producer."""
    producer = ScriptedProducer(KafkaTimeoutError())
    outbox = Outbox(producer)
    outbox.send(Message("dlq", None, b"x"))

    with pytest.raises(DeliveryError) as raised:
        outbox.flush(1.0)
    assert raised.value.fatal is None
    producer.error = None
    outbox.flush(1.0)
    assert (producer.sent, outbox.pending) == ([Message("dlq", None, b"x")], 0)
