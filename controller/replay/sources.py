"""Where replay's events come from: JSON-lines logs, or a range of the events topic.

The topic edge is thin: assign every partition, seek to the start of the
range, poll to its end, and hand the raw records on, merged across
partitions by record timestamp (then partition, offset) so a replay of the
same range is the same computation every time. The end of an open range is
the fetch response's high-water mark, not `end_offsets` (Tansu answers the
latter short of the end when a batch held several records).

Time bounds select records by their own timestamp, in [from, to). The
broker's `offsets_for_times` answer only says where to start, and where to
stop when it lies past the start; otherwise a partition is read to its
high-water mark and filtered (Tansu 0.6 answers offset 0 whatever the time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from kafka import KafkaConsumer, TopicPartition

from stopbandit.controller.replay.feed import RawEvent
from stopbandit.streams.files import read_event_lines

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from stopbandit.streams.files import LogDamage

log = structlog.get_logger(__name__)

_POLL_MS = 200


def file_events(
    paths: Iterable[Path], on_damage: Callable[[LogDamage], None] | None = None
) -> Iterator[RawEvent]:
    """Every non-blank line of the logs (plain or .gz), in order, as raw events without key.

    A log that breaks off (see `read_event_lines`) raises, or goes to `on_damage`.
    """
    for path, line, value in read_event_lines(paths, on_damage):
        yield RawEvent(source=path, position=line, key=None, value=value)


@dataclass(frozen=True)
class RangeBound:
    """One end of a topic range: an offset (same in every partition) or a time."""

    offset: int | None = None
    timestamp_ms: int | None = None

    @classmethod
    def parse(cls, text: str) -> RangeBound:
        """An integer offset, or an ISO 8601 time (UTC when it has no zone).

        Raises:
            ValueError: neither.
        """
        if text.strip().lstrip("-").isdigit():
            offset = int(text)
            if offset < 0:
                raise ValueError(f"offset {offset} must be >= 0")
            return cls(offset=offset)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither an offset nor an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls(timestamp_ms=int(moment.timestamp() * 1000))


@dataclass
class TopicRange:
    """The records of a range, merged; where each segment's events live; where reading stopped."""

    events: list[RawEvent] = field(default_factory=list)
    partition_of: dict[str, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)


def _resolve(
    consumer: KafkaConsumer, partitions: list[TopicPartition], bound: RangeBound | None
) -> dict[TopicPartition, int | None]:
    # None: the end of the partition, known only from a fetch's high-water mark.
    if bound is None:
        return dict.fromkeys(partitions)
    if bound.offset is not None:
        return dict.fromkeys(partitions, bound.offset)
    found = consumer.offsets_for_times(dict.fromkeys(partitions, bound.timestamp_ms))
    return {tp: (found[tp].offset if found.get(tp) is not None else None) for tp in partitions}


def read_topic_range(
    bootstrap_servers: list[str],
    topic: str,
    start: RangeBound | None,
    end: RangeBound | None,
    *,
    timeout_s: float = 60.0,
    consumer_settings: dict[str, Any] | None = None,
) -> TopicRange:
    """Read offsets [start, end) of every partition of `topic` (the end excluded).

    Args:
        bootstrap_servers: Brokers to connect to.
        topic: The events topic.
        start: First offset or time (None: the beginning).
        end: Offset or time to stop before (None: the end when reading starts).
        timeout_s: Give up when the range is not read by then.
        consumer_settings: Extra kafka-python settings (security).

    Returns:
        The merged records and, per partition, the next offset after the range.

    Raises:
        TimeoutError: the range was not read within `timeout_s`.
        ValueError: the topic does not exist.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **(consumer_settings or {})
    )
    try:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise ValueError(f"topic {topic!r} does not exist")
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        starts = _resolve(consumer, partitions, start)
        ends = _resolve(consumer, partitions, end)
        for tp in partitions:
            if start is None:
                consumer.seek_to_beginning(tp)
            elif starts[tp] is None:  # the start time is after the last record
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, starts[tp])
            if end is not None and end.timestamp_ms is not None:
                # An answer at or before the start bounds nothing (see the module docstring).
                first = consumer.position(tp)
                if ends[tp] is not None and ends[tp] <= first:
                    ends[tp] = None
        records = _poll_range(consumer, partitions, ends, time.monotonic() + timeout_s)
        records = [r for r in records if _within(r.timestamp, start, end)]
        result = TopicRange(
            next_offsets={tp.partition: _stop(consumer, tp, ends) for tp in partitions}
        )
    finally:
        consumer.close(autocommit=False)
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    for record in records:
        result.events.append(
            RawEvent(
                source=f"{topic}[{record.partition}]",
                position=record.offset,
                key=record.key,
                value=record.value,
            )
        )
        if record.key is not None:
            result.partition_of.setdefault(record.key.decode(errors="replace"), record.partition)
    log.info("replay.topic_read", topic=topic, records=len(records), partitions=len(partitions))
    return result


def _within(timestamp_ms: int, start: RangeBound | None, end: RangeBound | None) -> bool:
    if start is not None and start.timestamp_ms is not None and timestamp_ms < start.timestamp_ms:
        return False
    return end is None or end.timestamp_ms is None or timestamp_ms < end.timestamp_ms


def _stop(
    consumer: KafkaConsumer, tp: TopicPartition, ends: dict[TopicPartition, int | None]
) -> int:
    # The consumer may have fetched past a given end; the range stops there all the same.
    position = int(consumer.position(tp))
    end = ends[tp]
    return position if end is None else min(position, end)


def _poll_range(
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
    ends: dict[TopicPartition, int | None],
    deadline_s: float,
) -> list[Any]:
    records: list[Any] = []
    active = set(partitions)
    while active:
        if time.monotonic() > deadline_s:
            raise TimeoutError(f"{partitions[0].topic}: range not read in time")
        for tp, batch in consumer.poll(timeout_ms=_POLL_MS).items():
            end = ends.get(tp)
            records.extend(r for r in batch if end is None or r.offset < end)
        for tp in list(active):
            end = ends[tp] if ends[tp] is not None else consumer.highwater(tp)
            if end is not None and consumer.position(tp) >= end:
                consumer.pause(tp)
                active.discard(tp)
    return records
