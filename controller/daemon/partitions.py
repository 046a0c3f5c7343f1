"""One assigned partition of the events topic: its core, its position, its checkpoint marks.

The partition is the unit of state (shared/ARCHITECTURE.md): each has its own
`ControllerCore` (segments, join buffer, learned ids, models), created empty
or restored from its checkpoint when the partition is assigned, and dropped
when it is revoked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.core import ControllerCore
    from controller.daemon.metrics import Metrics

# Join-buffer counters mirrored into Prometheus counters of the same meaning.
_JOIN_COUNTERS = ("joined", "expired", "orphans", "duplicates", "evicted")


@dataclass
class PartitionState:
    """What the daemon holds for one partition it owns.

    Attributes:
        partition: the partition number.
        core: the pure controller of the partition's segments.
        offset: the next offset to process; every event before it is in `core`.
        watermark_s: the highest event time seen (clamped to the wall clock), the
            core's `now` for joins and expiry.
        checkpointed_offset: the offset of the last durable checkpoint (None: none yet).
        checkpointed_at_s: monotonic time of that checkpoint (or of the restore).
        force_publish: issue every policy of this core at the next publish (after a
            restore the topic may hold a newer policy from the previous owner).
    """

    partition: int
    core: ControllerCore
    offset: int
    watermark_s: float
    checkpointed_offset: int | None
    checkpointed_at_s: float
    force_publish: bool = True
    _seen: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._seen = self._counters()

    def _counters(self) -> dict[str, int]:
        stats = self.core.join.stats
        counters = {name: getattr(stats, name) for name in _JOIN_COUNTERS}
        counters["skipped"] = stats.already_joined
        counters["learned"] = self.core.learner.learned
        return counters

    def report(self, metrics: Metrics) -> None:
        """Add what the core counted since the last report to the Prometheus counters."""
        now = self._counters()
        for name, value in now.items():
            delta = value - self._seen[name]
            if delta > 0:
                getattr(metrics, name).inc(delta)
        self._seen = now

    @property
    def dirty(self) -> bool:
        """Whether events were processed since the last checkpoint."""
        return self.checkpointed_offset != self.offset
