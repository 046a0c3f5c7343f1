"""What a partition starts from: a checkpoint, a fresh core, or a refusal; never a traceback."""

# ruff: noqa: D102 - the stand-ins implement protocols documented in the daemon's modules

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pytest
from daemon_fakes import (
    TOPIC,
    FakeConsumer,
    FakeProducer,
    FakeStore,
    Journal,
    config,
    interaction,
)
from kafka import TopicPartition
from structlog.testing import capture_logs

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import (
    Checkpoint,
    CorruptCheckpointError,
    DirCheckpointStore,
)
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.partitions import Partitions
from stopbandit.controller.daemon.publish import Publisher
from stopbandit.controller.daemon.restoring import Restorer
from stopbandit.streams.codec import decode
from stopbandit.streams.join import Interaction
from stopbandit.streams.kafka import Outbox


def tps(*numbers):
    """TopicPartitions of the events topic."""
    return {TopicPartition(TOPIC, n) for n in numbers}


def learned_core(cfg, *requests):
    """A core of `cfg` that learned the interactions of `requests`."""
    core = ControllerCore(cfg)
    for i in requests:
        for key, value in interaction(i):
            event = decode(key, value)
            core.offer(event, event.ts)
    return core


class FakeLogOffsets:
    """The log's ends and the group's commits, as a test sets them."""

    def __init__(self, *, committed=None, ends=None, beginnings=None):
        self.committed_offsets = committed or {}
        self.ends = ends or {}
        self.beginnings = beginnings or {}

    def committed(self, partition):
        return self.committed_offsets.get(partition.partition)

    def beginning(self, partition):
        return self.beginnings.get(partition.partition, 0)

    def beyond_end(self, partition, offset):
        end = self.ends.get(partition.partition)
        return end if end is not None and offset > end else None


class CorruptStore(FakeStore):
    """Checkpoints in a dict; the partitions in `corrupt` have none valid."""

    def __init__(self, journal, corrupt=()):
        super().__init__(journal)
        self.corrupt = set(corrupt)

    def load(self, topic, partition, *, max_segments=None):
        if partition in self.corrupt:
            raise CorruptCheckpointError(topic, partition, "no valid copy (bit flipped)")
        return super().load(topic, partition, max_segments=max_segments)


class Owner:
    """Partitions over fakes (three partitions), with the fakes."""

    def __init__(self, *, store=None, offsets=None, **checkpoint):
        self.config = config(checkpoint={"interval_s": 5.0, **checkpoint})
        self.journal = Journal()
        self.consumer = FakeConsumer(self.journal, [], (0, 1, 2))
        self.store = store or CorruptStore(self.journal)
        self.metrics = Metrics()
        publisher = Publisher(self.config, Outbox(FakeProducer(self.journal)), self.metrics)
        self.partitions = Partitions(
            self.config,
            self.consumer,
            self.store,
            publisher,
            self.metrics,
            checkpoint=lambda _: {},
            log_offsets=offsets,
        )

    def save(self, partition, offset, *requests, **changes):
        """Put a checkpoint of a core that learned `requests` in the store."""
        state = learned_core(self.config, *requests).snapshot()
        checkpoint = Checkpoint(TOPIC, partition, offset, 1.0, state, 1000.0)
        self.store.saved[partition] = replace(checkpoint, **changes)

    def sample(self, name, labels=None):
        """A sample of the metrics' registry."""
        return self.metrics.registry.get_sample_value(name, labels or {})

    def refused(self, partition, reason):
        """The refused gauge of one partition and reason."""
        labels = {"partition": str(partition), "reason": reason}
        return self.sample("stopbandit_checkpoint_refused", labels)


def events(logs, name):
    """The captured log events of one name."""
    return [e for e in logs if e["event"] == name]


def test_a_corrupt_partition_is_refused_and_the_others_are_consumed():
    """No valid copy of partition 1: it stays paused with a metric and a fix; 0 and 2 go on."""
    owner = Owner(store=CorruptStore(Journal(), corrupt={1}))
    owner.save(0, 4, 1, 2)
    partitions = owner.partitions
    partitions.assign(tps(0, 1, 2))

    with capture_logs() as logs:
        assert partitions.restore_assigned(0.0)

    assert sorted(partitions.owned) == [0, 2]
    assert partitions.owned[0].core.learner.learned == 2
    assert owner.consumer.paused == {1}
    assert not partitions.restored
    partitions.published()
    assert not partitions.ready
    assert owner.refused(1, "corrupt") == 1
    assert owner.refused(1, "arms") == 0
    [refused] = events(logs, "partition.refused")
    assert refused["log_level"] == "error"
    assert refused["partition"] == 1
    assert "bit flipped" in refused["detail"]
    assert "stopbandit checkpoint reset 1" in refused["fix"]


def test_a_refused_partition_is_retried_slowly_and_restored_once_fixed():
    """After an operator's reset (a valid checkpoint), the next retry restores it, gauge gone."""
    store = CorruptStore(Journal(), corrupt={0})
    owner = Owner(store=store)
    partitions = owner.partitions
    partitions.assign(tps(0))
    assert not partitions.restore_assigned(0.0)

    store.corrupt.clear()  # `stopbandit checkpoint reset 0` wrote a fresh checkpoint
    owner.save(0, 7)
    assert not partitions.restore_assigned(1.0)  # within the refusal's backoff (5 s)
    assert partitions.restore_assigned(5.0)

    assert partitions.owned[0].offset == 7
    assert partitions.restored
    assert owner.refused(0, "corrupt") is None


def test_on_corrupt_reset_starts_fresh_with_an_alarm():
    """on_corrupt reset: the partition starts empty at the consumer's position, counted, logged."""
    owner = Owner(store=CorruptStore(Journal(), corrupt={1}), on_corrupt="reset")
    partitions = owner.partitions
    partitions.assign(tps(1))

    with capture_logs() as logs:
        assert partitions.restore_assigned(0.0)

    state = partitions.owned[1]
    assert (state.core.learner.learned, state.checkpointed_offset) == (0, None)
    assert partitions.restored
    labels = {"partition": "1", "reason": "corrupt"}
    assert owner.sample("stopbandit_checkpoint_resets_total", labels) == 1
    [reset] = events(logs, "checkpoint.reset")
    assert reset["log_level"] == "error"


def test_a_checkpoint_of_other_arms_is_refused_naming_both():
    """Arms changed: refused (not a traceback), the detail names both lists and the migration."""
    owner = Owner()
    other = config(arms=[0.5, 0.9, 1.0], checkpoint={"interval_s": 5.0})
    state = learned_core(other, 1).snapshot()
    owner.store.saved[0] = Checkpoint(TOPIC, 0, 2, 1.0, state, 1000.0)
    owner.partitions.assign(tps(0))

    with capture_logs() as logs:
        assert not owner.partitions.restore_assigned(0.0)

    assert owner.refused(0, "arms") == 1
    [refused] = events(logs, "partition.refused")
    assert "[0.5, 0.9, 1.0]" in refused["detail"]
    assert str(list(owner.config.arms)) in refused["detail"]
    assert "Changing the arms" in refused["detail"]


def test_a_state_that_does_not_restore_is_refused_not_raised():
    """A structurally valid checkpoint whose VW model bytes are garbage: refused as corrupt."""
    owner = Owner()
    owner.save(0, 4, 1)
    owner.store.saved[0].state["learner"]["em_model"] = "bm90IGEgbW9kZWw="
    owner.partitions.assign(tps(0))

    assert not owner.partitions.restore_assigned(0.0)

    assert owner.refused(0, "corrupt") == 1
    assert "does not restore" in owner.partitions.refused[0].detail


@pytest.mark.parametrize("on_corrupt", ["refuse", "reset"])
def test_a_missing_checkpoint_behind_committed_offsets_is_not_silently_fresh(on_corrupt):
    """Deleted checkpoint, committed offsets: refused, or reset with an alarm; never info-only."""
    owner = Owner(offsets=FakeLogOffsets(committed={2: 9}), on_corrupt=on_corrupt)
    owner.partitions.assign(tps(0, 2))

    with capture_logs() as logs:
        owner.partitions.restore_assigned(0.0)

    assert 0 in owner.partitions.owned  # never committed: a fresh partition, as before
    levels = {e["event"]: e["log_level"] for e in logs}
    if on_corrupt == "refuse":
        assert 2 not in owner.partitions.owned
        assert owner.refused(2, "missing") == 1
        assert levels["partition.refused"] == "error"
    else:
        assert owner.partitions.owned[2].core.learner.learned == 0
        labels = {"partition": "2", "reason": "missing"}
        assert owner.sample("stopbandit_checkpoint_resets_total", labels) == 1
        assert levels["checkpoint.reset"] == "error"


def test_a_fallback_is_counted_and_logged():
    """A store that used the older copy says so; the restore counts and logs it, then goes on."""
    owner = Owner()
    owner.save(0, 4, 1, fell_back="generation 2 slot 0: SHA-256 mismatch")
    owner.partitions.assign(tps(0))

    with capture_logs() as logs:
        assert owner.partitions.restore_assigned(0.0)

    assert owner.sample("stopbandit_checkpoint_fallbacks_total", {"partition": "0"}) == 1
    [fallback] = events(logs, "checkpoint.fallback")
    assert fallback["log_level"] == "warning"
    assert "SHA-256" in fallback["skipped"]


def test_an_offset_past_the_log_end_is_refused():
    """Topic recreated below the checkpoint: refused with offset_ahead, never a silent skip."""
    owner = Owner(offsets=FakeLogOffsets(ends={0: 3}))
    owner.save(0, 40, 1)
    owner.partitions.assign(tps(0))

    with capture_logs() as logs:
        assert not owner.partitions.restore_assigned(0.0)

    assert owner.refused(0, "offset_ahead") == 1
    [refused] = events(logs, "partition.refused")
    assert "past the log end 3" in refused["detail"]
    assert "on_offset_ahead: reset_offsets" in refused["fix"]


def test_reset_offsets_keeps_the_state_and_consumes_from_the_beginning():
    """on_offset_ahead reset_offsets: the learned state stays, the partition is read from 0."""
    owner = Owner(
        offsets=FakeLogOffsets(ends={0: 3}, beginnings={0: 0}), on_offset_ahead="reset_offsets"
    )
    owner.save(0, 40, 1, 2)
    owner.partitions.assign(tps(0))

    with capture_logs() as logs:
        assert owner.partitions.restore_assigned(0.0)

    state = owner.partitions.owned[0]
    assert (state.offset, state.core.learner.learned) == (0, 2)
    assert state.dirty  # the checkpoint's offset (40) is not where it stands: checkpoint soon
    assert ("seek", (0, 0)) in owner.journal.entries
    labels = {"partition": "0", "reason": "offset_ahead"}
    assert owner.sample("stopbandit_checkpoint_resets_total", labels) == 1
    assert events(logs, "checkpoint.offset_ahead")[0]["log_level"] == "error"


def test_a_fresh_partition_whose_committed_offset_is_past_the_end_is_refused():
    """No checkpoint, committed offset past the end too (e.g. both deleted with the topic)."""
    owner = Owner(offsets=FakeLogOffsets(ends={0: 3}), on_corrupt="reset")
    owner.consumer.offsets[0] = 50  # where the group's commit puts the consumer
    owner.partitions.assign(tps(0))

    assert not owner.partitions.restore_assigned(0.0)

    assert owner.refused(0, "offset_ahead") == 1


def test_revoking_a_refused_partition_clears_its_gauge():
    """A refused partition that moves away is no longer this replica's alarm."""
    owner = Owner(store=CorruptStore(Journal(), corrupt={0}))
    owner.partitions.assign(tps(0))
    owner.partitions.restore_assigned(0.0)
    assert owner.refused(0, "corrupt") == 1

    owner.partitions.revoke(tps(0))

    assert owner.refused(0, "corrupt") is None
    assert owner.partitions.restored


def test_dir_store_corruptions_end_as_refusals_through_the_real_store(tmp_path):
    """The dir store's wrong structure, truncation, emptiness: each a refusal of its partition."""
    owner = Owner(store=DirCheckpointStore(tmp_path))
    store = owner.store
    good = learned_core(owner.config, 1)
    for partition in (0, 1, 2):
        store.save(Checkpoint(TOPIC, partition, 2, 1.0, good.snapshot(), 1000.0))
    document = json.loads(gzip.decompress(store.path(TOPIC, 0).read_bytes()))
    del document["state"]["learner"]
    store.path(TOPIC, 0).write_bytes(gzip.compress(json.dumps(document).encode()))
    store.path(TOPIC, 1).write_bytes(store.path(TOPIC, 1).read_bytes()[:50])
    owner.partitions.assign(tps(0, 1, 2))

    assert owner.partitions.restore_assigned(0.0)

    assert sorted(owner.partitions.owned) == [2]
    assert owner.refused(0, "corrupt") == 1
    assert owner.refused(1, "corrupt") == 1
    assert "state.learner" in owner.partitions.refused[0].detail


def test_a_checkpoint_over_the_limit_keeps_the_most_recent_and_counts_the_rest(tmp_path):
    """The limit's most recent restored, read bounded; the others logged, counted when forgotten."""
    store = DirCheckpointStore(tmp_path)
    big = ControllerCore(config())
    for i, segment in enumerate("abcdeb"):  # least recently learned first: a c d e b
        big.learn(Interaction(f"r{i}", segment, {"task": "t"}, 1.0, 1.0, 0, 1.0, 500, 0, 0))
    store.save(Checkpoint(TOPIC, 0, 6, 1.0, big.snapshot(), 1000.0))
    cfg = config(limits={"max_segments": 2})
    metrics = Metrics()
    restorer = Restorer(cfg, store, FakeConsumer(Journal(), [], (0,)), None, metrics)

    with capture_logs() as logs:
        plan = restorer.plan(0)

    assert plan.core.segments == ["b", "e"]
    assert plan.checkpoint is not None
    assert plan.checkpoint.state["learner"]["stats"]["a"] is None  # never built
    assert plan.core.learner.stats["b"].to_json() == big.learner.stats["b"].to_json()
    [evicted] = events(logs, "checkpoint.segments_evicted")
    assert (evicted["partition"], evicted["kept"], evicted["evicted"]) == (0, 2, 3)
    publisher = Publisher(cfg, Outbox(FakeProducer(Journal())), metrics)
    publisher.build([(plan.core, True)], 2000.0, with_fallback=True)
    assert metrics.registry.get_sample_value("stopbandit_segments_evicted_total") == 3
