"""The join: match each outcome to its decision by request_id (pure).

Either side may arrive first. A pair that completes within `wait_s` of the
first side's arrival (a wait of exactly `wait_s` included) becomes one
`Interaction`; a side that waits longer is expired (a decision without
outcome) or orphaned (an outcome without decision) and counted, never
learned. That holds however often the caller runs `expire`: a counterpart
found stale by `add` is expired then and there (and reported by the next
`expire`), so which pairs join never depends on the caller's cadence.

A request_id that already joined is remembered (up to `dedup_capacity`
ids, oldest forgotten first, as 64-bit digests in fixed memory: streams/dedup.py)
so a replay or a duplicate never joins twice.
At most `max_pending` sides wait at once; past that the oldest is evicted
and counted.

Nothing here reads a clock: every call takes `now` (seconds, any monotonic
or event-time scale the caller keeps consistently).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stopbandit.streams.dedup import RecentIds, digest
from stopbandit.streams.events import ContextValue, Decision, Outcome

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Interaction:
    """A decision joined to its outcome: what the learners consume."""

    request_id: str
    segment: str
    context: dict[str, ContextValue]
    threshold: float
    probability: float
    policy_version: int
    em: float
    tokens: int
    decision_ts: float
    outcome_ts: float
    # What the request would have returned at lower arms, as the node observed it.
    counterfactual: tuple[tuple[float, float, int], ...] = ()
    # The distribution the threshold was drawn from, where the node logged it.
    pmf: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def of(cls, decision: Decision, outcome: Outcome) -> Interaction:
        """Join two events of the same request."""
        return cls(
            request_id=decision.request_id,
            segment=decision.segment,
            context=decision.context,
            threshold=decision.threshold,
            probability=decision.probability,
            policy_version=decision.policy_version,
            em=outcome.em,
            tokens=outcome.tokens,
            decision_ts=decision.ts,
            outcome_ts=outcome.ts,
            counterfactual=outcome.counterfactual or (),
            pmf=tuple(decision.pmf) if decision.pmf is not None else None,
        )


class JoinMismatchError(ValueError):
    """An event's segment differs from its counterpart's; the newer event is rejected."""


@dataclass
class JoinStats:
    """Counters of what the join did; monotonic over the buffer's life."""

    joined: int = 0
    expired: int = 0
    orphans: int = 0
    duplicates: int = 0
    already_joined: int = 0
    evicted: int = 0
    mismatched: int = 0


@dataclass
class JoinBuffer:
    """Pending decisions and outcomes, and the request_ids that already joined."""

    wait_s: float
    max_pending: int
    dedup_capacity: int
    stats: JoinStats = field(default_factory=JoinStats)
    _decisions: OrderedDict[str, tuple[Decision, float]] = field(default_factory=OrderedDict)
    _outcomes: OrderedDict[str, tuple[Outcome, float]] = field(default_factory=OrderedDict)
    _joined: RecentIds = field(init=False)
    # Sides that `add` found stale, reported by the next `expire`.
    _stale_decisions: list[Decision] = field(default_factory=list)
    _stale_outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._joined = RecentIds(self.dedup_capacity)

    @property
    def pending(self) -> int:
        """Sides waiting for their counterpart."""
        return len(self._decisions) + len(self._outcomes)

    def has_joined(self, request_id: str) -> bool:
        """Whether `request_id` already produced an interaction (within memory)."""
        return digest(request_id) in self._joined

    def add(self, event: Decision | Outcome, now: float) -> Interaction | None:
        """Offer one event; return the interaction it completes, if any.

        Raises:
            JoinMismatchError: the counterpart waiting for this request_id has another segment.
        """
        request_id = event.request_id
        key = digest(request_id)
        if key in self._joined:
            self.stats.already_joined += 1
            return None
        if request_id in self._decisions or request_id in self._outcomes:
            self._expire_stale(request_id, now)
            waiting_side = self._decisions if isinstance(event, Decision) else self._outcomes
            if request_id in waiting_side:
                self.stats.duplicates += 1
                return None
        if isinstance(event, Decision):
            outcome_waiting = self._outcomes.get(request_id)
            if outcome_waiting is None:
                self._decisions[request_id] = (event, now)
                self._evict_over_capacity()
                return None
            return self._complete(event, outcome_waiting[0], key, newer=event)
        decision_waiting = self._decisions.get(request_id)
        if decision_waiting is None:
            self._outcomes[request_id] = (event, now)
            self._evict_over_capacity()
            return None
        return self._complete(decision_waiting[0], event, key, newer=event)

    def _complete(
        self, decision: Decision, outcome: Outcome, key: int, newer: Decision | Outcome
    ) -> Interaction:
        if decision.segment != outcome.segment:
            self.stats.mismatched += 1
            older = outcome if newer is decision else decision
            raise JoinMismatchError(
                f"{newer.type}.segment: {newer.segment!r} differs from the "
                f"{older.type}'s {older.segment!r}"
            )
        self._decisions.pop(decision.request_id, None)
        self._outcomes.pop(outcome.request_id, None)
        self._joined.add(key)
        self.stats.joined += 1
        return Interaction.of(decision, outcome)

    def expire(self, now: float) -> tuple[list[Decision], list[Outcome]]:
        """Drop every side that waited longer than `wait_s`; return what was dropped.

        The lists include the sides `add` dropped as stale since the last call.
        """
        expired = self._stale_decisions + [
            d for d, _ in _pop_older(self._decisions, now, self.wait_s)
        ]
        orphans = self._stale_outcomes + [
            o for o, _ in _pop_older(self._outcomes, now, self.wait_s)
        ]
        self.stats.expired += len(expired) - len(self._stale_decisions)
        self.stats.orphans += len(orphans) - len(self._stale_outcomes)
        self._stale_decisions, self._stale_outcomes = [], []
        return expired, orphans

    def _expire_stale(self, request_id: str, now: float) -> None:
        decision = self._decisions.get(request_id)
        if decision is not None and now - decision[1] > self.wait_s:
            del self._decisions[request_id]
            self._stale_decisions.append(decision[0])
            self.stats.expired += 1
        outcome = self._outcomes.get(request_id)
        if outcome is not None and now - outcome[1] > self.wait_s:
            del self._outcomes[request_id]
            self._stale_outcomes.append(outcome[0])
            self.stats.orphans += 1

    def _evict_over_capacity(self) -> None:
        while self.pending > self.max_pending:
            oldest_decision = next(iter(self._decisions.values()), None)
            oldest_outcome = next(iter(self._outcomes.values()), None)
            if oldest_outcome is None or (
                oldest_decision is not None and oldest_decision[1] <= oldest_outcome[1]
            ):
                self._decisions.popitem(last=False)
            else:
                self._outcomes.popitem(last=False)
            self.stats.evicted += 1

    def snapshot(self) -> dict[str, Any]:
        """The buffer's state as JSON-ready data, for checkpoints."""
        return {
            "decisions": [[d.model_dump(mode="json"), t] for d, t in self._decisions.values()],
            "outcomes": [[o.model_dump(mode="json"), t] for o, t in self._outcomes.values()],
            "joined_digests": self._joined.encode(),
            "stats": vars(self.stats).copy(),
            "stale_decisions": [d.model_dump(mode="json") for d in self._stale_decisions],
            "stale_outcomes": [o.model_dump(mode="json") for o in self._stale_outcomes],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a `snapshot`, replacing the current state."""
        self._decisions = OrderedDict(
            (d["request_id"], (Decision.model_validate(d), t)) for d, t in state["decisions"]
        )
        self._outcomes = OrderedDict(
            (o["request_id"], (Outcome.model_validate(o), t)) for o, t in state["outcomes"]
        )
        if "joined_digests" in state:
            self._joined = RecentIds.decode(self.dedup_capacity, state["joined_digests"])
        else:  # checkpoints written before digests list the request_ids, oldest first
            self._joined = RecentIds.oldest_first_of(
                self.dedup_capacity, [digest(request_id) for request_id in state["joined"]]
            )
        self.stats = JoinStats(**state["stats"])
        # Snapshots taken before stale sides were kept have none.
        self._stale_decisions = [
            Decision.model_validate(d) for d in state.get("stale_decisions", [])
        ]
        self._stale_outcomes = [Outcome.model_validate(o) for o in state.get("stale_outcomes", [])]


def _pop_older(
    pending: OrderedDict[str, tuple[_T, float]], now: float, wait_s: float
) -> list[tuple[_T, float]]:
    # Arrival order is time order for one caller, so the oldest sit at the front.
    dropped: list[tuple[_T, float]] = []
    while pending:
        request_id, (item, arrived) = next(iter(pending.items()))
        # `now - arrived`, not `arrived < now - wait_s`: the same rounding as `_expire_stale`.
        if now - arrived <= wait_s:
            break
        del pending[request_id]
        dropped.append((item, arrived))
    return dropped
