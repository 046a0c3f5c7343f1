"""The checkpoint round: flush, then checkpoint, then commit no further than the checkpoints."""

# ruff: noqa: D102, ARG002 - the stand-ins implement protocols documented in the daemon's modules

from __future__ import annotations

from daemon_fakes import TOPIC, FakeClock, FakeConsumer, FakeStore, Journal, config, interaction
from kafka.errors import KafkaError

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import CheckpointError
from stopbandit.controller.daemon.checkpointing import Checkpointer
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.partitions import PartitionState
from stopbandit.streams.codec import decode

WALL_S = 1_800_000_000.0


class Flush:
    """Step 1's stand-in: journals each call and answers whether it was acknowledged."""

    def __init__(self, journal, *, acknowledged=True):
        self.journal = journal
        self.acknowledged = acknowledged

    def __call__(self):
        self.journal.add("flush")
        return self.acknowledged


class Round:
    """A Checkpointer over fakes, with the fakes."""

    def __init__(self, *, acknowledged=True, store=None, consumer=FakeConsumer, started_s=0.0):
        self.journal = Journal()
        self.clock = FakeClock()
        self.clock.now_s = started_s
        self.consumer = consumer(self.journal, [])
        self.store = store or FakeStore(self.journal)
        self.metrics = Metrics()
        self.flush = Flush(self.journal, acknowledged=acknowledged)
        self.checkpointer = Checkpointer(
            config(),  # checkpoint.interval_s 5
            flush=self.flush,
            store=self.store,
            consumer=self.consumer,
            metrics=self.metrics,
            monotonic=self.clock,
            wall=lambda: WALL_S,
            started_s=started_s,
        )


def state(partition, offset, checkpointed_offset=None, requests=()):
    """A partition at `offset` whose last checkpoint covers `checkpointed_offset`."""
    core = ControllerCore(config())
    for i in requests:
        for key, value in interaction(i):
            event = decode(key, value)
            core.offer(event, event.ts)
    return PartitionState(partition, core, offset, 1000.0 + offset, checkpointed_offset, 0.0)


class FailingStore(FakeStore):
    """A store that cannot write the checkpoints of some partitions."""

    def __init__(self, journal, failing):
        super().__init__(journal)
        self.failing = set(failing)

    def save(self, checkpoint):
        if checkpoint.partition in self.failing:
            raise CheckpointError(checkpoint.topic, checkpoint.partition, "disk full")
        super().save(checkpoint)


class FailingConsumer(FakeConsumer):
    """A consumer whose commits fail."""

    def commit(self, offsets, /, timeout_ms=None):
        self.journal.add("commit_failed")
        raise KafkaError("coordinator moved")


def test_flush_then_checkpoint_then_commit():
    """The round flushes first, then writes the checkpoints, then commits their offsets."""
    round_ = Round()
    states = [state(0, 4, requests=(1, 2)), state(1, 2, requests=(3,))]

    round_.checkpointer.checkpoint_and_commit(states)

    assert round_.journal.kinds() == ["flush", "checkpoint", "checkpoint", "commit"]
    assert round_.journal.entries[1:] == [
        ("checkpoint", (0, 4)),
        ("checkpoint", (1, 2)),
        ("commit", {0: 4, 1: 2}),
    ]


def test_a_checkpoint_holds_the_core_its_offset_and_its_watermark():
    """The written checkpoint is the core's snapshot at the partition's offset and watermark."""
    round_ = Round()
    partition = state(0, 4, requests=(1, 2))

    round_.checkpointer.checkpoint([partition])

    written = round_.store.saved[0]
    assert (written.topic, written.partition, written.offset) == (TOPIC, 0, 4)
    assert written.watermark_s == partition.watermark_s == 1004.0
    assert written.written_at == WALL_S
    assert written.state == partition.core.snapshot()
    assert written.state["learner"]["learned"] == 2
    assert (partition.checkpointed_offset, partition.dirty) == (4, False)
    assert round_.metrics.registry.get_sample_value("stopbandit_checkpoint_duration_seconds_count")


def test_a_failed_flush_checkpoints_and_commits_nothing():
    """If step 1 is not acknowledged, no checkpoint is written and nothing is committed."""
    round_ = Round(acknowledged=False)
    partition = state(0, 4, checkpointed_offset=2)

    assert round_.checkpointer.checkpoint([partition]) is None
    round_.checkpointer.checkpoint_and_commit([partition])

    assert round_.journal.kinds() == ["flush", "flush"]
    assert partition.checkpointed_offset == 2


def test_only_changed_partitions_are_written_but_all_checkpointed_ones_are_committed():
    """A clean partition is not written again; its last checkpoint's offset is committed again."""
    round_ = Round()
    clean, changed = state(0, 6, checkpointed_offset=6), state(1, 9, checkpointed_offset=5)

    offsets = round_.checkpointer.checkpoint([clean, changed])

    assert [d for what, d in round_.journal.entries if what == "checkpoint"] == [(1, 9)]
    assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 6, 1: 9}


def test_a_failed_write_commits_the_previous_checkpoint_offset_or_none():
    """A partition whose write failed commits its last durable offset; without one, nothing."""
    journal = Journal()
    round_ = Round(store=FailingStore(journal, failing={0, 1}))
    before, never = state(0, 8, checkpointed_offset=3), state(1, 4)

    offsets = round_.checkpointer.checkpoint([before, never])

    assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 3}
    assert (before.checkpointed_offset, never.checkpointed_offset) == (3, None)
    assert before.dirty


def test_a_failed_commit_is_logged_not_raised():
    """A commit failure leaves the checkpoints in place and does not stop the round."""
    round_ = Round(consumer=FailingConsumer)
    partition = state(0, 2)

    round_.checkpointer.checkpoint_and_commit([partition])

    assert round_.journal.kinds() == ["flush", "checkpoint", "commit_failed"]
    assert partition.checkpointed_offset == 2


def test_nothing_checkpointed_yet_commits_nothing():
    """With no partition ever checkpointed there is nothing to commit, not an empty commit."""
    round_ = Round(store=FailingStore(Journal(), failing={0}))

    round_.checkpointer.checkpoint_and_commit([state(0, 2)])

    assert "commit" not in round_.journal.kinds()


def test_rounds_are_due_one_interval_after_the_start_and_after_each_round():
    """The first round is due an interval after opening; each round schedules the next."""
    round_ = Round(started_s=100.0)
    checkpointer = round_.checkpointer

    assert not checkpointer.due(104.9)
    assert checkpointer.due(105.0)
    round_.clock.now_s = 107.0
    checkpointer.checkpoint_and_commit([])
    assert not checkpointer.due(111.9)
    assert checkpointer.due(112.0)


def test_a_round_says_whether_every_partition_is_now_checkpointed():
    """True when each state is covered; False after a failed write or a failed flush."""
    assert Round().checkpointer.checkpoint_and_commit([state(0, 4), state(1, 2)])
    assert Round().checkpointer.checkpoint_and_commit([])
    failing = Round(store=FailingStore(Journal(), failing={1}))
    assert not failing.checkpointer.checkpoint_and_commit([state(0, 4), state(1, 2)])
    assert not Round(acknowledged=False).checkpointer.checkpoint_and_commit([state(0, 4)])
    # A failed commit leaves the checkpoints written: still True.
    assert Round(consumer=FailingConsumer).checkpointer.checkpoint_and_commit([state(0, 2)])


def test_a_written_checkpoint_resets_the_age_clock():
    """After a write, the partition is clean and its age counts from its next event."""
    round_ = Round()
    partition = state(0, 4)
    partition.pending_since_s = 3.0

    round_.checkpointer.checkpoint([partition])

    assert partition.pending_since_s is None
