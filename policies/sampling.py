"""How a serving node draws a threshold from a pmf, reproducibly from the request_id.

u = (first 8 bytes of SHA-256(request_id), big-endian) / 2**64, then the
first arm whose cumulative probability exceeds u. Any language can do the
same from this line, so a decision can be reproduced anywhere from its
request_id and the policy it was drawn from.

The control group (a policy's optional `control: {fraction, arm}`) is the
same rule on a separate hash domain: c = (first 8 bytes of
SHA-256("stopbandit-control:" + request_id)) / 2**64, and the request is in
the control group when c < fraction; it is then served at the control arm,
otherwise drawn from the pmf as above. The two numbers come from different
hashes, so membership is independent of the draw, and every node (and the
controller, recomputing membership from the request_id) agrees on it with no
coordination. A node logs the probability of what it served under the whole
rule, `fraction * [arm is the control arm] + (1 - fraction) * pmf[arm]`
(`served_pmf`), so importance weights over a log stay those of the rule that
produced it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

_TWO_TO_64 = float(2**64)
CONTROL_DOMAIN = "stopbandit-control:"
"""Prefix of the hashed bytes that decide control-group membership (not the draw's)."""


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


def control_uniform(request_id: str) -> float:
    """A number in [0, 1) fixed by `request_id`, independent of `request_uniform`'s."""
    digest = hashlib.sha256((CONTROL_DOMAIN + request_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_TO_64


def in_control(request_id: str, fraction: float) -> bool:
    """Whether `request_id` is in a control group of `fraction` of the traffic."""
    return fraction > 0.0 and control_uniform(request_id) < fraction


def served_pmf(pmf: Sequence[float], control_index: int, fraction: float) -> list[float]:
    """The distribution a node's whole rule serves from: the control arm's share mixed in."""
    served = [(1.0 - fraction) * p for p in pmf]
    served[control_index] += fraction
    return served


def serve_index(
    pmf: Sequence[float], request_id: str, control: tuple[int, float] | None = None
) -> int:
    """Index of the arm served to `request_id`: the control arm in the control group, else a draw.

    Args:
        pmf: the policy's own pmf (the draw for requests outside the control group).
        request_id: the request's id, which fixes both membership and the draw.
        control: (index of the control arm, fraction), or None when the policy has none.
    """
    if control is not None and in_control(request_id, control[1]):
        return control[0]
    return draw_index(pmf, request_id)
