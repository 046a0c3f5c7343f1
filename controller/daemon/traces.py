"""Counterfactual traces the daemon could not learn: counted by reason, the first few logged."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import structlog

from stopbandit.streams.events import Outcome

if TYPE_CHECKING:
    from stopbandit.controller.daemon.consumer import ConsumedRecord
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.daemon.partitions import PartitionState
    from stopbandit.streams.events import Event
    from stopbandit.streams.join import Interaction

log = structlog.get_logger(__name__)

# Dropped traces logged per reason (each one is counted): enough to find the producer,
# not one line per message of a node that sends every trace wrong.
DROPPED_TRACES_LOGGED = 5


class DroppedTraces:
    """The `stopbandit_counterfactual_dropped_total` counter and its log lines."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._logged: Counter[str] = Counter()

    def count(
        self,
        state: PartitionState,
        event: Event,
        interaction: Interaction | None,
        message: ConsumedRecord,
    ) -> None:
        """Count the counterfactual traces `event` dropped; log the first few of each reason.

        A trace breaking a wire rule is dropped at decode (the outcome's
        `counterfactual_dropped`); one breaking a rule of the decision, by the core
        when the join completes, on whichever of the two events completed it.
        """
        if isinstance(event, Outcome) and event.counterfactual_dropped is not None:
            self._dropped(event.counterfactual_dropped, 1, message, event.request_id)
        if interaction is not None and interaction.counterfactual:
            for reason, n in state.dropped_traces().items():
                self._dropped(reason, n, message, event.request_id)

    def _dropped(self, reason: str, count: int, message: ConsumedRecord, request_id: str) -> None:
        self._metrics.counterfactual_dropped.labels(reason).inc(count)
        logged = self._logged[reason]
        if logged < DROPPED_TRACES_LOGGED:
            self._logged[reason] = logged + 1
            log.info(
                "counterfactual.dropped",
                reason=reason,
                partition=message.partition,
                offset=message.offset,
                request_id=request_id,
                logged=f"{logged + 1}/{DROPPED_TRACES_LOGGED}",  # then only counted
            )
