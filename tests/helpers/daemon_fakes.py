"""In-memory stand-ins for kafka-python and the checkpoint store, journaling every call."""

# ruff: noqa: D102, ARG002 - the fakes mirror kafka-python signatures, documented there

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.future import Future

from stopbandit.controller.config import load_config
from stopbandit.streams.codec import encode
from stopbandit.streams.events import Decision, Outcome

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from stopbandit.controller.daemon.checkpoint_stores import Checkpoint

TOPIC = "events"
SEGMENT = "math/gsm8k/r1"


@dataclass(frozen=True)
class Record:
    """The fields of a kafka-python ConsumerRecord the daemon reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def config(**overrides: Any):
    """A daemon config for the fakes (topics named plainly, short intervals)."""
    settings: dict[str, Any] = {
        "kafka": {"events_topic": TOPIC, "policies_topic": "policies", "dlq_topic": "dlq"},
        "publish": {"interval_s": 1.0},
        "checkpoint": {"interval_s": 5.0},
    }
    settings.update(overrides)
    return load_config(None, **settings)


def interaction(
    i: int, arm: float = 1.0, em: float = 1.0, counterfactual: Any = None
) -> list[tuple[bytes, bytes]]:
    """The decision and outcome messages of request `i` (key, value).

    `counterfactual` goes into the outcome as given, valid or not (a node's bytes).
    """
    request_id = f"r-{i}"
    decision = Decision(
        v=1,
        request_id=request_id,
        ts=1000.0 + i,
        segment=SEGMENT,
        context={"task": "gsm8k"},
        threshold=arm,
        probability=1.0,
        policy_version=0,
    )
    outcome = Outcome(v=1, request_id=request_id, ts=1000.5 + i, segment=SEGMENT, em=em, tokens=900)
    outcome_value = encode(outcome)
    if counterfactual is not None:
        document = json.loads(outcome_value)
        document["counterfactual"] = counterfactual
        outcome_value = json.dumps(document).encode()
    return [(SEGMENT.encode(), encode(decision)), (SEGMENT.encode(), outcome_value)]


def done() -> Future:
    """A kafka-python future that already succeeded."""
    future = Future()
    future.success(None)
    return future


@dataclass
class Journal:
    """Every side effect, in order, as (what, detail) pairs."""

    entries: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, what: str, detail: Any = None) -> None:
        self.entries.append((what, detail))

    def kinds(self) -> list[str]:
        return [what for what, _ in self.entries]


class FakeProducer:
    """Accepts every send; `flush` makes them visible in `sent`."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self._queued: list[tuple[str, bytes | None, bytes | None]] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> Future:
        self._queued.append((topic, key, value))
        return done()

    def flush(self, timeout: float | None = None) -> None:
        self.journal.add("flush", [t for t, _, _ in self._queued])
        self.sent += self._queued
        self._queued = []

    def close(self, timeout: float | None = None) -> None:
        self.journal.add("producer.close")


class FakeConsumer:
    """Assigns `partitions` on the first poll, then returns the scripted batches in turn.

    It mirrors controller.daemon.consumer.Consumer (tests/unit/controller/daemon/test_consumer.py).
    """

    def __init__(
        self,
        journal: Journal,
        batches: list[dict[int, list[tuple[bytes | None, bytes | None]]]],
        partitions: tuple[int, ...] = (0,),
    ) -> None:
        self.journal = journal
        self.listener: Any = None
        self.partitions = [TopicPartition(TOPIC, p) for p in partitions]
        self.offsets = {tp.partition: 0 for tp in self.partitions}
        self._batches = list(batches)
        self._assigned = False
        self.paused: set[int] = set()
        self.committed: dict[int, int] = {}
        self.on_poll: Any = None

    def subscribe(self, topics: Sequence[str], *, listener: object) -> None:
        self.journal.add("subscribe", list(topics))
        self.listener = listener

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Record]]:
        if self.on_poll is not None:
            self.on_poll()
        if not self._assigned:
            self._assigned = True
            asyncio.run(self.listener.on_partitions_assigned(set(self.partitions)))
            return {}
        if not self._batches:
            return {}
        batch = self._batches.pop(0)
        records: dict[Any, list[Record]] = {}
        for partition, messages in batch.items():
            if partition in self.paused:
                continue
            start = self.offsets[partition]
            records[TopicPartition(TOPIC, partition)] = [
                Record(TOPIC, partition, start + i, key, value)
                for i, (key, value) in enumerate(messages)
            ]
            self.offsets[partition] = start + len(messages)
        return records

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tp.partition for tp in tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tp.partition for tp in tps)

    def seek(self, tp: TopicPartition, offset: int, /) -> None:
        self.journal.add("seek", (tp.partition, offset))
        self.offsets[tp.partition] = offset

    def position(self, tp: TopicPartition, /) -> int:
        return self.offsets[tp.partition]

    def highwater(self, tp: TopicPartition, /) -> int:
        return self.offsets[tp.partition]

    def commit(self, offsets: Mapping[Any, Any], /, timeout_ms: int | None = None) -> None:
        detail = {tp.partition: meta.offset for tp, meta in offsets.items()}
        self.committed.update(detail)
        self.journal.add("commit", detail)

    def commit_async(self, offsets: Mapping[Any, Any], /) -> Future:
        self.commit(offsets)
        return done()

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.journal.add("consumer.close")


class FakeStore:
    """Checkpoints in a dict."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.saved: dict[int, Checkpoint] = {}

    def save(self, checkpoint: Checkpoint) -> None:
        self.journal.add("checkpoint", (checkpoint.partition, checkpoint.offset))
        self.saved[checkpoint.partition] = checkpoint

    def load(
        self, topic: str, partition: int, *, max_segments: int | None = None
    ) -> Checkpoint | None:
        # Whole: the core's restore keeps max_segments of them, as it would of any checkpoint.
        return self.saved.get(partition)

    def close(self) -> None:
        pass


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s
