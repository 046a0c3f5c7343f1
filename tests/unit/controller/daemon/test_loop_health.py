"""Loud, not silent: a producer that cannot recover is replaced; liveness sees stuck work."""

# ruff: noqa: D102, ARG002 - the fakes mirror kafka-python's producer, documented there

from __future__ import annotations

from daemon_fakes import (
    SEGMENT,
    FakeClock,
    FakeConsumer,
    FakeProducer,
    FakeStore,
    Journal,
    config,
    interaction,
)
from kafka.errors import UnknownProducerIdError
from kafka.future import Future
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from stopbandit.controller.daemon.checkpoint_stores import CheckpointError
from stopbandit.controller.daemon.loop import Daemon

WALL_S = 1_800_000_000.0
UNHEALTHY_AFTER_S = 60.0
CHECKPOINT_INTERVAL_S = 5.0  # daemon_fakes.config's


class StuckProducer(FakeProducer):
    """A producer whose every batch fails as a stuck idempotent producer's does."""

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> Future:
        future = Future()
        future.failure(UnknownProducerIdError())
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.journal.add("flush.failed")


class UnwritableStore(FakeStore):
    """A store whose writes fail (a full disk)."""

    def save(self, checkpoint):
        raise CheckpointError(checkpoint.topic, checkpoint.partition, "No space left on device")


def make_daemon(journal, clock, *, producer, producer_factory=None, store=None, rounds=40):
    """A daemon on fakes whose consumer advances `clock` 5 s per poll for `rounds` polls."""
    holder = {}

    def consumer_factory():
        consumer = FakeConsumer(journal, [{0: interaction(1)}], (0,))
        polls = {"n": 0}

        def on_poll():
            clock.now_s += 5.0
            polls["n"] += 1
            if polls["n"] > rounds:
                daemon.stop()

        consumer.on_poll = on_poll
        holder["consumer"] = consumer
        return consumer

    daemon = Daemon(
        config(http={"unhealthy_after_s": UNHEALTHY_AFTER_S}),
        consumer_factory=consumer_factory,
        producer=producer,
        producer_factory=producer_factory,
        store=store or FakeStore(journal),
        monotonic=clock,
        wall=lambda: WALL_S,
        check_topics=False,
    )
    return daemon


def sample(daemon, name):
    """One sample's value from the daemon's registry (0 when absent)."""
    value = daemon.metrics.registry.get_sample_value(name, {"reason": "producer_state"})
    return value or 0.0


def test_a_producer_that_cannot_recover_is_replaced_counted_and_logged():
    """UnknownProducerId on every batch: a new producer from the factory delivers the policies."""
    journal, clock = Journal(), FakeClock()
    fresh: list[FakeProducer] = []

    def factory():
        fresh.append(FakeProducer(journal))
        return fresh[-1]

    daemon = make_daemon(journal, clock, producer=StuckProducer(journal), producer_factory=factory)

    with capture_logs() as logs:
        daemon.run()

    assert len(fresh) == 1
    assert SEGMENT.encode() in {k for t, k, _ in fresh[0].sent if t == "policies"}
    assert sample(daemon, "stopbandit_producer_replacements_total") == 1
    [replaced] = [e for e in logs if e["event"] == "producer.replaced"]
    assert replaced["reason"] == "producer_state"
    assert journal.kinds()[-1] == "producer.close"  # the new one, at stop
    assert (
        "stopbandit_producer_replacements_total"
        in generate_latest(daemon.metrics.registry).decode()
    )
    assert daemon.healthy


def test_a_producer_that_cannot_be_replaced_fails_liveness_and_readiness():
    """No way to open another: once flushes failed for unhealthy_after_s, /healthz and /readyz."""
    journal, clock = Journal(), FakeClock()
    daemon = make_daemon(journal, clock, producer=StuckProducer(journal), rounds=3)
    daemon.open()
    assert daemon.healthy

    with capture_logs() as logs:
        daemon.run()  # 3 polls, 15 s: failing, not yet for long
    assert daemon.healthy
    clock.now_s += CHECKPOINT_INTERVAL_S + UNHEALTHY_AFTER_S
    daemon.heartbeat_s = clock.now_s  # the loop still comes round; its work does not get done

    assert not daemon.healthy
    assert not daemon.ready
    assert "producer.unrecoverable" in {e["event"] for e in logs}


def test_events_never_checkpointed_fail_liveness_after_unhealthy_after_s():
    """Publishing works but every checkpoint write fails: unhealthy once that lasted too long."""
    journal, clock = Journal(), FakeClock()
    daemon = make_daemon(
        journal, clock, producer=FakeProducer(journal), store=UnwritableStore(journal), rounds=4
    )
    daemon.run()  # 20 s with an uncheckpointed partition
    assert daemon.healthy
    clock.now_s += CHECKPOINT_INTERVAL_S + UNHEALTHY_AFTER_S
    daemon.heartbeat_s = clock.now_s

    assert not daemon.healthy


def test_an_idle_daemon_stays_healthy():
    """Nothing to do for far longer than unhealthy_after_s: nothing is stuck."""
    journal, clock = Journal(), FakeClock()
    daemon = make_daemon(journal, clock, producer=FakeProducer(journal), rounds=100)
    daemon.run()  # 500 s, the interaction checkpointed early, then idle

    assert daemon.healthy
    assert daemon.final_checkpoint_written
