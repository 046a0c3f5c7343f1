"""Join invariants over any interleaving of decisions, outcomes, duplicates and clock steps."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stopbandit.streams.events import Decision, Outcome
from stopbandit.streams.join import JoinBuffer, JoinMismatchError

WAIT_S = 10.0
# A few ids so that duplicates and both orders are common; steps that straddle the window.
REQUEST_IDS = [f"r{i}" for i in range(8)]
STEPS_S = [0.0, 0.0, 1.0, 3.0, 5.0, WAIT_S - 1.0, WAIT_S, WAIT_S + 1.0, 2 * WAIT_S]


@cache
def decision(request_id: str, segment: str = "seg") -> Decision:
    """The one decision of `request_id` (cached: streams repeat them)."""
    return Decision(
        v=1,
        request_id=request_id,
        ts=0.0,
        segment=segment,
        threshold=0.9,
        probability=0.5,
        policy_version=1,
    )


@cache
def outcome(request_id: str, segment: str = "seg") -> Outcome:
    """The one outcome of `request_id`."""
    return Outcome(v=1, request_id=request_id, ts=0.0, segment=segment, em=1.0, tokens=10)


@dataclass(frozen=True)
class Op:
    """One step of a stream: offer a side (or only run expire), after the clock moved."""

    side: str  # "decision", "outcome" or "expire"
    request_id: str
    step_s: float
    other_segment: bool = False


ops = st.builds(
    Op,
    side=st.sampled_from(["decision", "outcome", "expire"]),
    request_id=st.sampled_from(REQUEST_IDS),
    step_s=st.sampled_from(STEPS_S),
)
streams = st.lists(ops, max_size=60)


@dataclass
class Run:
    """What a stream did to a buffer."""

    joined: Counter[str]
    arrivals: dict[tuple[str, str], list[float]]
    offered: int
    reported_expired: int
    reported_orphans: int


def run(join: JoinBuffer, stream: list[Op], *, expire_every_step: bool) -> Run:
    """Feed `stream` to `join`, checking the accounting after every offer; expire at the end."""
    now = 0.0
    joined: Counter[str] = Counter()
    arrivals: dict[tuple[str, str], list[float]] = {}
    offered = reported_expired = reported_orphans = 0
    for op in stream:
        now += op.step_s
        if op.side == "expire" or expire_every_step:
            expired, orphans = join.expire(now)
            reported_expired += len(expired)
            reported_orphans += len(orphans)
        if op.side == "expire":
            continue
        segment = "other" if op.other_segment else "seg"
        event = (decision if op.side == "decision" else outcome)(op.request_id, segment)
        arrivals.setdefault((op.request_id, op.side), []).append(now)
        offered += 1
        try:
            interaction = join.add(event, now)
        except JoinMismatchError:
            continue
        if interaction is not None:
            joined[interaction.request_id] += 1
        assert_accounting(join, offered)
    expired, orphans = join.expire(now)
    return Run(
        joined,
        arrivals,
        offered,
        reported_expired + len(expired),
        reported_orphans + len(orphans),
    )


def assert_accounting(join: JoinBuffer, offered: int) -> None:
    """Every offer so far is in exactly one counter (or still pending)."""
    s = join.stats
    # Every offer is dropped (duplicate, already joined, mismatched) or becomes a side that
    # joined (two per interaction), expired, was orphaned, was evicted, or still waits.
    assert offered == (
        s.duplicates
        + s.already_joined
        + s.mismatched
        + 2 * s.joined
        + s.expired
        + s.orphans
        + s.evicted
        + join.pending
    )


def big_buffer() -> JoinBuffer:
    """A buffer that never evicts nor forgets within a generated stream."""
    return JoinBuffer(wait_s=WAIT_S, max_pending=10_000, dedup_capacity=10_000)


@settings(max_examples=300)
@given(stream=streams, expire_every_step=st.booleans())
def test_each_request_joins_at_most_once(stream: list[Op], expire_every_step: bool) -> None:
    """No interleaving gives a request_id two interactions while it is remembered."""
    result = run(big_buffer(), stream, expire_every_step=expire_every_step)
    assert all(count == 1 for count in result.joined.values())


@settings(max_examples=300)
@given(stream=streams, expire_every_step=st.booleans())
def test_sides_within_the_window_join_exactly_once(
    stream: list[Op], expire_every_step: bool
) -> None:
    """If a request's first decision and first outcome arrive within wait_s, it joins once."""
    result = run(big_buffer(), stream, expire_every_step=expire_every_step)
    for request_id in REQUEST_IDS:
        decisions = result.arrivals.get((request_id, "decision"))
        outcomes = result.arrivals.get((request_id, "outcome"))
        if decisions and outcomes and abs(decisions[0] - outcomes[0]) <= WAIT_S:
            assert result.joined[request_id] == 1, request_id


@settings(max_examples=300)
@given(stream=streams)
def test_what_joins_does_not_depend_on_expire_cadence(stream: list[Op]) -> None:
    """Expiring after every step or only when asked gives the same interactions and counts."""
    eager, lazy = big_buffer(), big_buffer()
    eager_run = run(eager, stream, expire_every_step=True)
    lazy_run = run(lazy, stream, expire_every_step=False)
    assert eager_run.joined == lazy_run.joined
    assert eager.stats == lazy.stats
    assert eager.pending == lazy.pending


@settings(max_examples=300)
@given(
    stream=st.lists(
        st.builds(
            Op,
            side=st.sampled_from(["decision", "outcome", "expire"]),
            request_id=st.sampled_from(REQUEST_IDS),
            step_s=st.sampled_from(STEPS_S),
            other_segment=st.booleans(),
        ),
        max_size=60,
    ),
    max_pending=st.integers(1, 6),
    dedup_capacity=st.integers(1, 6),
    expire_every_step=st.booleans(),
)
def test_counters_account_for_every_side_offered(
    stream: list[Op], max_pending: int, dedup_capacity: int, expire_every_step: bool
) -> None:
    """With eviction, forgetting and mismatches, every offer is counted exactly once."""
    join = JoinBuffer(wait_s=WAIT_S, max_pending=max_pending, dedup_capacity=dedup_capacity)
    result = run(join, stream, expire_every_step=expire_every_step)
    assert_accounting(join, result.offered)
    assert join.pending <= max_pending
    assert sum(result.joined.values()) == join.stats.joined
    # expire reported every side it counted, including those add found stale.
    assert (result.reported_expired, result.reported_orphans) == (
        join.stats.expired,
        join.stats.orphans,
    )


@pytest.mark.parametrize("dedup_capacity", [1, 3])
@settings(max_examples=100)
@given(stream=streams)
def test_a_remembered_request_never_joins_twice(stream: list[Op], dedup_capacity: int) -> None:
    """With bounded memory, a second join of an id happens only after it was forgotten."""
    join = JoinBuffer(wait_s=WAIT_S, max_pending=10_000, dedup_capacity=dedup_capacity)
    now = 0.0
    for op in stream:
        now += op.step_s
        if op.side == "expire":
            join.expire(now)
            continue
        remembered = join.has_joined(op.request_id)
        event = (decision if op.side == "decision" else outcome)(op.request_id)
        interaction = join.add(event, now)
        assert not (remembered and interaction is not None)
