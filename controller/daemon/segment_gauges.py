"""Per-segment policy gauges, bounded: the busiest segments by name, the rest as one.

A label per segment turns a flood of new segments into a flood of time
series (20,000 segments made /metrics 2.6 MB, issue 14). As for the outcome
metrics (`control.top_segments`, daemon/outcomes.py), only the busiest
segments by traffic (interactions learned) and the `*` fallback keep their
own label; every other segment is summarised under `segment="_other"`:

- greedy threshold and exploration share: the traffic-weighted means;
- guardrail blocked arms: the traffic-weighted mean;
- policy version: the highest;
- drift resets: the sum.

`refresh` is O(segments owned) and runs on the loop's thread after a
delivered round in which something changed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stopbandit.policies.builder import exploration_share
from stopbandit.streams.events import FALLBACK_SEGMENT

if TYPE_CHECKING:
    from collections.abc import Mapping

    from prometheus_client import Gauge

    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.streams.events import Policy

OTHER = "_other"


@dataclass(frozen=True, slots=True)
class SegmentFigures:
    """What the gauges show of one segment."""

    traffic: int
    drifts: int
    blocked: int


class SegmentGauges:
    """Sets the per-segment policy gauges for the top `top` segments, `*` and `_other`."""

    def __init__(self, metrics: Metrics, top: int) -> None:
        self._metrics = metrics
        self._top = top
        self._labelled: set[str] = set()
        # Each policy's exploration share, by segment, for the version it was computed at.
        self._shares: dict[str, tuple[int, float]] = {}

    def _gauges(self) -> tuple[Gauge, ...]:
        m = self._metrics
        return (
            m.greedy_threshold,
            m.exploration_share,
            m.guardrail_blocked_arms,
            m.policy_version,
            m.drift_resets,
        )

    def refresh(
        self, policies: Mapping[str, Policy], figures: Mapping[str, SegmentFigures]
    ) -> None:
        """Set the gauges from the published `policies` and each owned segment's `figures`."""
        named = {
            segment
            for segment, _ in heapq.nlargest(
                self._top, ((s, f.traffic) for s, f in figures.items()), key=lambda item: item[1]
            )
        }
        if FALLBACK_SEGMENT in policies:
            named.add(FALLBACK_SEGMENT)
        rest = [s for s in figures if s not in named]
        labelled: set[str] = set()
        for segment in named:
            policy = policies.get(segment)
            figure = figures.get(segment, SegmentFigures(0, 0, 0))
            if policy is not None:
                share = self._share(segment, policy)
                self._set(segment, policy.greedy, share, figure, policy.version)
                labelled.add(segment)
        if rest:
            self._set_other(rest, policies, figures)
            labelled.add(OTHER)
        for segment in self._labelled - labelled:
            for gauge in self._gauges():
                gauge.remove(segment)
        self._labelled = labelled
        if len(self._shares) > 2 * len(policies):
            self._shares = {s: v for s, v in self._shares.items() if s in policies}

    def _share(self, segment: str, policy: Policy) -> float:
        cached = self._shares.get(segment)
        if cached is not None and cached[0] == policy.version:
            return cached[1]
        share = exploration_share(policy)
        self._shares[segment] = (policy.version, share)
        return share

    def _set(
        self,
        segment: str,
        greedy: float,
        share: float,
        figure: SegmentFigures,
        version: int,
        *,
        blocked: float | None = None,
    ) -> None:
        m = self._metrics
        m.greedy_threshold.labels(segment).set(greedy)
        m.exploration_share.labels(segment).set(share)
        m.guardrail_blocked_arms.labels(segment).set(figure.blocked if blocked is None else blocked)
        m.policy_version.labels(segment).set(version)
        m.drift_resets.labels(segment).set(figure.drifts)

    def _set_other(
        self,
        rest: list[str],
        policies: Mapping[str, Policy],
        figures: Mapping[str, SegmentFigures],
    ) -> None:
        weight = greedy = share = blocked = 0.0
        version = drifts = 0
        for segment in rest:
            figure = figures[segment]
            drifts += figure.drifts
            policy = policies.get(segment)
            if policy is None:
                continue
            w = float(max(figure.traffic, 1))
            weight += w
            greedy += w * policy.greedy
            share += w * self._share(segment, policy)
            blocked += w * figure.blocked
            version = max(version, policy.version)
        if weight == 0.0:
            weight = 1.0
        self._set(
            OTHER,
            greedy / weight,
            share / weight,
            SegmentFigures(0, drifts, 0),
            version,
            blocked=blocked / weight,
        )
