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
At most `max_pending` sides wait at once, holding at most
`max_pending_bytes` by `footprint_bytes`' estimate; past either the oldest
is evicted and counted. The count alone does not bound memory: a decision
with a 64-entry context holds 11-18 KB as a parsed event, one with none
~1.3 KB (measured with tracemalloc on decoded events).

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

# What one waiting side costs beyond its entries: the parsed event and its place in the
# buffer. Each context, pmf or counterfactual entry adds `_ENTRY_BYTES` plus its strings.
# Measured (tracemalloc, decoded events): 1.3 KB bare, 2.4 KB with 2 entries and a pmf,
# 10.8 KB with 64 entries of 40-character strings, 17.5 KB with the widest context the
# contract allows (64-character keys, 128-character strings); the estimate is at or above.
_SIDE_BYTES = 1_500
_ENTRY_BYTES = 120


def footprint_bytes(event: Decision | Outcome) -> int:
    """An estimate, at or above what it holds, of the memory one waiting side takes."""
    size = _SIDE_BYTES + len(event.request_id) + len(event.segment)
    if isinstance(event, Decision):
        for key, value in event.context.items():
            size += _ENTRY_BYTES + len(key) + (len(value) if isinstance(value, str) else 0)
        if event.pmf is not None:
            size += _ENTRY_BYTES * len(event.pmf)
    elif event.counterfactual:
        size += _ENTRY_BYTES * len(event.counterfactual)
    return size


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
    max_pending_bytes: int | None = None
    stats: JoinStats = field(default_factory=JoinStats)
    # `footprint_bytes` of every waiting side.
    pending_bytes: int = 0
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
                self.pending_bytes += footprint_bytes(event)
                self._evict_over_capacity()
                return None
            return self._complete(event, outcome_waiting[0], key, newer=event)
        decision_waiting = self._decisions.get(request_id)
        if decision_waiting is None:
            self._outcomes[request_id] = (event, now)
            self.pending_bytes += footprint_bytes(event)
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
        # One of the two was waiting (the other just arrived): it frees its bytes.
        waiting = decision if newer is outcome else outcome
        self._decisions.pop(decision.request_id, None)
        self._outcomes.pop(outcome.request_id, None)
        self.pending_bytes -= footprint_bytes(waiting)
        self._joined.add(key)
        self.stats.joined += 1
        return Interaction.of(decision, outcome)

    def expire(self, now: float) -> tuple[list[Decision], list[Outcome]]:
        """Drop every side that waited longer than `wait_s`; return what was dropped.

        The lists include the sides `add` dropped as stale since the last call.
        """
        old_decisions = [d for d, _ in _pop_older(self._decisions, now, self.wait_s)]
        old_outcomes = [o for o, _ in _pop_older(self._outcomes, now, self.wait_s)]
        self.pending_bytes -= sum(footprint_bytes(d) for d in old_decisions)
        self.pending_bytes -= sum(footprint_bytes(o) for o in old_outcomes)
        expired = self._stale_decisions + old_decisions
        orphans = self._stale_outcomes + old_outcomes
        self.stats.expired += len(expired) - len(self._stale_decisions)
        self.stats.orphans += len(orphans) - len(self._stale_outcomes)
        self._stale_decisions, self._stale_outcomes = [], []
        return expired, orphans

    def _expire_stale(self, request_id: str, now: float) -> None:
        decision = self._decisions.get(request_id)
        if decision is not None and now - decision[1] > self.wait_s:
            del self._decisions[request_id]
            self.pending_bytes -= footprint_bytes(decision[0])
            self._stale_decisions.append(decision[0])
            self.stats.expired += 1
        outcome = self._outcomes.get(request_id)
        if outcome is not None and now - outcome[1] > self.wait_s:
            del self._outcomes[request_id]
            self.pending_bytes -= footprint_bytes(outcome[0])
            self._stale_outcomes.append(outcome[0])
            self.stats.orphans += 1

    def _over_capacity(self) -> bool:
        if self.pending > self.max_pending:
            return True
        # The side just added always stays, however large: only older ones make room.
        return (
            self.max_pending_bytes is not None
            and self.pending_bytes > self.max_pending_bytes
            and self.pending > 1
        )

    def _evict_over_capacity(self) -> None:
        while self._over_capacity():
            oldest_decision = next(iter(self._decisions.values()), None)
            oldest_outcome = next(iter(self._outcomes.values()), None)
            if oldest_outcome is None or (
                oldest_decision is not None and oldest_decision[1] <= oldest_outcome[1]
            ):
                _, (side, _) = self._decisions.popitem(last=False)
                self.pending_bytes -= footprint_bytes(side)
            else:
                _, (other, _) = self._outcomes.popitem(last=False)
                self.pending_bytes -= footprint_bytes(other)
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
        self.pending_bytes = sum(footprint_bytes(d) for d, _ in self._decisions.values()) + sum(
            footprint_bytes(o) for o, _ in self._outcomes.values()
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
