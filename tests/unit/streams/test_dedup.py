"""The fixed-memory ring of joined request_id digests behaves like a bounded ordered set."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stopbandit.streams.dedup import RecentIds, digest


class _Reference:
    """The obvious model: an OrderedDict of the last `capacity` keys."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys: OrderedDict[int, None] = OrderedDict()

    def add(self, key: int) -> None:
        self.keys[key] = None
        if len(self.keys) > self.capacity:
            self.keys.popitem(last=False)


# Keys that share low bits land in the same probe runs of the small tables used here,
# so deletions must shift runs that wrap around the end of the table.
_KEYS = st.builds(lambda high, low: (high << 8) | low, st.integers(1, 2**40), st.integers(0, 7))


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 9), keys=st.lists(_KEYS, max_size=80))
def test_remembers_exactly_the_last_capacity_distinct_keys(capacity: int, keys: list[int]) -> None:
    """Membership, order and size match the reference after every add."""
    ids, reference = RecentIds(capacity), _Reference(capacity)
    for key in keys:
        if key in reference.keys:
            assert key in ids
            continue
        assert key not in ids
        ids.add(key)
        reference.add(key)
        assert list(ids.oldest_first()) == list(reference.keys)
        assert all(k in ids for k in reference.keys)
        assert len(ids) == len(reference.keys)
    forgotten = set(keys) - set(reference.keys)
    assert not any(k in ids for k in forgotten)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 9), keys=st.lists(_KEYS, max_size=40, unique=True))
def test_encode_decode_round_trip(capacity: int, keys: list[int]) -> None:
    """Decoded ids hold the same keys in the same order, and forget the same next."""
    ids = RecentIds(capacity)
    for key in keys:
        ids.add(key)
    restored = RecentIds.decode(capacity, ids.encode())
    assert list(restored.oldest_first()) == list(ids.oldest_first())
    restored.add(1)
    ids.add(1)
    assert list(restored.oldest_first()) == list(ids.oldest_first())


def test_decode_into_a_smaller_capacity_keeps_the_newest() -> None:
    """A checkpoint written with a larger dedup_capacity loads its newest ids."""
    ids = RecentIds(5)
    for key in (11, 12, 13, 14, 15):
        ids.add(key)
    assert list(RecentIds.decode(3, ids.encode()).oldest_first()) == [13, 14, 15]


@pytest.mark.parametrize("request_id", ["r1", "", "é", "x" * 128])
def test_digest_is_stable_and_never_zero(request_id: str) -> None:
    """The digest is BLAKE2b's (the same in every process) and 0 is reserved for empty slots."""
    assert digest(request_id) == digest(request_id) != 0
    assert 0 < digest(request_id) < 2**64


def test_digest_of_a_known_id() -> None:
    """Checkpoints hold digests: the function must not change between versions."""
    assert digest("r1") == 0x30BD695B0C8ADD83
