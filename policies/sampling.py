"""How a serving node draws a threshold from a pmf, reproducibly from the request_id.

u = (first 8 bytes of SHA-256(request_id), big-endian) / 2**64, then the
first arm whose cumulative probability exceeds u. Any language can do the
same from this line, so a decision can be reproduced anywhere from its
request_id and the policy it was drawn from.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

_TWO_TO_64 = float(2**64)


def request_uniform(request_id: str) -> float:
    """A number in [0, 1) fixed by `request_id`."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_TO_64


def draw_index(pmf: Sequence[float], request_id: str) -> int:
    """Index of the arm drawn from `pmf` for `request_id` (never one with probability 0).

    Raises:
        ValueError: no entry of `pmf` is positive, so there is nothing to draw.
    """
    u = request_uniform(request_id)
    cumulative = 0.0
    last_positive = None
    for index, p in enumerate(pmf):
        if not p > 0.0:  # also skips NaN
            continue
        cumulative += p
        last_positive = index
        if u < cumulative:
            return index
    if last_positive is None:
        raise ValueError("pmf: no arm has a positive probability")
    # Rounding can leave the cumulative sum a hair below 1.
    return last_positive
