"""Rebalance callbacks of the events consumer, handed to the daemon.

kafka-python 3 runs these on the consumer's IO thread, where a blocking
consumer call is refused; the async form lets the revoke commit be awaited
while the checkpoint itself (file or producer I/O) runs inline, before the
partition can be assigned elsewhere. Nothing here may raise into the
consumer: an exception would abort the rebalance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

if TYPE_CHECKING:
    from kafka import TopicPartition

    from controller.daemon.loop import Daemon

log = structlog.get_logger(__name__)


class RebalanceListener(AsyncConsumerRebalanceListener):  # type: ignore[misc] # untyped base
    """Hands kafka-python's rebalance callbacks to the daemon; never raises into the consumer."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Checkpoint and commit each revoked partition, then drop it."""
        try:
            offsets = self._daemon.revoke(revoked)
            if offsets and self._daemon.consumer is not None:
                await self._daemon.consumer.commit_async(offsets)
                log.info(
                    "offsets.committed",
                    offsets={tp.partition: o.offset for tp, o in offsets.items()},
                )
        except Exception as error:  # noqa: BLE001 - a raise here would abort the rebalance
            log.warning("rebalance.revoke_failed", error=repr(error))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Queue the assigned partitions for restore by the loop (they stay paused until then)."""
        try:
            self._daemon.assign(assigned)
        except Exception as error:  # noqa: BLE001
            log.warning("rebalance.assign_failed", error=repr(error))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Another member may own them already: drop without checkpointing."""
        self._daemon.drop(lost)
