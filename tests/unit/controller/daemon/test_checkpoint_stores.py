"""Checkpoint stores: round trips, atomic replacement, chunking under alternating slots."""

# ruff: noqa: D102, ARG001, ARG002 - fakes mirror the signatures they replace

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass

import pytest
from daemon_fakes import config, interaction

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import (
    Checkpoint,
    CheckpointError,
    DirCheckpointStore,
    KafkaCheckpointStore,
)
from stopbandit.streams.codec import decode


def learned_core(n: int) -> ControllerCore:
    """A core that learned `n` interactions."""
    core = ControllerCore(config())
    for i in range(n):
        for key, value in interaction(i, em=float(i % 2)):
            event = decode(key, value)
            core.offer(event, event.ts)
    return core


def without_models(state: dict) -> dict:
    """A snapshot without the VW model bytes (VW does not re-serialise byte for byte)."""
    learner = {k: v for k, v in state["learner"].items() if not k.endswith("_model")}
    return {**state, "learner": learner}


def checkpoint_of(core: ControllerCore, offset: int, partition: int = 0) -> Checkpoint:
    """A checkpoint of `core` at `offset`."""
    return Checkpoint(
        topic="events",
        partition=partition,
        offset=offset,
        written_at=1.0,
        state=core.snapshot(),
        watermark_s=1234.5,
    )


def test_dir_store_round_trip_restores_the_same_core(tmp_path):
    """What is saved loads back to a core with the same snapshot, offset and watermark."""
    core = learned_core(20)
    store = DirCheckpointStore(tmp_path)

    store.save(checkpoint_of(core, 40))
    loaded = store.load("events", 0)

    assert loaded is not None
    assert (loaded.offset, loaded.watermark_s) == (40, 1234.5)
    restored = ControllerCore(config())
    restored.restore(loaded.state)
    assert without_models(restored.snapshot()) == without_models(core.snapshot())
    assert restored.learner.learned == 20
    rebuilt = {p.segment: (p.greedy, p.pmf) for p in restored.build_policies(5.0, force=True)}
    original = {p.segment: (p.greedy, p.pmf) for p in core.build_policies(5.0, force=True)}
    assert rebuilt == original
    assert (tmp_path / "events-0.json.gz").exists()


def test_dir_store_has_nothing_for_an_unknown_partition(tmp_path):
    """A partition never checkpointed loads as None."""
    assert DirCheckpointStore(tmp_path).load("events", 5) is None


def test_failed_write_leaves_the_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    """If writing fails before the rename, the old checkpoint is intact and no temp file stays."""
    store = DirCheckpointStore(tmp_path)
    store.save(checkpoint_of(learned_core(2), 4))

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(CheckpointError) as error:
        store.save(checkpoint_of(learned_core(3), 6))
    monkeypatch.undo()

    assert error.value.partition == 0
    assert store.load("events", 0).offset == 4
    assert [p.name for p in tmp_path.iterdir()] == ["events-0.json.gz"]


def test_a_file_of_another_partition_is_refused(tmp_path):
    """A checkpoint renamed onto another partition's path is rejected, not restored."""
    store = DirCheckpointStore(tmp_path)
    store.save(checkpoint_of(learned_core(1), 2, partition=1))
    (tmp_path / "events-1.json.gz").rename(tmp_path / "events-0.json.gz")

    with pytest.raises(CheckpointError, match="another partition"):
        store.load("events", 0)


def test_garbage_is_refused(tmp_path):
    """A corrupt file raises CheckpointError naming the partition."""
    (tmp_path / "events-0.json.gz").write_bytes(b"not gzip")
    with pytest.raises(CheckpointError, match=r"events\[0\]"):
        DirCheckpointStore(tmp_path).load("events", 0)


def test_encoding_is_gzip_json_with_the_documented_fields():
    """The document is gzip JSON with the fields the module docstring lists."""
    document = json.loads(gzip.decompress(checkpoint_of(learned_core(1), 2).encode()))
    assert set(document) == {
        "format",
        "topic",
        "partition",
        "offset",
        "written_at",
        "watermark_s",
        "state",
    }
    assert document["format"] == 1


def test_long_base64_strings_compress_apart_and_read_back_whole():
    """Digests and models (long base64) go in gzip members of their own; decode sees one JSON."""
    core = learned_core(3)
    for k in range(20_000):  # 160 KB of digests: past the length compressed apart
        core.join._joined.add(k + 1)
    checkpoint = checkpoint_of(core, 6)
    blob = checkpoint.encode()
    assert blob.count(b"\x1f\x8b\x08") >= 3  # before, the run itself, after
    assert blob == checkpoint.encode()  # the same state gives the same bytes
    decoded = Checkpoint.decode("events", 0, blob)
    assert decoded.state == json.loads(json.dumps(checkpoint.state))
    restored = ControllerCore(config())
    restored.restore(decoded.state)
    assert restored.join.has_joined("r-2")
    assert list(restored.join._joined.oldest_first()) == list(core.join._joined.oldest_first())


@dataclass
class Sent:
    """One message of the in-memory topic."""

    key: bytes
    value: bytes


class LogOutbox:
    """An outbox appending to an in-memory topic log; can fail after `fail_after` sends."""

    def __init__(self) -> None:
        self.log: list[Sent] = []
        self.fail_after: int | None = None
        self._queued: list[Sent] = []

    def send(self, message) -> None:
        self._queued.append(Sent(message.key, message.value))

    def flush(self, timeout_s: float) -> None:
        from stopbandit.streams.kafka import DeliveryError  # noqa: PLC0415

        for sent in self._queued:
            if self.fail_after is not None and len(self.log) >= self.fail_after:
                self._queued = []
                raise DeliveryError({"ckpt"}, 1, "broker gone")
            self.log.append(sent)
        self._queued = []


def kafka_store(outbox: LogOutbox, monkeypatch, chunk_bytes: int) -> KafkaCheckpointStore:
    """A Kafka store whose topic is `outbox.log`."""

    def read_topic(config, topic, *, start=None, timeout_s=30.0):
        begin = (start or {}).get(0, 0)
        records = [type("R", (), {"key": s.key, "value": s.value})() for s in outbox.log[begin:]]
        return records, {0: len(outbox.log)}

    monkeypatch.setattr("stopbandit.controller.daemon.checkpoint_stores.read_topic", read_topic)
    return KafkaCheckpointStore(
        config(kafka={"group_id": "g"}).kafka, outbox, "ckpt", chunk_bytes=chunk_bytes
    )


def test_kafka_store_chunks_and_restores(monkeypatch):
    """A checkpoint bigger than a chunk is split, keyed by group/topic/partition, reassembled."""
    outbox = LogOutbox()
    store = kafka_store(outbox, monkeypatch, chunk_bytes=128)
    core = learned_core(30)

    store.save(checkpoint_of(core, 60))

    keys = [s.key.decode() for s in outbox.log]
    assert keys[-1] == "g/events/0"
    assert len(keys) > 3
    assert all(k.startswith("g/events/0/1/") for k in keys[:-1])
    loaded = kafka_store(outbox, monkeypatch, chunk_bytes=128).load("events", 0)
    assert loaded is not None
    assert loaded.offset == 60
    assert loaded.state == core.snapshot()


def test_kafka_store_crash_mid_write_keeps_the_previous_checkpoint(monkeypatch):
    """Chunks of a new checkpoint go to the other slot, so a write cut short leaves the old one."""
    outbox = LogOutbox()
    store = kafka_store(outbox, monkeypatch, chunk_bytes=128)
    store.save(checkpoint_of(learned_core(5), 10))
    outbox.fail_after = len(outbox.log) + 2  # two chunks of the next one, then the broker dies

    with pytest.raises(CheckpointError):
        store.save(checkpoint_of(learned_core(30), 60))

    loaded = kafka_store(outbox, monkeypatch, chunk_bytes=128).load("events", 0)
    assert loaded is not None
    assert loaded.offset == 10


def test_kafka_store_alternates_slots_and_keeps_the_latest(monkeypatch):
    """Three saves in a row: the fold restores the last, whatever the chunk counts were."""
    outbox = LogOutbox()
    store = kafka_store(outbox, monkeypatch, chunk_bytes=256)
    for n, offset in ((30, 60), (2, 4), (10, 20)):
        store.save(checkpoint_of(learned_core(n), offset))

    loaded = kafka_store(outbox, monkeypatch, chunk_bytes=256).load("events", 0)

    assert loaded is not None
    assert loaded.offset == 20
    assert loaded.state["learner"]["learned"] == 10
