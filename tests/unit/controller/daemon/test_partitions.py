"""Owned partitions: assign, revoke, lose, restore; their counters and gauges; the listener."""

# ruff: noqa: D102 - the stand-ins implement protocols documented in partitions.py

from __future__ import annotations

import asyncio

import pytest
from daemon_fakes import (
    SEGMENT,
    TOPIC,
    FakeConsumer,
    FakeProducer,
    FakeStore,
    Journal,
    config,
    interaction,
)
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import Checkpoint, CheckpointError
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.partitions import Partitions, PartitionState, RebalanceListener
from stopbandit.controller.daemon.publish import Publisher
from stopbandit.streams.codec import decode
from stopbandit.streams.kafka import Outbox


def tps(*numbers):
    """TopicPartitions of the events topic."""
    return {TopicPartition(TOPIC, n) for n in numbers}


def learned_core(*requests):
    """A core that joined and learned the interactions of `requests`."""
    core = ControllerCore(config())
    for i in requests:
        for key, value in interaction(i):
            event = decode(key, value)
            core.offer(event, event.ts)
    return core


def publish_round(publisher, partitions, wall_s, *, force=False):
    """One publish of the owned partitions, delivered (what Daemon.publish does)."""
    cores = [(state.core, force) for state in partitions.states()]
    policies = publisher.build(cores, wall_s, with_fallback=True)
    publisher.send(policies)
    publisher.delivered(policies, 0.0)


class Checkpoints:
    """Stands in for Checkpointer.checkpoint: records the calls, answers offsets (or None)."""

    def __init__(self, *, flushed=True):
        self.flushed = flushed
        self.calls = []

    def __call__(self, states):
        self.calls.append([s.partition for s in states])
        if not self.flushed:
            return None
        return {
            TopicPartition(TOPIC, s.partition): OffsetAndMetadata(s.offset, "", -1) for s in states
        }


class Owner:
    """A Partitions over fakes, and the fakes."""

    def __init__(self, *, flushed=True, store=None):
        self.journal = Journal()
        self.consumer = FakeConsumer(self.journal, [], (0, 1, 2))
        self.store = store or FakeStore(self.journal)
        self.metrics = Metrics()
        self.publisher = Publisher(config(), Outbox(FakeProducer(self.journal)), self.metrics)
        self.checkpoints = Checkpoints(flushed=flushed)
        self.partitions = Partitions(
            config(),
            self.consumer,
            self.store,
            self.publisher,
            self.metrics,
            checkpoint=self.checkpoints,
        )

    def owning(self, *numbers, now_s=0.0):
        """Assign and restore `numbers` (empty cores at offset 0); return the Partitions."""
        self.partitions.assign(tps(*numbers))
        assert self.partitions.restore_assigned(now_s)
        return self.partitions

    def sample(self, name, labels=None):
        """A sample of the metrics' registry."""
        return self.metrics.registry.get_sample_value(name, labels or {})


def test_state_is_dirty_until_its_offset_is_checkpointed():
    """A state is dirty while its offset differs from the offset of its last checkpoint."""
    state = PartitionState(0, ControllerCore(config()), 5, 0.0, None, 0.0)
    assert state.dirty
    state.checkpointed_offset = 5
    assert not state.dirty
    state.offset = 6
    assert state.dirty


def test_report_adds_only_what_the_core_counted_since_the_last_report():
    """Counters restored with the core are not counted again; later joins and learns are."""
    core = learned_core(1, 2)
    state = PartitionState(0, core, 4, 0.0, 4, 0.0)
    metrics = Metrics()
    state.report(metrics)
    assert metrics.registry.get_sample_value("stopbandit_interactions_learned_total") == 0

    for key, value in interaction(3):
        event = decode(key, value)
        core.offer(event, event.ts)
    state.report(metrics)
    state.report(metrics)

    sample = metrics.registry.get_sample_value
    assert sample("stopbandit_interactions_learned_total") == 1
    assert sample("stopbandit_interactions_joined_total") == 1


def test_gauges_give_lag_and_checkpoint_age():
    """report_gauges sets lag from the high-water mark and the age (drift resets: publish.py)."""
    core = learned_core(1)
    state = PartitionState(3, core, 10, 0.0, 8, 100.0)
    metrics = Metrics()

    state.report_gauges(metrics, 25, 110.0)  # first seen dirty: the age counts from here
    state.report_gauges(metrics, 25, 140.0)

    sample = metrics.registry.get_sample_value
    assert sample("stopbandit_consumer_lag", {"partition": "3"}) == 15
    assert sample("stopbandit_checkpoint_age_seconds", {"partition": "3"}) == 30.0


def test_checkpoint_age_stays_zero_on_an_idle_partition():
    """Nothing processed since the checkpoint: age 0 however long ago it was (no stale alert)."""
    state = PartitionState(0, ControllerCore(config()), 8, 0.0, 8, 100.0)
    metrics = Metrics()
    age = {"partition": "0"}
    for now_s in (100.0, 1_000.0, 100_000.0):
        state.report_gauges(metrics, 8, now_s)
        assert metrics.registry.get_sample_value("stopbandit_checkpoint_age_seconds", age) == 0.0

    state.offset = 9  # an event arrives at 100,000 s
    state.report_gauges(metrics, 9, 100_000.0)
    state.report_gauges(metrics, 9, 100_400.0)  # and no checkpoint covers it for 400 s
    assert metrics.registry.get_sample_value("stopbandit_checkpoint_age_seconds", age) == 400.0


def test_assign_pauses_the_new_partitions_until_they_are_restored():
    """Assigned partitions stay paused and unowned until restore_assigned, then resume."""
    owner = Owner()
    partitions = owner.partitions
    assert not partitions.restored

    partitions.assign(tps(0, 1))

    assert owner.consumer.paused == {0, 1}
    assert partitions.owned == {}
    assert not partitions.restored
    assert partitions.restore_assigned(0.0)
    assert owner.consumer.paused == set()
    assert sorted(partitions.owned) == [0, 1]
    assert partitions.restored


def test_restore_seeks_to_the_checkpoint_and_loads_its_core_and_watermark():
    """A checkpointed partition gets its state, offset and watermark; another starts empty."""
    owner = Owner()
    core = learned_core(1, 2)
    owner.store.saved[1] = Checkpoint(TOPIC, 1, 4, 1.0, core.snapshot(), 1002.5)
    partitions = owner.partitions

    partitions.assign(tps(0, 1))
    assert partitions.restore_assigned(50.0)

    restored, fresh = partitions.owned[1], partitions.owned[0]
    assert ("seek", (1, 4)) in owner.journal.entries
    assert (restored.offset, restored.watermark_s, restored.checkpointed_offset) == (4, 1002.5, 4)
    assert restored.core.learner.learned == 2
    assert restored.checkpointed_at_s == 50.0
    assert not restored.dirty
    assert (fresh.offset, fresh.watermark_s, fresh.checkpointed_offset) == (0, 0.0, None)
    assert fresh.core.learner.learned == 0
    assert restored.force_publish
    assert fresh.force_publish


class FailingStore(FakeStore):
    """A store whose first loads of some partitions fail; counts every load."""

    def __init__(self, failures):
        super().__init__(Journal())
        self.failures = dict(failures)  # partition -> loads left to fail
        self.loads = 0

    def load(self, topic, partition, *, max_segments=None):
        self.loads += 1
        if self.failures.get(partition, 0) > 0:
            self.failures[partition] -= 1
            raise CheckpointError(topic, partition, "unreadable")
        return super().load(topic, partition, max_segments=max_segments)


def test_a_failed_restore_waits_for_its_backoff_then_restores():
    """A store failure leaves the partition paused and pending; it is retried after the backoff."""
    owner = Owner(store=FailingStore({0: 1}))
    partitions = owner.partitions
    partitions.assign(tps(0))

    assert not partitions.restore_assigned(10.0)
    assert owner.consumer.paused == {0}
    assert not partitions.restored
    assert not partitions.restore_assigned(10.1)  # within the backoff: not even tried
    assert owner.store.loads == 1
    assert partitions.restore_assigned(11.0)
    assert owner.store.loads == 2
    assert sorted(partitions.owned) == [0]
    assert owner.consumer.paused == set()


def test_a_failure_never_holds_back_the_other_partitions():
    """One partition's store failure leaves it paused; the others are restored and consumed."""
    owner = Owner(store=FailingStore({1: 1}))
    partitions = owner.partitions
    partitions.assign(tps(0, 1, 2))

    assert partitions.restore_assigned(0.0)

    assert sorted(partitions.owned) == [0, 2]
    assert owner.consumer.paused == {1}
    assert owner.store.loads == 3
    assert not partitions.restored
    assert not partitions.restore_assigned(0.1)  # partition 1's own backoff
    assert partitions.restore_assigned(1.0)
    assert sorted(partitions.owned) == [0, 1, 2]
    assert partitions.restored


def test_nothing_to_restore_is_not_a_restore():
    """restore_assigned is False when nothing is pending (the loop then keeps its publish time)."""
    owner = Owner()
    owner.owning(0)
    assert not owner.partitions.restore_assigned(1.0)


def test_ready_needs_an_acknowledged_publish_after_every_restore():
    """Ready once restored and published; a new assignment clears it until the next publish."""
    owner = Owner()
    partitions = owner.partitions
    partitions.published()  # before any assignment: covers nothing
    owner.owning(0)
    assert not partitions.ready
    partitions.published()
    assert partitions.ready

    partitions.assign(tps(0, 1))
    assert not partitions.ready
    partitions.published()  # partition 1 is not restored yet: not ready still
    assert not partitions.ready
    assert partitions.restore_assigned(1.0)
    partitions.published()
    assert partitions.ready


def test_an_assignment_of_owned_partitions_changes_nothing():
    """Partitions already owned are neither paused nor restored again."""
    owner = Owner()
    partitions = owner.owning(0)
    state = partitions.owned[0]
    partitions.published()

    partitions.assign(tps(0))

    assert owner.consumer.paused == set()
    assert partitions.owned[0] is state
    assert partitions.ready


def test_revoke_checkpoints_the_owned_partitions_then_drops_them():
    """Revoked owned partitions are checkpointed together, dropped, and their offsets returned."""
    owner = Owner()
    partitions = owner.owning(0, 1, 2)
    partitions.owned[1].offset = 7

    offsets = partitions.revoke(tps(1, 2, 5))

    assert owner.checkpoints.calls == [[1, 2]]
    assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {1: 7, 2: 0}
    assert sorted(partitions.owned) == [0]


def test_revoke_after_a_failed_flush_commits_nothing_but_still_drops():
    """When the flush fails nothing is committed; the partitions go all the same."""
    owner = Owner(flushed=False)
    partitions = owner.owning(0, 1)

    assert partitions.revoke(tps(0, 1)) == {}
    assert partitions.owned == {}


def test_revoke_while_closing_drops_without_a_checkpoint():
    """After closing() (the final checkpoint ran), the consumer's close revokes only drop."""
    owner = Owner()
    partitions = owner.owning(0)
    partitions.closing()

    assert partitions.revoke(tps(0)) == {}
    assert owner.checkpoints.calls == []
    assert partitions.owned == {}


def test_revoke_of_a_pending_partition_cancels_its_restore():
    """A partition revoked before its restore is neither checkpointed nor restored later."""
    owner = Owner()
    partitions = owner.partitions
    partitions.assign(tps(0))

    assert partitions.revoke(tps(0)) == {}

    assert owner.checkpoints.calls == []
    assert partitions.restored
    assert not partitions.restore_assigned(0.0)
    assert partitions.owned == {}


def test_drop_forgets_state_policies_and_gauges_of_the_partition():
    """A dropped partition's policies leave /policies and its gauges leave /metrics."""
    owner = Owner()
    partitions = owner.owning(0, 1)
    partitions.owned[0].core = learned_core(1)
    for state in partitions.states():
        state.report_gauges(owner.metrics, 3, 1.0)
    publish_round(owner.publisher, partitions, 1.0, force=True)
    assert SEGMENT in owner.publisher.current
    assert owner.sample("stopbandit_drift_resets", {"segment": SEGMENT}) == 0

    partitions.drop(tps(0))
    publish_round(owner.publisher, partitions, 2.0)

    assert sorted(partitions.owned) == [1]
    assert SEGMENT not in owner.publisher.current
    assert owner.sample("stopbandit_consumer_lag", {"partition": "0"}) is None
    assert owner.sample("stopbandit_checkpoint_age_seconds", {"partition": "0"}) is None
    assert owner.sample("stopbandit_drift_resets", {"segment": SEGMENT}) is None
    assert owner.sample("stopbandit_consumer_lag", {"partition": "1"}) == 3


def test_states_are_in_partition_order():
    """states() lists the owned partitions by number, whatever the order they came in."""
    owner = Owner()
    owner.owning(2)
    owner.owning(0)
    assert [s.partition for s in owner.partitions.states()] == [0, 2]


class Handler:
    """A RebalanceHandler that records calls and may fail."""

    def __init__(self, offsets=None, error=None):
        self.offsets = offsets or {}
        self.error = error
        self.calls = []

    def assign(self, assigned):
        self.calls.append(("assign", sorted(tp.partition for tp in assigned)))
        if self.error:
            raise self.error

    def revoke(self, revoked):
        self.calls.append(("revoke", sorted(tp.partition for tp in revoked)))
        if self.error:
            raise self.error
        return self.offsets

    def drop(self, partitions):
        self.calls.append(("drop", sorted(tp.partition for tp in partitions)))


def test_listener_commits_what_the_revoke_returns():
    """On revoke the listener commits the handler's offsets through the consumer."""
    journal = Journal()
    consumer = FakeConsumer(journal, [])
    offsets = {TopicPartition(TOPIC, 1): OffsetAndMetadata(9, "", -1)}
    handler = Handler(offsets)
    listener = RebalanceListener(handler, consumer)

    asyncio.run(listener.on_partitions_revoked(tps(1)))

    assert handler.calls == [("revoke", [1])]
    assert consumer.committed == {1: 9}


def test_listener_commits_nothing_when_there_is_nothing_to_commit():
    """An empty revoke (nothing owned, or the flush failed) commits nothing."""
    journal = Journal()
    consumer = FakeConsumer(journal, [])
    asyncio.run(RebalanceListener(Handler(), consumer).on_partitions_revoked(tps(1)))
    assert "commit" not in journal.kinds()


@pytest.mark.parametrize("error", [KafkaError("down"), RuntimeError("bug")])
def test_listener_never_raises_into_the_consumer(error):
    """A failing handler is logged, never raised: it would abort the rebalance."""
    handler = Handler(error=error)
    listener = RebalanceListener(handler, FakeConsumer(Journal(), []))

    asyncio.run(listener.on_partitions_revoked(tps(0)))
    asyncio.run(listener.on_partitions_assigned(tps(0)))

    assert handler.calls == [("revoke", [0]), ("assign", [0])]


def test_listener_drops_lost_partitions_without_a_revoke():
    """Lost partitions are dropped: no checkpoint, no commit (another member may own them)."""
    journal = Journal()
    handler = Handler()
    asyncio.run(RebalanceListener(handler, FakeConsumer(journal, [])).on_partitions_lost(tps(2)))
    assert handler.calls == [("drop", [2])]
    assert "commit" not in journal.kinds()


def test_listener_drives_partitions_through_a_rebalance():
    """Through the listener: assign pauses, revoke checkpoints and commits, the partition goes."""
    owner = Owner()
    listener = RebalanceListener(owner.partitions, owner.consumer)

    asyncio.run(listener.on_partitions_assigned(tps(0)))
    assert owner.partitions.restore_assigned(0.0)
    owner.partitions.owned[0].offset = 3
    asyncio.run(listener.on_partitions_revoked(tps(0)))

    assert owner.checkpoints.calls == [[0]]
    assert owner.consumer.committed == {0: 3}
    assert owner.partitions.owned == {}
