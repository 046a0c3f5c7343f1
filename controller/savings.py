"""What the policies earn: EM and tokens of controlled traffic against the control group (pure).

Who is in which group, and the sums per segment, are `controller.savings_tally`'s
(its names are re-exported here). Membership is independent of the request
(a hash of its id), so the plain difference of the two groups' means is
unbiased for what serving every request by the policies, rather than at the
control arm, changes per request; its standard error is sqrt(v1/n1 + v0/n0).
Fleet-wide, segments differ far more than the two groups do (tokens vary
tenfold between segments), so the fleet figure is post-stratified: each
segment's difference weighted by its share of traffic, segments with too few
requests in either group pooled into one stratum. Token reduction,
1 - tokens1/tokens0, gets its standard error from the delta method.

Everything takes tallies or interactions as arguments: the daemon,
`stopbandit report` and `simulate` share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stopbandit.controller.savings_tally import (
    CONTROL,
    CONTROLLED,
    DEFAULT_MAX_SEGMENTS,
    FLEET,
    GROUPS,
    MIN_PER_GROUP,
    OTHER_SEGMENTS,
    Z_95,
    Moments,
    SavingsTally,
    SegmentTally,
    group_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from stopbandit.streams.join import Interaction

# The tally's names are part of this module's interface: callers import from one place.
__all__ = [
    "CONTROL",
    "CONTROLLED",
    "DEFAULT_MAX_SEGMENTS",
    "FLEET",
    "GROUPS",
    "OTHER_SEGMENTS",
    "Z_95",
    "Comparison",
    "Difference",
    "Moments",
    "Savings",
    "SavingsTally",
    "SegmentTally",
    "compare",
    "compare_strata",
    "group_of",
    "savings",
    "savings_of",
]


@dataclass(frozen=True)
class Difference:
    """An estimate with its standard error (NaN when it cannot be estimated)."""

    estimate: float
    se: float

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        """The normal interval estimate +- z * se."""
        return self.estimate - z * self.se, self.estimate + z * self.se

    def covers(self, value: float, z: float = Z_95) -> bool:
        """Whether the interval holds `value`."""
        low, high = self.interval(z)
        return low <= value <= high

    def to_json(self, z: float = Z_95) -> dict[str, float | None]:
        """{estimate, se, low, high}, None where NaN (JSON has no NaN)."""
        low, high = self.interval(z)
        return {
            "estimate": _num(self.estimate),
            "se": _num(self.se),
            "low": _num(low),
            "high": _num(high),
        }


_UNKNOWN = Difference(math.nan, math.nan)


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Comparison:
    """Controlled against control traffic in one segment, a pool, or the fleet.

    Attributes:
        requests: requests per group.
        em: mean EM per group (fleet-wide: weighted by segment like the differences).
        tokens: mean tokens per group (weighted the same way).
        em_change_pts: controlled minus control EM, in points (100 * EM).
        tokens_change: controlled minus control tokens per request.
        token_reduction: 1 - controlled tokens / control tokens.
    """

    requests: dict[str, int]
    em: dict[str, float]
    tokens: dict[str, float]
    em_change_pts: Difference
    tokens_change: Difference
    token_reduction: Difference

    def to_json(self, z: float = Z_95) -> dict[str, Any]:
        """JSON-ready, NaN as None."""
        return {
            "requests": dict(self.requests),
            "em": {g: _num(v) for g, v in self.em.items()},
            "tokens": {g: _num(v) for g, v in self.tokens.items()},
            "em_change_pts": self.em_change_pts.to_json(z),
            "tokens_change": self.tokens_change.to_json(z),
            "token_reduction": self.token_reduction.to_json(z),
        }


def _ratio_reduction(t1: float, var1: float, t0: float, var0: float) -> Difference:
    # 1 - t1/t0, delta method with the two groups independent.
    if not t0 > 0 or not all(map(math.isfinite, (t1, var1, var0))):
        return _UNKNOWN
    ratio = t1 / t0
    return Difference(1.0 - ratio, math.sqrt(var1 + ratio * ratio * var0) / t0)


def _figures(strata: list[tuple[float, SegmentTally]], pooled: SegmentTally) -> Comparison:
    """Post-stratified means and differences over `strata` (weight, tally).

    The means are the strata's, weighted like the differences, so a row's
    difference is the difference of its means; without strata (too few
    requests), the pooled means of `pooled` and no difference.
    """
    em1 = em0 = em_var = t1 = t0 = var1 = var0 = 0.0
    for weight, tally in strata:
        c1, c0 = tally.controlled, tally.control
        w2 = weight * weight
        em1 += weight * c1.mean_em()
        em0 += weight * c0.mean_em()
        em_var += w2 * (c1.var_em() / c1.n + c0.var_em() / c0.n)
        t1 += weight * c1.mean_tokens()
        t0 += weight * c0.mean_tokens()
        var1 += w2 * c1.var_tokens() / c1.n
        var0 += w2 * c0.var_tokens() / c0.n
    requests = {g: pooled.group(g).n for g in GROUPS}
    if not strata:
        return Comparison(
            requests=requests,
            em={g: pooled.group(g).mean_em() for g in GROUPS},
            tokens={g: pooled.group(g).mean_tokens() for g in GROUPS},
            em_change_pts=_UNKNOWN,
            tokens_change=_UNKNOWN,
            token_reduction=_UNKNOWN,
        )
    return Comparison(
        requests=requests,
        em={CONTROLLED: em1, CONTROL: em0},
        tokens={CONTROLLED: t1, CONTROL: t0},
        em_change_pts=Difference(100 * (em1 - em0), 100 * math.sqrt(em_var)),
        tokens_change=Difference(t1 - t0, math.sqrt(var1 + var0)),
        token_reduction=_ratio_reduction(t1, var1, t0, var0),
    )


def _estimable(tally: SegmentTally) -> bool:
    return tally.controlled.n >= MIN_PER_GROUP and tally.control.n >= MIN_PER_GROUP


def compare(tally: SegmentTally) -> Comparison:
    """The plain difference of means of one segment's (or pool's) two groups."""
    return _figures([(1.0, tally)] if _estimable(tally) else [], tally)


def compare_strata(tallies: Iterable[SegmentTally]) -> Comparison:
    """The fleet-wide, post-stratified comparison of several segments' tallies.

    Segments with fewer than two requests in either group are pooled into one
    stratum (left out if even the pool has too few).
    """
    strata: list[SegmentTally] = []
    residual, everything = SegmentTally(), SegmentTally()
    for tally in tallies:
        everything.merge(tally)
        if _estimable(tally):
            strata.append(tally)
        else:
            residual.merge(tally)
    if _estimable(residual):
        strata.append(residual)
    total = sum(t.n for t in strata)
    return _figures([(t.n / total, t) for t in strata], everything)


@dataclass(frozen=True)
class Savings:
    """The report: per segment (the busiest by name, the rest under `OTHER_SEGMENTS`) and fleet."""

    fraction: float
    control_arm: float
    segments: dict[str, Comparison]
    fleet: Comparison
    unmatched: dict[str, int]

    def to_json(self, z: float = Z_95) -> dict[str, Any]:
        """JSON-ready, the fleet under `FLEET` with the segments."""
        return {
            "control": {"fraction": self.fraction, "arm": self.control_arm},
            "confidence_z": z,
            "fleet": self.fleet.to_json(z),
            "segments": {s: c.to_json(z) for s, c in self.segments.items()},
            "unmatched": dict(sorted(self.unmatched.items())),
        }


def savings(tally: SavingsTally, top_segments: int = 20) -> Savings:
    """Compare the groups per segment (top `top_segments` by traffic) and fleet-wide."""
    ranked = sorted(tally.segments.items(), key=lambda item: (-item[1].n, item[0]))
    named = dict(ranked[:top_segments])
    rest = SegmentTally()
    rest.merge(tally.other)
    for _, segment_tally in ranked[top_segments:]:
        rest.merge(segment_tally)
    segments = {s: compare(t) for s, t in named.items()}
    if rest.n:
        segments[OTHER_SEGMENTS] = compare(rest)
    everything = [t for _, t in ranked]
    if tally.other.n:
        everything.append(tally.other)
    return Savings(
        fraction=tally.fraction,
        control_arm=tally.control_arm,
        segments=segments,
        fleet=compare_strata(everything),
        unmatched=dict(tally.unmatched),
    )


def savings_of(
    interactions: Iterable[Interaction],
    fraction: float,
    control_arm: float,
    *,
    top_segments: int = 20,
) -> Savings:
    """`savings` of a sequence of joined interactions."""
    tally = SavingsTally(fraction, control_arm)
    tally.add_all(interactions)
    return savings(tally, top_segments)
