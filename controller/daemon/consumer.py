"""What the daemon asks of its events consumer: the kafka-python calls it makes, typed.

kafka-python is untyped, so without these the loop, its partitions and its
checkpoints would hold the consumer as `Any`. `KafkaConsumer` satisfies
`Consumer` as it is, and so do the unit tests' fakes
(tests/helpers/daemon_fakes.py); tests/unit/controller/daemon/test_consumer.py
checks both against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence
    from typing import TypeAlias

    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    # What a commit takes: the next offset to consume, per partition.
    Offsets: TypeAlias = dict[TopicPartition, OffsetAndMetadata]


class ConsumedRecord(Protocol):
    """The fields of a kafka-python `ConsumerRecord` the daemon reads."""

    @property
    def topic(self) -> str:
        """The topic it was read from."""

    @property
    def partition(self) -> int:
        """Its partition."""

    @property
    def offset(self) -> int:
        """Its offset in the partition."""

    @property
    def key(self) -> bytes | None:
        """The message key (the segment, for events)."""

    @property
    def value(self) -> bytes | None:
        """The message value."""


class Consumer(Protocol):
    """The events consumer as the daemon uses it: a group member with manual commits."""

    def subscribe(self, topics: Sequence[str], *, listener: object) -> None:
        """Join the group for `topics`; `listener` gets the rebalance callbacks."""

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]:
        """Fetched records by partition (rebalance callbacks run inside)."""

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching from the partitions."""

    def resume(self, *partitions: TopicPartition) -> None:
        """Fetch from the paused partitions again."""

    def seek(self, partition: TopicPartition, offset: int, /) -> None:
        """Fetch from `offset` next."""

    def position(self, partition: TopicPartition, /) -> int:
        """The offset the next fetch of the partition starts at."""

    def highwater(self, partition: TopicPartition, /) -> int | None:
        """The partition's end as of the last fetch (None before one)."""

    def commit(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], /, timeout_ms: int | None = None
    ) -> None:
        """Commit the offsets, blocking until done.

        Raises:
            KafkaError: the commit failed.
        """

    def commit_async(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], /
    ) -> Awaitable[Any]:
        """Start committing the offsets; await the result (inside a rebalance callback)."""

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        """Leave the group (revoking every partition) and close the connections."""
