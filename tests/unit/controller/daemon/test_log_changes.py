"""The log changed under a partition: never skipped silently.

Events removed by retention before they were consumed are counted and logged; a
topic recreated and refilled past the checkpoint's offset is not resumed mid-log.
"""

# ruff: noqa: D102 - the stand-ins implement LogOffsets, documented in daemon/offsets.py

from __future__ import annotations

import asyncio

import pytest
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

    def __init__(self, beginning=0, topic_id=None):
        self.beginning_offset = beginning
        self.asked = 0
        self.id = topic_id

    def topic_id(self, topic):  # noqa: ARG002
        return self.id

    def committed(self, partition):  # noqa: ARG002
        return None

    def beginning(self, partition):  # noqa: ARG002
        self.asked += 1
        return self.beginning_offset

    def beyond_end(self, partition, offset):  # noqa: ARG002
        return None


def make_daemon(batches, journal, store, log, **overrides):
    """A daemon on fakes over partition 0; returns it and its consumer (created on open)."""
    holder = {}

    def consumer_factory():
        holder["consumer"] = FakeConsumer(journal, batches, (0,))
        return holder["consumer"]

    daemon = Daemon(
        config(**overrides),
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


@pytest.mark.parametrize("on_offset_ahead", ["refuse", "reset_offsets"])
def test_a_topic_recreated_and_refilled_past_the_checkpoint_is_not_resumed_mid_log(
    on_offset_ahead,
):
    """Checkpointed at 4 on topic A; reassigned on a new topic B that already ends far past 4.

    The log end cannot tell (4 is inside B); the topic id does: refused, or consumed
    from B's beginning, as `checkpoint.on_offset_ahead` says.
    """
    journal = Journal()
    log = Log(topic_id="A")
    daemon, consumer = make_daemon(
        [{0: interaction(1) + interaction(2)}],
        journal,
        FakeStore(journal),
        log,
        checkpoint={"interval_s": 5.0, "on_offset_ahead": on_offset_ahead},
    )
    polls = {"n": 0}

    def on_poll():
        polls["n"] += 1
        if polls["n"] == 3:  # the broker came back empty, the topic was created and refilled
            asyncio.run(consumer.listener.on_partitions_revoked(set(consumer.partitions)))
            log.id = "B"
            asyncio.run(consumer.listener.on_partitions_assigned(set(consumer.partitions)))
        if polls["n"] == 6:
            daemon.stop()

    consumer.on_poll = on_poll
    with capture_logs() as logs:
        daemon.run()

    assert ("checkpoint", (0, 4)) in journal.entries
    named = {e["event"]: e for e in logs}
    if on_offset_ahead == "refuse":
        refused = named["partition.refused"]
        assert refused["reason"] == "offset_ahead"
        assert "recreated (id A -> B)" in refused["detail"]
        assert not daemon.ready
    else:
        assert "recreated (id A -> B)" in named["checkpoint.offset_ahead"]["detail"]
        assert ("seek", (0, 0)) in journal.entries
        resets = daemon.metrics.registry.get_sample_value(
            "stopbandit_checkpoint_resets_total", {"partition": "0", "reason": "offset_ahead"}
        )
        assert resets == 1
