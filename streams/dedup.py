"""The join's memory of request_ids already joined: the last `capacity`, in fixed memory (pure).

Ids are kept as 64-bit BLAKE2b digests in two preallocated arrays: a ring in
arrival order (the oldest is forgotten first) and an open-addressing table
(linear probing, at most half full) for lookups. Memory is therefore fixed at
construction, 8 bytes per ring slot plus 8 per table slot, about 5.8 MB for
the default 200k ids, instead of growing to ~150 bytes per id as a dict of
strings does; the daemon's RSS stays flat as the memory fills.

Two ids with the same digest would make the newer one look already joined.
With 200k ids remembered the chance of that per lookup is about 200k / 2**64,
1e-14: an interaction lost once in ~10**14.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

_EMPTY = 0
_DIGEST_BYTES = 8


def digest(request_id: str) -> int:
    """The id's 64-bit key: never 0, which marks an empty table slot."""
    value = int.from_bytes(
        hashlib.blake2b(request_id.encode(), digest_size=_DIGEST_BYTES).digest(), "little"
    )
    return value or 1


class RecentIds:
    """The last `capacity` distinct ids added, as digests; the oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ring = array("Q", bytes(_DIGEST_BYTES * capacity))
        self._head = 0  # slot of the oldest id once the ring is full
        self._count = 0
        size = 1
        while size < 2 * capacity:
            size *= 2
        self._mask = size - 1
        self._table = array("Q", bytes(_DIGEST_BYTES * size))

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: int) -> bool:
        table, mask = self._table, self._mask
        slot = key & mask
        while True:
            found = table[slot]
            if found == key:
                return True
            if found == _EMPTY:
                return False
            slot = (slot + 1) & mask

    def add(self, key: int) -> None:
        """Remember a digest not already remembered, forgetting the oldest if full."""
        if self._count == self.capacity:
            self._discard(self._ring[self._head])
            self._ring[self._head] = key
            self._head = (self._head + 1) % self.capacity
        else:
            self._ring[(self._head + self._count) % self.capacity] = key
            self._count += 1
        table, mask = self._table, self._mask
        slot = key & mask
        while table[slot] != _EMPTY:
            slot = (slot + 1) & mask
        table[slot] = key

    def _discard(self, key: int) -> None:
        table, mask = self._table, self._mask
        slot = key & mask
        while table[slot] != key:
            slot = (slot + 1) & mask
        # Backward-shift deletion: pull later members of the probe run into the hole, so
        # lookups can keep stopping at the first empty slot (no tombstones to accumulate).
        hole = slot
        while True:
            slot = (slot + 1) & mask
            member = table[slot]
            if member == _EMPTY:
                break
            home = member & mask
            # Move it unless its home lies cyclically in (hole, slot]: then it must stay.
            if (slot - home) & mask >= (slot - hole) & mask:
                table[hole] = member
                hole = slot
        table[hole] = _EMPTY

    def oldest_first(self) -> array[int]:
        """The digests remembered, oldest first."""
        # The head moves only once the ring is full; until then the ring fills from slot 0.
        if self._count < self.capacity:
            return self._ring[: self._count]
        return self._ring[self._head :] + self._ring[: self._head]

    def encode(self) -> str:
        """The digests, oldest first, as base64 of little-endian 64-bit integers."""
        ordered = self.oldest_first()
        return base64.b64encode(_little_endian(ordered).tobytes()).decode()

    @classmethod
    def decode(cls, capacity: int, text: str) -> RecentIds:
        """Ids written by `encode`; only the newest `capacity` if there are more."""
        return cls.oldest_first_of(capacity, _little_endian(array("Q", base64.b64decode(text))))

    @classmethod
    def oldest_first_of(cls, capacity: int, keys: Sequence[int]) -> RecentIds:
        """The newest `capacity` of `keys` (oldest first), each repeat remembered once."""
        ids = cls(capacity)
        for key in keys[max(0, len(keys) - capacity) :]:
            if key not in ids:
                ids.add(key)
        return ids


def _little_endian(values: array[int]) -> array[int]:
    # `array` uses the machine's byte order; checkpoints move between machines.
    if sys.byteorder == "big":  # pragma: no cover - no big-endian host runs the tests
        values.byteswap()
    return values
