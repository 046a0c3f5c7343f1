"""How much one segment may weigh in what all segments share (pure): the pool's caps.

What segments share (the curve shape and the fleet's step scale in
`pooling`, the support one segment lends another in `outcome`, the `*`
fallback in `controller.core`) must not be one segment's alone, however
much traffic it sends: one fake segment of constant outcomes (variance 0,
so precision at the variance floor) set the shape and moved real segments'
greedy arms (issue 14). `pool_weights` caps each (segment, arm) mean's
weight three ways:

- per observation, at `MAX_PRECISION_RATIO` times the arm's median
  segment: data of no spread cannot pass for near-certainty (per arm,
  because arms legitimately differ: tokens under a small budget hardly
  vary);
- per segment, in all, at `MAX_SEGMENT_RATIO` times the median segment
  (`capped_rows`);
- per arm, at `MAX_ARM_RATIO` times all the other segments there
  together (`capped_columns`): at most half of an arm that
  `MIN_ARM_SEGMENTS` or more segments share. This is what bounds a
  segment on an arm the real segments barely play (the lowest
  thresholds), where a fake segment's traffic would otherwise be nearly
  all of the arm's weight.

A cap per arm against the arm's median segment (twice it) was tried
before and cost the token-budget scenario much of its online gap closed:
its heavy segments carry the thin arms' information. A cap at the rest of
the arm leaves them half of it, and a segment's own estimates see its own
data uncapped (`pooling.fit_shapes`): the caps bound what a segment lends
the others, not what it knows of itself. bench/poisoning.py measures what
one fake segment moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

# Per observation, a segment weighs at most this many times the median segment's in the pool.
MAX_PRECISION_RATIO = 2.0
# In all, a segment weighs at most this many times the median segment in the pool.
MAX_SEGMENT_RATIO = 3.0
# On one arm, a segment weighs at most this many times all the other segments there together,
MAX_ARM_RATIO = 1.0
# where at least this many segments have data (a majority to stand against one).
MIN_ARM_SEGMENTS = 3


def capped_rows(
    weight: NDArray[np.float64], ratio: float = MAX_SEGMENT_RATIO
) -> NDArray[np.float64]:
    """`weight` (S, K) with each row's sum cut to at most `ratio` times the median row's.

    The median is over rows with any weight: one vote per segment, so no
    segment's own traffic can raise its cap.
    """
    row = weight.sum(axis=-1)
    active = row > 0.0
    if active.sum() < 2:  # noqa: PLR2004 - one segment has nobody to dominate
        return weight
    cap = ratio * float(np.median(row[active]))
    factor = np.divide(cap, row, out=np.ones_like(row), where=row > cap)
    return np.asarray(weight * np.minimum(factor, 1.0)[:, None], dtype=np.float64)


def capped_columns(
    weight: NDArray[np.float64], ratio: float = MAX_ARM_RATIO
) -> NDArray[np.float64]:
    """`weight` (S, K) with each entry cut to at most `ratio` times the rest of its column.

    At `ratio` 1 no segment holds more than half of any arm's weight (one pass
    is exact: only one entry can exceed the rest of its column). An arm with
    fewer than `MIN_ARM_SEGMENTS` segments keeps its weights: of two, neither
    can be told from a poisoner, and evening them out would only throw away
    the larger one's data (drift-example's two segments: gsm8k, 70 % of the
    traffic, no longer followed its drifted curve to 0.99 at cost 0.02).
    """
    others = weight.sum(axis=0)[None, :] - weight
    shared = (weight > 0.0).sum(axis=0)[None, :] >= MIN_ARM_SEGMENTS
    return np.asarray(
        np.where(shared, np.minimum(weight, ratio * others), weight), dtype=np.float64
    )


def pool_weights(
    precision: NDArray[np.float64],
    counts: NDArray[np.float64],
    *,
    arm_cap: bool = True,
) -> NDArray[np.float64]:
    """The weights of each (segment, arm) mean in what segments share, (S, K).

    On each arm, a segment's precision per observation (1 / its variance)
    is cut to `MAX_PRECISION_RATIO` times the median segment's on that arm.
    Then each segment's total is cut by `capped_rows`, and (with `arm_cap`)
    each of its arms by `capped_columns`. `counts` are the observations
    behind each mean (own and prior pseudo-observations).
    """
    seen = (precision > 0.0) & (counts > 0.0)
    if not seen.any():
        return precision
    per_observation = np.where(seen, precision / np.where(seen, counts, 1.0), np.nan)
    enough = seen.sum(axis=0) >= 2  # noqa: PLR2004 - one segment has nobody to dominate
    cap = np.full(precision.shape[1], np.inf)
    if enough.any():
        cap[enough] = MAX_PRECISION_RATIO * np.nanmedian(per_observation[:, enough], axis=0)
    with np.errstate(invalid="ignore"):  # inf * 0 where an arm has one segment
        limit = cap[None, :] * counts
    rows = capped_rows(np.where(seen & (limit < precision), limit, precision))
    return capped_columns(rows) if arm_cap else rows
