"""Checkpoint stores: round trips, atomic replacement, chunking under alternating slots."""

# ruff: noqa: D102, ARG001, ARG002 - fakes mirror the signatures they replace

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass

import pytest
from daemon_fakes import config, interaction
from hypothesis import given, settings
from hypothesis import strategies as st

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import (
    Checkpoint,
    CheckpointError,
    CorruptCheckpointError,
    DirCheckpointStore,
    KafkaCheckpointStore,
)
from stopbandit.streams.codec import decode
from stopbandit.streams.join import Interaction


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
    value: bytes | None


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
    assert keys[-1] == "g/events/0/1"  # slot 1's manifest, after its chunks
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


# -- corrupt and foreign state: never a traceback, the other copy when there is one ------------


def _document(blob: bytes) -> dict:
    return json.loads(gzip.decompress(blob))


def _gzip_json(document: dict) -> bytes:
    return gzip.compress(json.dumps(document).encode())


def _without_learner(blob: bytes) -> bytes:
    document = _document(blob)
    del document["state"]["learner"]
    return _gzip_json(document)


def _without_offset(blob: bytes) -> bytes:
    document = _document(blob)
    del document["offset"]
    return _gzip_json(document)


def _of_format_2(blob: bytes) -> bytes:
    return _gzip_json({**_document(blob), "format": 2})


def _bit_flipped(blob: bytes) -> bytes:
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x10
    return bytes(flipped)


CORRUPTIONS = {
    "missing learner": (_without_learner, r"state\.learner: Field required"),
    "missing offset": (_without_offset, r"offset: Field required"),
    "format 2": (_of_format_2, r"format: Input should be 1"),
    "truncated": (lambda blob: blob[: len(blob) // 2], "unreadable"),
    "empty": (lambda _: b"", "empty"),
    "bit flipped": (_bit_flipped, "unreadable"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_dir_store_a_corrupt_only_file_is_a_corrupt_checkpoint_error(tmp_path, name):
    """Each corruption of the one file is a CorruptCheckpointError with the partition and reason."""
    corrupt, reason = CORRUPTIONS[name]
    store = DirCheckpointStore(tmp_path)
    store.save(checkpoint_of(learned_core(2), 4, partition=3))
    path = store.path("events", 3)
    path.write_bytes(corrupt(path.read_bytes()))

    with pytest.raises(CorruptCheckpointError) as error:
        DirCheckpointStore(tmp_path).load("events", 3)

    assert error.value.partition == 3
    assert "events[3]" in str(error.value)
    assert re.search(reason, error.value.reason), error.value.reason


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_dir_store_falls_back_to_the_previous_file(tmp_path, name):
    """With the newest file corrupt, the one kept back loads, and says why."""
    corrupt, _ = CORRUPTIONS[name]
    store = DirCheckpointStore(tmp_path)
    store.save(checkpoint_of(learned_core(2), 4))
    store.save(checkpoint_of(learned_core(3), 6))
    path = store.path("events", 0)
    path.write_bytes(corrupt(path.read_bytes()))

    loaded = DirCheckpointStore(tmp_path).load("events", 0)

    assert loaded is not None
    assert loaded.offset == 4
    assert loaded.fell_back is not None
    assert loaded.fell_back.startswith("events-0.json.gz: ")


def test_dir_store_keeps_one_back_and_replaces_the_broken_one_after_a_fallback(tmp_path):
    """Saves rotate the newest into .prev; after a fallback the good .prev is kept."""
    store = DirCheckpointStore(tmp_path)
    for offset in (2, 4, 6):
        store.save(checkpoint_of(learned_core(1), offset))
    assert Checkpoint.decode("events", 0, store.previous_path("events", 0).read_bytes()).offset == 4
    store.path("events", 0).write_bytes(b"garbage")

    reopened = DirCheckpointStore(tmp_path)
    assert reopened.load("events", 0).offset == 4
    reopened.save(checkpoint_of(learned_core(1), 8))

    assert reopened.load("events", 0).offset == 8
    assert reopened.load("events", 0).fell_back is None
    assert Checkpoint.decode("events", 0, store.previous_path("events", 0).read_bytes()).offset == 4


def test_dir_store_a_crash_between_the_renames_loads_the_previous_file(tmp_path):
    """Newest file gone, previous one there (killed between the renames): the previous loads."""
    store = DirCheckpointStore(tmp_path)
    store.save(checkpoint_of(learned_core(1), 2))
    store.save(checkpoint_of(learned_core(1), 4))
    store.path("events", 0).unlink()

    loaded = DirCheckpointStore(tmp_path).load("events", 0)

    assert (loaded.offset, loaded.fell_back) == (2, "events-0.json.gz: missing")


def test_dir_store_cleans_temporaries_left_by_a_crash(tmp_path):
    """`.ckpt-*` files (a kill during the fsync) are removed at start, checkpoints kept."""
    store = DirCheckpointStore(tmp_path)
    store.save(checkpoint_of(learned_core(1), 2))
    (tmp_path / ".ckpt-abc123").write_bytes(b"half a checkpoint")
    (tmp_path / ".ckpt-def456").write_bytes(b"")

    assert store.clean_temporaries() == 2

    assert sorted(p.name for p in tmp_path.iterdir()) == ["events-0.json.gz"]
    assert store.load("events", 0).offset == 2


def _two_saves(monkeypatch) -> tuple[LogOutbox, KafkaCheckpointStore]:
    outbox = LogOutbox()
    store = kafka_store(outbox, monkeypatch, chunk_bytes=256)
    store.save(checkpoint_of(learned_core(2), 4))  # generation 1, slot 1
    store.save(checkpoint_of(learned_core(3), 6))  # generation 2, slot 0
    return outbox, store


def _put(outbox: LogOutbox, key: str, value: bytes | None) -> None:
    outbox.log.append(Sent(key.encode(), value))


KAFKA_CORRUPTIONS = {
    "manifest not JSON": ("g/events/0/0", b"{not json", "manifest invalid"),
    "manifest missing chunks": (
        "g/events/0/0",
        json.dumps({"format": 1, "generation": 2, "slot": 0, "sha256": "0" * 64, "offset": 6}),
        r"chunks: Field required",
    ),
    "chunk with garbage header": ("g/events/0/0/0", b"xx\nrest", "no generation header"),
    "tombstone where the manifest was": ("g/events/0/0", None, r"deleted \(tombstone\)"),
}


@pytest.mark.parametrize("name", sorted(KAFKA_CORRUPTIONS))
def test_kafka_store_falls_back_to_the_other_slot(monkeypatch, name):
    """A broken newest slot (manifest or chunk) loads the other slot's checkpoint, saying why."""
    key, value, reason = KAFKA_CORRUPTIONS[name]
    outbox, _ = _two_saves(monkeypatch)
    _put(outbox, key, value.encode() if isinstance(value, str) else value)

    loaded = kafka_store(outbox, monkeypatch, chunk_bytes=256).load("events", 0)

    assert loaded is not None
    assert loaded.offset == 4
    assert re.search(reason, loaded.fell_back), loaded.fell_back


@pytest.mark.parametrize("name", sorted(KAFKA_CORRUPTIONS))
def test_kafka_store_both_slots_broken_is_a_corrupt_checkpoint_error(monkeypatch, name):
    """Both slots damaged: CorruptCheckpointError with each reason (None if both deleted)."""
    key, value, reason = KAFKA_CORRUPTIONS[name]
    outbox, _ = _two_saves(monkeypatch)
    for slot in (0, 1):
        raw = value.encode() if isinstance(value, str) else value
        _put(outbox, key.replace("/0/0", f"/0/{slot}", 1), raw)
    reopened = kafka_store(outbox, monkeypatch, chunk_bytes=256)

    if value is None:
        assert reopened.load("events", 0) is None  # deleted: restoring.py weighs the commits
        return
    with pytest.raises(CorruptCheckpointError) as error:
        reopened.load("events", 0)
    assert error.value.partition == 0
    assert re.search(reason, error.value.reason), error.value.reason


def test_kafka_store_skips_keys_that_are_not_utf_8(monkeypatch):
    """A non-UTF-8 key on the checkpoint topic is someone else's: skipped, counted, no crash."""
    outbox, _ = _two_saves(monkeypatch)
    outbox.log.insert(0, Sent(b"\xff\xfe g/events/0", b"whatever"))
    _put(outbox, "irrelevant", b"x")
    outbox.log.append(Sent(b"\xc3\x28", None))

    reopened = kafka_store(outbox, monkeypatch, chunk_bytes=256)
    loaded = reopened.load("events", 0)

    assert (loaded.offset, loaded.fell_back) == (6, None)
    assert reopened.foreign_keys == 2


def test_kafka_store_after_a_fallback_writes_over_the_broken_slot(monkeypatch):
    """The next save goes to the broken slot, so the good one survives a crash mid-write."""
    outbox, _ = _two_saves(monkeypatch)
    _put(outbox, "g/events/0/0", b"{not json")  # slot 0 (generation 2) broken
    store = kafka_store(outbox, monkeypatch, chunk_bytes=256)
    assert store.load("events", 0).offset == 4  # from slot 1
    outbox.fail_after = len(outbox.log) + 1  # the next save dies after one chunk

    with pytest.raises(CheckpointError):
        store.save(checkpoint_of(learned_core(30), 60))

    assert outbox.log[-1].key.startswith(b"g/events/0/0/")  # the broken slot, not slot 1
    assert kafka_store(outbox, monkeypatch, chunk_bytes=256).load("events", 0).offset == 4
    outbox.fail_after = None
    store.save(checkpoint_of(learned_core(4), 8))
    assert kafka_store(outbox, monkeypatch, chunk_bytes=256).load("events", 0).offset == 8


def test_kafka_store_reads_a_manifest_of_the_single_key_layout(monkeypatch):
    """A checkpoint written before per-slot manifests (manifest under the base key) loads."""
    outbox = LogOutbox()
    blob = checkpoint_of(learned_core(2), 4).encode()
    _put(outbox, "g/events/0/1/0", b"1\n" + blob)
    manifest = {
        "format": 1,
        "generation": 1,
        "slot": 1,
        "chunks": 1,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "offset": 4,
    }
    _put(outbox, "g/events/0", json.dumps(manifest).encode())
    store = kafka_store(outbox, monkeypatch, chunk_bytes=256)

    assert store.load("events", 0).offset == 4
    store.save(checkpoint_of(learned_core(3), 6))  # generation 2 goes to slot 0
    assert outbox.log[-1].key == b"g/events/0/0"
    assert kafka_store(outbox, monkeypatch, chunk_bytes=256).load("events", 0).offset == 6


_VALID_BLOB = Checkpoint("events", 0, 2, 1.0, ControllerCore(config()).snapshot(), 1.0).encode()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decode_of_any_damage_is_a_checkpoint_or_a_corrupt_checkpoint_error(data):
    """Random bytes, or a valid checkpoint cut, flipped or spliced: never another exception."""
    blob = _VALID_BLOB
    damage = data.draw(st.sampled_from(["random", "cut", "flip", "splice"]))
    if damage == "random":
        blob = data.draw(st.binary(max_size=2048))
    elif damage == "cut":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif damage == "flip":
        at = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([blob[at] ^ data.draw(st.integers(1, 255))]) + blob[at + 1 :]
    else:
        at = data.draw(st.integers(0, len(blob)))
        blob = blob[:at] + data.draw(st.binary(min_size=1, max_size=64)) + blob[at:]
    outcome = _decoded_or_error(blob)
    assert isinstance(outcome, Checkpoint) or (outcome.partition == 0 and outcome.reason)


def _decoded_or_error(blob: bytes) -> Checkpoint | CorruptCheckpointError:
    try:
        return Checkpoint.decode("events", 0, blob)
    except CorruptCheckpointError as error:
        return error


# -- bounded loads: one copy, at most max_segments of it --------------------------------------


def _core_of_segments(segments: str) -> ControllerCore:
    core = ControllerCore(config())
    for i, segment in enumerate(segments):
        core.learn(Interaction(f"r{i}", segment, {"task": "t"}, 1.0, 1.0, 0, 1.0, 500, 0, 0))
    return core


@pytest.mark.parametrize("kind", ["dir", "kafka"])
def test_load_decodes_the_newest_valid_copy_only_and_at_most_max_segments(
    tmp_path, monkeypatch, kind
):
    """Not the older copy while the newest is valid; of the newest, the limit's most recent."""
    outbox = LogOutbox()

    def opened() -> DirCheckpointStore | KafkaCheckpointStore:
        return (
            DirCheckpointStore(tmp_path) if kind == "dir" else kafka_store(outbox, monkeypatch, 256)
        )

    store = opened()
    store.save(checkpoint_of(_core_of_segments("ab"), 2))
    store.save(checkpoint_of(_core_of_segments("abcdb"), 5))
    decoded: list[int] = []
    decode = Checkpoint.decode

    def counted(topic, partition, blob, **limit):
        decoded.append(partition)
        return decode(topic, partition, blob, **limit)

    monkeypatch.setattr(Checkpoint, "decode", counted)
    reader = opened()

    loaded = reader.load("events", 0, max_segments=2)

    assert loaded is not None
    assert loaded.offset == 5
    assert decoded == [0]
    stats = loaded.state["learner"]["stats"]  # the others stand as None, for the learner to evict
    assert {s: value is not None for s, value in stats.items()} == {
        "a": False,
        "b": True,
        "c": False,
        "d": True,
    }
    assert len(reader.copies("events", 0)) == 2  # what `checkpoint inspect` lists: both, whole
