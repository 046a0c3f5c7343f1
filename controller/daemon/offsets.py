"""Where an events partition's log begins and ends, and what the group committed there.

A restore compares the offset it would resume from with the log's end: past
it, the topic was recreated (or truncated) under the checkpoint, and
consuming would silently skip every new event up to the old offset (the
consumer resets to the beginning, the loop then drops what lies below the
checkpoint's offset). restoring.py turns that into an error and a choice.

Below the log's beginning, retention removed events before they were read;
the consumer's offset reset would skip them without a word. A restore (and
the loop, on a gap in what it consumes) compares with `beginning` and counts
them (`stopbandit_events_lost_to_retention_total`, `events.lost_to_retention`).

A topic recreated and refilled past the checkpoint's offset before the restore
(a broker back with empty disks, then traffic) passes both checks; its topic id
(Kafka >= 2.8) tells, so a restore also compares the id with the one the
partition was last consumed under in this process.

`ListOffsets(latest)` alone cannot say so: Tansu answers it short of the end
when a batch held several records (streams/kafka.py `read_topic`). So an
offset past that answer is confirmed by fetching at it with a consumer that
does not reset: the broker either answers (the offset is the end, or before
it) or says the offset is out of range.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaTimeoutError, OffsetOutOfRangeError

from stopbandit.streams.kafka import client_settings

if TYPE_CHECKING:
    from kafka import TopicPartition

    from stopbandit.streams.kafka_config import KafkaConfig

PROBE_TIMEOUT_S = 10.0
_REQUEST_TIMEOUT_MS = 5000
# What a broker without topic ids (before Kafka 2.8) answers.
_NO_TOPIC_ID = "00000000-0000-0000-0000-000000000000"


class LogOffsets(Protocol):
    """The offsets a restore checks its resume point against."""

    def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of the partition, None if it never committed."""

    def beginning(self, partition: TopicPartition) -> int:
        """The first offset still in the log."""

    def beyond_end(self, partition: TopicPartition, offset: int) -> int | None:
        """The log's end if `offset` is past it; None if `offset` can be consumed from.

        Raises:
            KafkaError: the broker could not tell (worth retrying).
        """

    def topic_id(self, topic: str) -> str | None:
        """The topic's id as the last metadata named it; None where the broker has none."""


class KafkaLogOffsets:
    """`LogOffsets` from the events consumer (the group's member) and a probe consumer.

    Args:
        consumer: kafka-python's KafkaConsumer of the events, in the group.
        config: connection settings for the probe.
    """

    def __init__(self, consumer: Any, config: KafkaConfig) -> None:  # noqa: ANN401 - untyped
        self._consumer = consumer
        self._config = config

    def committed(self, partition: TopicPartition) -> int | None:
        """From the group coordinator."""
        offset = self._consumer.committed(partition, timeout_ms=_REQUEST_TIMEOUT_MS)
        return None if offset is None else int(offset)

    def beginning(self, partition: TopicPartition) -> int:
        """From ListOffsets(earliest)."""
        offsets = self._consumer.beginning_offsets([partition], timeout_ms=_REQUEST_TIMEOUT_MS)
        return int(offsets[partition])

    def beyond_end(self, partition: TopicPartition, offset: int) -> int | None:
        """ListOffsets(latest), and when `offset` is past it, a fetch at `offset` to be sure."""
        ends = self._consumer.end_offsets([partition], timeout_ms=_REQUEST_TIMEOUT_MS)
        end = int(ends[partition])
        if offset <= end:
            return None
        return end if self._out_of_range(partition, offset) else None

    def topic_id(self, topic: str) -> str | None:
        """From a Metadata request of its own (an admin client's).

        The consumer's cached metadata may predate the recreation (seen: one partition
        restored under the old id, the next one under the new).
        """
        admin = KafkaAdminClient(
            **client_settings(self._config), request_timeout_ms=_REQUEST_TIMEOUT_MS
        )
        try:
            described = admin.describe_topics([topic])
        finally:
            admin.close()
        topic_id = described[0].get("topic_id") if described else None
        if topic_id is None or str(topic_id) == _NO_TOPIC_ID:
            return None
        return str(topic_id)

    def _out_of_range(self, partition: TopicPartition, offset: int) -> bool:
        probe = KafkaConsumer(
            **client_settings(self._config),
            enable_auto_commit=False,
            auto_offset_reset="none",
        )
        try:
            probe.assign([partition])
            probe.seek(partition, offset)
            deadline_s = time.monotonic() + PROBE_TIMEOUT_S
            while time.monotonic() < deadline_s:
                try:
                    probe.poll(timeout_ms=200, max_records=1)
                except OffsetOutOfRangeError:
                    return True
                highwater = probe.highwater(partition)
                if highwater is not None:
                    return bool(offset > highwater)
            raise KafkaTimeoutError(f"{partition}: no fetch answer within {PROBE_TIMEOUT_S} s")
        finally:
            probe.close(autocommit=False)
