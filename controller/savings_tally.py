"""The sums behind the control-group comparison (pure): who is in which group, per segment.

A request is in the control group when `policies.sampling.in_control` says so
for its request_id and the control fraction in force: the controller
recomputes membership, nodes do not flag it. Controlled traffic is every
other request a policy served (policy_version > 0). Neither counts:
decisions of a node that knew no policy (version 0, its configured
fallback), and control-group members not served at the control arm (a node
that does not implement the control group, or a fraction that changed under
it), counted apart. The sums are mergeable (partitions, replicas) and go
into checkpoints (`tally_snapshot`, `tally_restored`); `controller.savings`
turns them into differences with intervals.
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


def tally_snapshot(tally: SavingsTally) -> dict[str, Any]:
    """A tally as JSON-ready data (a partition checkpoint's `savings`)."""

    def sums(tally: SegmentTally) -> list[list[float]]:
        return [
            [m.n, m.em, m.em_sq, m.tokens, m.tokens_sq] for m in (tally.controlled, tally.control)
        ]

    return {
        "fraction": tally.fraction,
        "control_arm": tally.control_arm,
        "segments": {s: sums(t) for s, t in tally.segments.items()},
        "other": sums(tally.other),
        "unmatched": dict(tally.unmatched),
    }


def _moments_of(sums: list[float]) -> Moments:
    n, *rest = sums
    values = [float(v) for v in rest]
    if int(n) < 0 or not all(map(math.isfinite, values)):
        raise ValueError("savings: counts must be >= 0 and sums finite")
    return Moments(int(n), *values)


def _segment_of(sums: list[list[float]]) -> SegmentTally:
    controlled, control = sums
    return SegmentTally(_moments_of(controlled), _moments_of(control))


def tally_restored(
    data: Any,  # noqa: ANN401 - a checkpoint's JSON, checked here
    fraction: float,
    control_arm: float,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
) -> SavingsTally | None:
    """The tally `tally_snapshot` wrote, or None if it is malformed or of another control group.

    Another fraction or arm means other membership: its sums cannot continue.
    """
    try:
        same = math.isclose(float(data["fraction"]), fraction) and math.isclose(
            float(data["control_arm"]), control_arm
        )
        if not same:
            return None
        tally = SavingsTally(fraction, control_arm, max_segments)
        for key, sums in dict(data["segments"]).items():
            if len(tally.segments) < max_segments:
                tally.segments[str(key)] = _segment_of(sums)
            else:
                tally.other.merge(_segment_of(sums))
        tally.other.merge(_segment_of(data["other"]))
        tally.unmatched = Counter({str(k): int(v) for k, v in dict(data["unmatched"]).items()})
    except (KeyError, TypeError, ValueError):
        return None
    return tally
