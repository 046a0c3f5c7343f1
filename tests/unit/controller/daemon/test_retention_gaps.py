"""Events removed by retention before they were consumed: counted and logged, never silent."""

# ruff: noqa: D102 - the stand-ins implement LogOffsets, documented in daemon/offsets.py

from __future__ import annotations

from daemon_fakes import (
    FakeClock,
    FakeConsumer,
    FakeProducer,
    FakeStore,
    Journal,
    config,
    interaction,
)
from structlog.testing import capture_logs

from stopbandit.controller.daemon.loop import Daemon

WALL_S = 1_800_000_000.0


class Log:
    """LogOffsets of a log whose beginning a test moves (nothing committed, no end check)."""

    def __init__(self, beginning=0):
        self.beginning_offset = beginning
        self.asked = 0

    def committed(self, partition):  # noqa: ARG002
        return None

    def beginning(self, partition):  # noqa: ARG002
        self.asked += 1
        return self.beginning_offset

    def beyond_end(self, partition, offset):  # noqa: ARG002
        return None


def make_daemon(batches, journal, store, log):
    """A daemon on fakes over partition 0; returns it and its consumer (created on open)."""
    holder = {}

    def consumer_factory():
        holder["consumer"] = FakeConsumer(journal, batches, (0,))
        return holder["consumer"]

    daemon = Daemon(
        config(),
        consumer_factory=consumer_factory,
        producer=FakeProducer(journal),
        store=store,
        monotonic=FakeClock(),
        wall=lambda: WALL_S,
        check_topics=False,
        log_offsets=lambda _: log,
    )
    daemon.open()
    return daemon, holder["consumer"]


def lost(daemon):
    """stopbandit_events_lost_to_retention_total of partition 0."""
    name = "stopbandit_events_lost_to_retention_total"
    return daemon.metrics.registry.get_sample_value(name, {"partition": "0"}) or 0.0


def test_a_checkpoint_below_the_log_beginning_resumes_there_counted_and_logged():
    """Checkpointed at 4, the log now begins at 10: seek to 10, 6 counted, an error logged."""
    journal, store = Journal(), FakeStore(Journal())
    first, _ = make_daemon([{0: interaction(1) + interaction(2)}], journal, store, Log())
    first.run(max_events=4)
    assert store.saved[0].offset == 4

    second, _ = make_daemon([], journal, store, Log(beginning=10))
    with capture_logs() as logs:
        second.run(idle_timeout_s=0.0)

    assert ("seek", (0, 10)) in journal.entries
    assert lost(second) == 6
    [error] = [e for e in logs if e["event"] == "events.lost_to_retention"]
    assert (error["log_level"], error["lost"], error["when"]) == ("error", 6, "restore")
    assert second.ready


def test_a_fetch_reset_past_unread_events_while_consuming_is_counted_and_logged():
    """The consumer lagged, retention removed 4..19, its reset jumps to 20: 16 lost, said so."""
    journal = Journal()
    log = Log()
    daemon, consumer = make_daemon(
        [{0: interaction(1) + interaction(2)}, {0: interaction(3)}],
        journal,
        FakeStore(journal),
        log,
    )
    polls = {"n": 0}

    def on_poll():
        polls["n"] += 1
        if polls["n"] == 3:  # after the first batch: the offset reset kafka-python does
            consumer.offsets[0] = 20
            log.beginning_offset = 20

    consumer.on_poll = on_poll
    with capture_logs() as logs:
        daemon.run(max_events=6)

    assert lost(daemon) == 16
    [error] = [e for e in logs if e["event"] == "events.lost_to_retention"]
    assert (error["offset"], error["beginning"], error["when"]) == (4, 20, "consuming")
    assert daemon.events_processed == 6  # what came after the gap is learned


def test_a_gap_inside_the_log_is_not_retention():
    """Offsets skipped where the log still begins before them (markers, compaction): no alarm."""
    journal = Journal()
    log = Log()
    daemon, consumer = make_daemon(
        [{0: interaction(1)}, {0: interaction(2)}, {0: interaction(3)}],
        journal,
        FakeStore(journal),
        log,
    )
    polls = {"n": 0}

    def on_poll():
        polls["n"] += 1
        if polls["n"] == 3:
            consumer.offsets[0] += 1  # one offset: a transaction marker, not even asked
        if polls["n"] == 4:
            consumer.offsets[0] += 5

    consumer.on_poll = on_poll
    with capture_logs() as logs:
        daemon.run(max_events=6)

    assert lost(daemon) == 0
    assert "events.lost_to_retention" not in {e["event"] for e in logs}
    assert log.asked == 2  # the restore's check, and the five-offset gap's
