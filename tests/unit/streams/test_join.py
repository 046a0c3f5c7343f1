"""The join buffer, one rule at a time: orders, duplicates, the window, capacity, memory, state."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from stopbandit.streams.codec import decode
from stopbandit.streams.events import Decision, Outcome
from stopbandit.streams.join import Interaction, JoinBuffer, JoinMismatchError, footprint_bytes

WAIT_S = 300.0


def decision(request_id: str, segment: str = "seg", threshold: float = 0.9) -> Decision:
    """A decision of `request_id`."""
    return Decision(
        v=1,
        request_id=request_id,
        ts=1000.0,
        segment=segment,
        context={"task": "gsm8k"},
        threshold=threshold,
        probability=0.5,
        policy_version=3,
    )


def outcome(request_id: str, segment: str = "seg", tokens: int = 100) -> Outcome:
    """An outcome of `request_id`."""
    return Outcome(v=1, request_id=request_id, ts=1002.5, segment=segment, em=1.0, tokens=tokens)


def buffer(max_pending: int = 1000, dedup_capacity: int = 1000) -> JoinBuffer:
    """A buffer with the test window."""
    return JoinBuffer(wait_s=WAIT_S, max_pending=max_pending, dedup_capacity=dedup_capacity)


def test_decision_then_outcome_joins() -> None:
    """The outcome completing a waiting decision returns their interaction."""
    join = buffer()
    assert join.add(decision("r1"), now=0.0) is None
    assert join.pending == 1
    interaction = join.add(outcome("r1"), now=1.0)
    assert interaction == Interaction(
        request_id="r1",
        segment="seg",
        context={"task": "gsm8k"},
        threshold=0.9,
        probability=0.5,
        policy_version=3,
        em=1.0,
        tokens=100,
        decision_ts=1000.0,
        outcome_ts=1002.5,
    )
    assert (join.pending, join.stats.joined) == (0, 1)
    assert join.has_joined("r1")


def test_outcome_then_decision_joins() -> None:
    """Either side may arrive first; the interaction is the same."""
    first, second = buffer(), buffer()
    first.add(decision("r1"), now=0.0)
    second.add(outcome("r1"), now=0.0)
    assert second.add(decision("r1"), now=1.0) == first.add(outcome("r1"), now=1.0)
    assert second.stats.joined == 1
    assert second.pending == 0


@pytest.mark.parametrize("side", ["decision", "outcome"])
def test_duplicate_while_pending_is_counted_and_first_wins(side: str) -> None:
    """A second copy of a waiting side is dropped; the first copy is what joins."""
    join = buffer()
    if side == "decision":
        join.add(decision("r1", threshold=0.9), now=0.0)
        assert join.add(decision("r1", threshold=0.95), now=1.0) is None
        interaction = join.add(outcome("r1"), now=2.0)
        assert interaction is not None
        assert interaction.threshold == 0.9
    else:
        join.add(outcome("r1", tokens=100), now=0.0)
        assert join.add(outcome("r1", tokens=999), now=1.0) is None
        interaction = join.add(decision("r1"), now=2.0)
        assert interaction is not None
        assert interaction.tokens == 100
    assert (join.stats.duplicates, join.stats.joined, join.pending) == (1, 1, 0)


@pytest.mark.parametrize("late", [decision("r1"), outcome("r1")], ids=["decision", "outcome"])
def test_either_side_after_joining_is_already_joined(late: Decision | Outcome) -> None:
    """A replayed side of a joined request never joins again nor waits."""
    join = buffer()
    join.add(decision("r1"), now=0.0)
    join.add(outcome("r1"), now=1.0)
    assert join.add(late, now=2.0) is None
    assert join.add(late, now=3.0) is None
    assert (join.stats.already_joined, join.stats.duplicates, join.pending) == (2, 0, 0)


def test_wait_of_exactly_wait_s_still_joins() -> None:
    """The window is closed: a side that waited exactly wait_s is not expired."""
    join = buffer()
    join.add(decision("r1"), now=100.0)
    assert join.expire(now=100.0 + WAIT_S) == ([], [])
    assert join.add(outcome("r1"), now=100.0 + WAIT_S) is not None
    assert (join.stats.joined, join.stats.expired) == (1, 0)


def test_wait_past_wait_s_expires_the_decision() -> None:
    """Just past the window the decision is expired, counted and returned."""
    join = buffer()
    waiting = decision("r1")
    join.add(waiting, now=100.0)
    join.add(decision("r2"), now=100.5)
    expired, orphans = join.expire(now=100.25 + WAIT_S)
    assert (expired, orphans) == ([waiting], [])
    assert (join.stats.expired, join.pending) == (1, 1)
    # The outcome arriving later waits as an orphan-to-be: it does not join.
    assert join.add(outcome("r1"), now=101.0 + WAIT_S) is None
    assert join.expire(now=102.0 + 2 * WAIT_S)[1] == [outcome("r1")]
    assert join.stats.orphans == 1


def test_outcome_without_decision_is_an_orphan_at_the_same_boundary() -> None:
    """Outcomes wait exactly as long as decisions do."""
    join = buffer()
    join.add(outcome("r1"), now=0.0)
    assert join.expire(now=WAIT_S) == ([], [])
    assert join.expire(now=WAIT_S + 1e-6) == ([], [outcome("r1")])
    assert (join.stats.orphans, join.stats.expired, join.pending) == (1, 0, 0)


@pytest.mark.parametrize("first", ["decision", "outcome"])
def test_stale_counterpart_does_not_join_even_before_expire_runs(first: str) -> None:
    """Whether a pair joins depends on its arrival times, not on when expire last ran."""
    join = buffer()
    early, late = (decision("r1"), outcome("r1"))[:: 1 if first == "decision" else -1]
    join.add(early, now=0.0)
    assert join.add(late, now=WAIT_S + 0.5) is None
    assert join.stats.joined == 0
    assert join.pending == 1  # the late side now waits on its own
    expired, orphans = join.expire(now=WAIT_S + 0.5)
    assert [*expired, *orphans] == [early]
    assert (join.stats.expired + join.stats.orphans) == 1


def test_stale_side_is_replaced_by_a_fresh_copy_not_counted_duplicate() -> None:
    """A copy of a side that is already past its window waits afresh."""
    join = buffer()
    join.add(decision("r1", threshold=0.9), now=0.0)
    assert join.add(decision("r1", threshold=0.95), now=WAIT_S + 1.0) is None
    assert join.stats.duplicates == 0
    interaction = join.add(outcome("r1"), now=WAIT_S + 2.0)
    assert interaction is not None
    assert interaction.threshold == 0.95
    assert join.expire(now=WAIT_S + 2.0) == ([decision("r1", threshold=0.9)], [])
    assert join.stats.expired == 1


def test_eviction_takes_the_oldest_side_first() -> None:
    """Past max_pending, the longest-waiting side goes, whichever side it is."""
    join = buffer(max_pending=3)
    join.add(decision("d1"), now=0.0)
    join.add(outcome("o2"), now=1.0)
    join.add(decision("d3"), now=2.0)
    assert join.stats.evicted == 0
    join.add(outcome("o4"), now=3.0)
    assert join.stats.evicted == 1
    assert join.snapshot()["decisions"][0][0]["request_id"] == "d3"
    join.add(decision("d5"), now=4.0)
    assert join.stats.evicted == 2
    assert [o["request_id"] for o, _ in join.snapshot()["outcomes"]] == ["o4"]
    # The evicted decision's outcome finds nothing to join and waits, evicting d3.
    assert join.add(outcome("d1"), now=5.0) is None
    assert join.stats.evicted == 3
    assert join.pending == 3
    state = join.snapshot()
    assert [d["request_id"] for d, _ in state["decisions"]] == ["d5"]
    assert [o["request_id"] for o, _ in state["outcomes"]] == ["o4", "d1"]


def test_eviction_tie_goes_to_the_decision() -> None:
    """Sides that arrived at the same instant: the decision is evicted first."""
    join = buffer(max_pending=2)
    join.add(outcome("o1"), now=5.0)
    join.add(decision("d1"), now=5.0)
    join.add(outcome("o2"), now=6.0)
    state = join.snapshot()
    assert state["decisions"] == []
    assert [o["request_id"] for o, _ in state["outcomes"]] == ["o1", "o2"]
    assert join.stats.evicted == 1


def test_dedup_memory_forgets_the_oldest_beyond_capacity() -> None:
    """Only the last dedup_capacity joined ids are remembered."""
    join = buffer(dedup_capacity=2)
    for request_id in ("r1", "r2", "r3"):
        join.add(decision(request_id), now=0.0)
        join.add(outcome(request_id), now=0.0)
    assert not join.has_joined("r1")
    assert join.has_joined("r2")
    assert join.has_joined("r3")
    assert join.add(decision("r2"), now=1.0) is None
    assert join.stats.already_joined == 1
    # r1 is forgotten: its replayed pair joins a second time (the price of bounded memory).
    join.add(decision("r1"), now=1.0)
    assert join.add(outcome("r1"), now=1.0) is not None
    assert join.stats.joined == 4
    assert not join.has_joined("r2")  # r1 joining again pushed r2 out


@pytest.mark.parametrize("first", ["decision", "outcome"])
def test_segment_mismatch_raises_and_leaves_state_intact(first: str) -> None:
    """The newer side of a mismatched pair is rejected; the waiting side still joins."""
    join = buffer()
    if first == "decision":
        join.add(decision("r1", segment="a"), now=0.0)
        wrong: Decision | Outcome = outcome("r1", segment="b")
        right: Decision | Outcome = outcome("r1", segment="a")
    else:
        join.add(outcome("r1", segment="a"), now=0.0)
        wrong, right = decision("r1", segment="b"), decision("r1", segment="a")
    before = join.snapshot()
    with pytest.raises(JoinMismatchError, match=r"segment: 'b' differs") as caught:
        join.add(wrong, now=1.0)
    assert str(caught.value).startswith(f"{wrong.type}.segment")
    after = join.snapshot()
    assert after["stats"].pop("mismatched") == 1
    before["stats"].pop("mismatched")
    assert after == before
    interaction = join.add(right, now=2.0)
    assert interaction is not None
    assert interaction.segment == "a"


def _stream() -> list[tuple[Decision | Outcome, float]]:
    # Both orders, a duplicate, an already-joined replay, a stale pair, an orphan, an expiry.
    return [
        (decision("a"), 0.0),
        (outcome("b"), 1.0),
        (decision("c"), 2.0),
        (decision("a"), 3.0),
        (outcome("a"), 4.0),
        (decision("b"), 5.0),
        (outcome("a"), 6.0),
        (outcome("d"), 7.0),
        (decision("e"), 8.0),
        (outcome("c"), 2.0 + WAIT_S + 1.0),
        (decision("f"), 400.0),
        (outcome("e"), 401.0),
        (decision("d"), 800.0),
        (outcome("f"), 900.0),
    ]


def _run(join: JoinBuffer, events: list[tuple[Decision | Outcome, float]]) -> list[object]:
    results: list[object] = []
    for event, now in events:
        results.append(join.add(event, now))
        results.append(join.expire(now))
    return results


@pytest.mark.parametrize("cut", range(len(_stream()) + 1))
def test_restored_buffer_behaves_like_the_original(cut: int) -> None:
    """Snapshot at any point, through JSON, restore: the rest of the stream goes the same."""
    stream = _stream()
    original = buffer(max_pending=4, dedup_capacity=3)
    _run(original, stream[:cut])
    restored = buffer(max_pending=4, dedup_capacity=3)
    restored.restore(json.loads(json.dumps(original.snapshot())))
    assert restored.snapshot() == original.snapshot()
    assert _run(restored, stream[cut:]) == _run(original, stream[cut:])
    assert restored.snapshot() == original.snapshot()
    assert restored.stats == original.stats


def test_restore_keeps_stale_sides_for_the_next_expire() -> None:
    """Sides dropped by add but not yet reported survive a checkpoint."""
    join = buffer()
    join.add(decision("r1"), now=0.0)
    join.add(outcome("r1"), now=WAIT_S + 1.0)
    restored = buffer()
    restored.restore(json.loads(json.dumps(join.snapshot())))
    assert restored.expire(now=WAIT_S + 1.0) == ([decision("r1")], [])
    assert restored.stats.expired == 1


def test_restore_accepts_a_snapshot_without_stale_sides() -> None:
    """Checkpoints written before stale sides were kept still load."""
    join = buffer()
    join.add(decision("r1"), now=0.0)
    state = join.snapshot()
    del state["stale_decisions"], state["stale_outcomes"]
    restored = buffer()
    restored.restore(state)
    assert restored.add(outcome("r1"), now=1.0) is not None


def test_walkthrough_counts_add_up() -> None:
    """The fixed stream ends with known counters (checked by hand)."""
    join = buffer(max_pending=4, dedup_capacity=3)
    _run(join, _stream())
    # Joined: a (4), b (5). Duplicate: decision a (3). Already joined: outcome a (6).
    # c: outcome at 303 finds its decision (2) stale, so c expires and the outcome is orphaned
    # at 800; d: outcome (7) orphaned at 400, decision (800) still waits; e: decision (8)
    # expires at 400, outcome (401) orphaned at 800; f: decision (400) expires at 800,
    # outcome (900) still waits. 14 offers = 1 + 1 + 2*2 + 3 + 3 + 2 pending.
    assert vars(join.stats) == {
        "joined": 2,
        "expired": 3,
        "orphans": 3,
        "duplicates": 1,
        "already_joined": 1,
        "evicted": 0,
        "mismatched": 0,
    }
    assert join.pending == 2


def test_restore_reads_request_ids_of_older_checkpoints() -> None:
    """A snapshot that lists joined request_ids (before digests) still skips them."""
    join = buffer(dedup_capacity=2)
    state = join.snapshot()
    del state["joined_digests"]
    state["joined"] = ["r1", "r2", "r3"]
    restored = buffer(dedup_capacity=2)
    restored.restore(state)
    assert not restored.has_joined("r1")  # beyond the capacity: the oldest is dropped
    assert restored.has_joined("r2")
    assert restored.has_joined("r3")
    assert restored.add(decision("r3"), now=0.0) is None
    assert restored.stats.already_joined == 1


def _wide_decision_bytes(i: int) -> bytes:
    # The contract's widest context: 64 entries, strings of 128 characters and numbers.
    context = {f"k{k:02d}_" + "x" * 60: ("v" * 128 if k % 2 else float(k)) for k in range(64)}
    return json.dumps(
        {
            "v": 1,
            "type": "decision",
            "request_id": f"req-{i:012d}",
            "ts": 1000.0 + i * 1e-3,
            "segment": "seg",
            "context": context,
            "threshold": 0.9,
            "probability": 0.5,
            "policy_version": 3,
            "pmf": [[a, 1 / 7] for a in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)],
        }
    ).encode()


def _held_bytes(join: JoinBuffer, sides: int) -> tuple[int, int]:
    """(bytes traced after offering `sides` decoded wide decisions, the buffer's estimate)."""
    raws = [_wide_decision_bytes(i) for i in range(sides)]
    tracemalloc.start()
    try:
        for i, raw in enumerate(raws):
            join.add(decode(b"seg", raw), 1000.0 + i * 1e-3)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, join.pending_bytes


def test_pending_bytes_bound_what_wide_contexts_hold() -> None:
    """Decisions with 64-entry contexts: the estimate caps what the buffer really holds."""
    cap = 2 * 1024 * 1024
    bounded = JoinBuffer(
        wait_s=WAIT_S, max_pending=100_000, dedup_capacity=10, max_pending_bytes=cap
    )
    held, estimate = _held_bytes(bounded, 1000)
    assert estimate <= cap
    assert bounded.stats.evicted > 0
    assert held <= cap  # the estimate is at or above the real cost
    # The same flood bounded by count alone holds several times the cap.
    unbounded = JoinBuffer(wait_s=WAIT_S, max_pending=100_000, dedup_capacity=10)
    held_unbounded, _ = _held_bytes(unbounded, 1000)
    assert held_unbounded > 3 * cap
    assert unbounded.stats.evicted == 0


def test_pending_bytes_follow_joins_expiry_and_restore() -> None:
    """Every way a side leaves frees its bytes; a restored buffer counts the same bytes."""
    join = buffer()
    join.add(decision("a"), 0.0)
    join.add(outcome("b"), 0.0)
    join.add(decision("c"), 0.0)
    assert join.pending_bytes == sum(
        footprint_bytes(e) for e in (decision("a"), outcome("b"), decision("c"))
    )
    restored = buffer()
    restored.restore(json.loads(json.dumps(join.snapshot())))
    assert restored.pending_bytes == join.pending_bytes
    join.add(outcome("a"), 1.0)  # joins
    join.add(decision("b"), 1.0)  # joins
    join.expire(WAIT_S + 10.0)  # c expires
    assert (join.pending, join.pending_bytes) == (0, 0)
