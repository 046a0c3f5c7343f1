"""What the policies earn: EM and tokens of controlled traffic against the control group (pure).

A request is in the control group when `policies.sampling.in_control` says so
for its request_id and the configured fraction: the controller recomputes
membership, nodes do not flag it. Controlled traffic is every other request a
policy served (policy_version > 0). Neither counts: decisions of a node that
knew no policy (version 0, its configured fallback), and control-group
members not served at the control arm (a node that does not implement the
control group, or a fraction that changed under it), counted apart.

Membership is independent of the request (a hash of its id), so the plain
difference of the two groups' means is unbiased for what serving every
request by the policies, rather than at the control arm, changes per
request; its standard error is sqrt(v1/n1 + v0/n0). Fleet-wide, segments
differ far more than the two groups do (tokens vary tenfold between
segments), so the fleet figure is post-stratified: each segment's difference
weighted by its share of traffic, segments with too few requests in either
group pooled into one stratum. Token reduction, 1 - tokens1/tokens0, gets its
standard error from the delta method.

Everything takes interactions as arguments: the daemon, `stopbandit report`
and `simulate` share it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stopbandit.policies.sampling import in_control

if TYPE_CHECKING:
    from collections.abc import Iterable

    from stopbandit.streams.join import Interaction

CONTROLLED = "controlled"
CONTROL = "control"
GROUPS = (CONTROLLED, CONTROL)
OTHER_SEGMENTS = "_other"
"""The label of segments not reported by name (beyond the top by traffic, or the tracked)."""
FLEET = "_all"
"""The label of the fleet-wide figures."""
DEFAULT_MAX_SEGMENTS = 10_000
# A group needs two requests for a variance: below that, a segment joins the pooled stratum.
MIN_PER_GROUP = 2
Z_95 = 1.959963984540054


@dataclass
class Moments:
    """Sums of one group's EM and tokens (mergeable; n counts requests)."""

    n: int = 0
    em: float = 0.0
    em_sq: float = 0.0
    tokens: float = 0.0
    tokens_sq: float = 0.0

    def add(self, em: float, tokens: float) -> None:
        """Count one request."""
        self.n += 1
        self.em += em
        self.em_sq += em * em
        self.tokens += tokens
        self.tokens_sq += tokens * tokens

    def merge(self, other: Moments) -> None:
        """Add another group's sums."""
        self.n += other.n
        self.em += other.em
        self.em_sq += other.em_sq
        self.tokens += other.tokens
        self.tokens_sq += other.tokens_sq

    def mean_em(self) -> float:
        """Mean EM (NaN without requests)."""
        return self.em / self.n if self.n else math.nan

    def mean_tokens(self) -> float:
        """Mean tokens (NaN without requests)."""
        return self.tokens / self.n if self.n else math.nan

    def var_em(self) -> float:
        """Sample variance of EM (n - 1 in the denominator)."""
        return _variance(self.n, self.em, self.em_sq)

    def var_tokens(self) -> float:
        """Sample variance of tokens."""
        return _variance(self.n, self.tokens, self.tokens_sq)


def _variance(n: int, total: float, total_sq: float) -> float:
    if n < MIN_PER_GROUP:
        return math.nan
    # Rounding can leave a constant group's sum of squares a hair below n * mean**2.
    return max(total_sq - total * total / n, 0.0) / (n - 1)


@dataclass
class SegmentTally:
    """Both groups of one segment (or of a pool of segments)."""

    controlled: Moments = field(default_factory=Moments)
    control: Moments = field(default_factory=Moments)

    @property
    def n(self) -> int:
        """Requests in either group."""
        return self.controlled.n + self.control.n

    def merge(self, other: SegmentTally) -> None:
        """Add another tally's sums."""
        self.controlled.merge(other.controlled)
        self.control.merge(other.control)

    def group(self, name: str) -> Moments:
        """The `controlled` or `control` group."""
        return self.control if name == CONTROL else self.controlled


def group_of(interaction: Interaction, fraction: float, control_arm: float) -> str | None:
    """`controlled`, `control`, or None for a request that is neither (see the module doc)."""
    return _classify(interaction, fraction, control_arm)[0]


def _classify(
    interaction: Interaction, fraction: float, control_arm: float
) -> tuple[str | None, str | None]:
    # (group, reason it has none)
    if interaction.policy_version == 0:
        return None, "fallback"
    if not in_control(interaction.request_id, fraction):
        return CONTROLLED, None
    if math.isclose(interaction.threshold, control_arm):
        return CONTROL, None
    return None, "control_not_served"


class SavingsTally:
    """Per-segment sums of both groups, in bounded memory.

    Args:
        fraction: the control fraction in force when the events were logged.
        control_arm: the arm control requests are served at.
        max_segments: segments tallied by name; later ones are pooled under
            `OTHER_SEGMENTS` (a flood of segments cannot grow the tally).
    """

    def __init__(
        self, fraction: float, control_arm: float, max_segments: int = DEFAULT_MAX_SEGMENTS
    ) -> None:
        self.fraction = fraction
        self.control_arm = control_arm
        self.max_segments = max_segments
        self.segments: dict[str, SegmentTally] = {}
        self.other = SegmentTally()
        self.unmatched: Counter[str] = Counter()
        """Requests in neither group, by reason (`fallback`, `control_not_served`)."""

    def add(self, interaction: Interaction) -> str | None:
        """Count one joined interaction; returns its group (None: neither)."""
        group, reason = _classify(interaction, self.fraction, self.control_arm)
        if group is None:
            self.unmatched[reason or "unknown"] += 1
            return None
        tally = self.segments.get(interaction.segment)
        if tally is None:
            if len(self.segments) < self.max_segments:
                tally = self.segments[interaction.segment] = SegmentTally()
            else:
                tally = self.other
        tally.group(group).add(interaction.em, float(interaction.tokens))
        return group

    def add_all(self, interactions: Iterable[Interaction]) -> None:
        """Count every interaction."""
        for interaction in interactions:
            self.add(interaction)

    def merge(self, other: SavingsTally) -> None:
        """Add another tally's sums (another partition's, say); its pool stays pooled."""
        for segment, tally in other.segments.items():
            mine = self.segments.get(segment)
            if mine is None and len(self.segments) < self.max_segments:
                mine = self.segments[segment] = SegmentTally()
            (mine if mine is not None else self.other).merge(tally)
        self.other.merge(other.other)
        self.unmatched.update(other.unmatched)

    def reference_em(self, segment: str) -> tuple[float, float, int]:
        """The control group's EM in `segment`: (mean, standard error, n); NaN when too few.

        When the control arm is the reference arm, an unbiased estimate of the
        reference EM that no model stands between (for the guardrail).
        """
        tally = self.segments.get(segment)
        moments = tally.control if tally is not None else Moments()
        se = math.sqrt(moments.var_em() / moments.n) if moments.n >= MIN_PER_GROUP else math.nan
        return moments.mean_em(), se, moments.n


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
        em: mean EM per group.
        tokens: mean tokens per group.
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
    """Post-stratified differences over `strata` (weight, tally); `pooled` gives the means."""
    em_diff = em_var = tok_diff = tok_var = t1 = t0 = var1 = var0 = 0.0
    for weight, tally in strata:
        c1, c0 = tally.controlled, tally.control
        w2 = weight * weight
        em_diff += weight * (c1.mean_em() - c0.mean_em())
        em_var += w2 * (c1.var_em() / c1.n + c0.var_em() / c0.n)
        t1 += weight * c1.mean_tokens()
        t0 += weight * c0.mean_tokens()
        var1 += w2 * c1.var_tokens() / c1.n
        var0 += w2 * c0.var_tokens() / c0.n
    tok_diff, tok_var = t1 - t0, var1 + var0
    known = bool(strata)
    return Comparison(
        requests={g: pooled.group(g).n for g in GROUPS},
        em={g: pooled.group(g).mean_em() for g in GROUPS},
        tokens={g: pooled.group(g).mean_tokens() for g in GROUPS},
        em_change_pts=Difference(100 * em_diff, 100 * math.sqrt(em_var)) if known else _UNKNOWN,
        tokens_change=Difference(tok_diff, math.sqrt(tok_var)) if known else _UNKNOWN,
        token_reduction=_ratio_reduction(t1, var1, t0, var0) if known else _UNKNOWN,
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
