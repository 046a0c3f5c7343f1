"""Publish rounds at the fleet's publish points, so the demo replays `stopbandit simulate`.

The daemon publishes when its interval passes; the simulator publishes
after every `publish_every` interactions. For the demo to show the same run
as `stopbandit simulate` with the same seed, the demo's daemon is a
`PacedDaemon`: its publish rounds happen only at the fleet's publish points.
At each point the fleet flushes its events and asks for a round once the
daemon has processed every event made so far; the daemon publishes (the
normal build, sign, send, flush); the fleet then waits until every node has
received each segment's newest version before making the next request.
Same requests, same draws, same policies: the greedy thresholds the demo
ends with are those `stopbandit simulate` reports. Only the versions in the
decisions differ (the daemon's versions carry a wall-clock floor).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from stopbandit.controller.daemon.loop import Daemon

if TYPE_CHECKING:
    from stopbandit.controller.config import StopbanditConfig

# How long an idle, withheld publish round waits for the fleet's request before the loop polls.
IDLE_WAIT_S = 0.05


class PublishPacer:
    """Lets a `PacedDaemon` publish only when the fleet asks, once it has seen enough events."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._target_events: int | None = None
        self._released = False
        self.rounds = 0
        self.versions: dict[str, int] = {}

    def allows(self, events_processed: int) -> bool:
        """Whether a publish round may run now (called by the daemon's loop)."""
        with self._changed:
            if self._released:
                return True
            return self._target_events is not None and events_processed >= self._target_events

    def published(self, versions: dict[str, int]) -> None:
        """A round was delivered; `versions` is the newest version per segment so far."""
        with self._changed:
            self._target_events = None
            self.versions = versions
            self.rounds += 1
            self._changed.notify_all()

    def wait_for_request(self, timeout_s: float) -> None:
        """Block until a round is asked for (or pacing is released), at most `timeout_s`."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._released or self._target_events is not None, timeout=timeout_s
            )

    def request(self, events: int) -> int:
        """Ask for one round after `events` events; return the round count to wait for."""
        with self._changed:
            self._target_events = events
            self._changed.notify_all()
            return self.rounds + 1

    def wait(self, rounds: int, timeout_s: float) -> dict[str, int] | None:
        """The published versions once `rounds` rounds happened, None on timeout."""
        with self._changed:
            if self._changed.wait_for(lambda: self.rounds >= rounds, timeout=timeout_s):
                return dict(self.versions)
            return None

    def release(self) -> None:
        """Stop pacing: the daemon publishes on its own schedule again (and on stop)."""
        with self._changed:
            self._released = True
            self._changed.notify_all()


class PacedDaemon(Daemon):
    """The controller daemon, publishing only when its `PublishPacer` allows.

    A withheld round reports failure to the loop, so no checkpoint is written
    without its policies and dead letters flushed; the loop asks again on its
    next iteration. The loop polls without waiting while a publish is overdue,
    so when nothing came in and nothing is asked for, the withheld round waits
    here for a request instead of letting the loop spin.
    """

    def __init__(
        self,
        config: StopbanditConfig,
        pacer: PublishPacer,
        **kwargs: Any,  # noqa: ANN401 - Daemon's own keyword arguments
    ) -> None:
        super().__init__(config, **kwargs)
        self.pacer = pacer
        self._events_seen = -1

    def publish(self) -> bool:
        """Publish one round if the pacer allows it, and tell the pacer what went out."""
        if not self.pacer.allows(self.events_processed):
            if self.events_processed == self._events_seen:
                self.pacer.wait_for_request(IDLE_WAIT_S)
            self._events_seen = self.events_processed
            return False
        delivered = super().publish()
        if delivered:
            self.pacer.published({s: p.version for s, p in self.policies().items()})
        return delivered
