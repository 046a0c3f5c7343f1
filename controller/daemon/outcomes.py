"""The daemon's outcome figures: savings tallies per partition, their gauges and /savings.

Each partition this replica owns keeps a `controller.savings.SavingsTally` of
the interactions it learned since the replica took it; the figures merge the
owned partitions' tallies (a revoked partition's is dropped: its new owner
counts it). They are the replica's own traffic since then, not the topic's
history: `stopbandit report` reads that. Cardinality is bounded: segments by
name only for the busiest `control.top_segments`, the rest under `_other`.

`refresh` runs on the loop's thread (at each publish); `document` is read by
HTTP threads: it is one reference, swapped whole.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from stopbandit.controller.savings import FLEET, GROUPS, SavingsTally, savings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.savings import Comparison, Savings
    from stopbandit.streams.join import Interaction


class Outcomes:
    """Savings tallies of the owned partitions, reported as gauges and a JSON document."""

    def __init__(self, config: StopbanditConfig, metrics: Metrics) -> None:
        self._fraction = config.control.fraction
        self._arm = config.control_arm
        self._top = config.control.top_segments
        self._metrics = metrics
        self._tallies: dict[int, SavingsTally] = {}
        self._labelled: set[str] = set()
        self._reasons: set[str] = set()
        self.document: dict[str, Any] = self._empty().to_json()

    def _empty(self) -> Savings:
        return savings(SavingsTally(self._fraction, self._arm), self._top)

    def add(self, partition: int, interaction: Interaction) -> None:
        """Count one interaction learned in `partition`."""
        tally = self._tallies.get(partition)
        if tally is None:
            tally = self._tallies[partition] = SavingsTally(self._fraction, self._arm)
        tally.add(interaction)

    def refresh(self, owned: Iterable[int]) -> Savings:
        """Recompute the figures over the `owned` partitions; set the gauges and the document."""
        owned = set(owned)
        for partition in [p for p in self._tallies if p not in owned]:
            del self._tallies[partition]
        merged = SavingsTally(self._fraction, self._arm)
        for tally in self._tallies.values():
            merged.merge(tally)
        result = savings(merged, self._top)
        self._report(result)
        self.document = result.to_json()
        return result

    def _report(self, result: Savings) -> None:
        m = self._metrics
        labelled = {FLEET: result.fleet, **result.segments}
        for segment in self._labelled - labelled.keys():
            for group in GROUPS:
                for gauge in (m.outcome_requests, m.outcome_em, m.outcome_tokens):
                    gauge.remove(segment, group)
            for gauge in (
                m.savings_em_change,
                m.savings_em_change_se,
                m.savings_token_reduction,
                m.savings_token_reduction_se,
            ):
                gauge.remove(segment)
        for segment, comparison in labelled.items():
            self._set(segment, comparison)
        self._labelled = set(labelled)
        for reason, count in result.unmatched.items():
            m.outcome_unmatched.labels(reason).set(count)
        for reason in self._reasons - result.unmatched.keys():
            m.outcome_unmatched.labels(reason).set(0)
        self._reasons |= result.unmatched.keys()

    def _set(self, segment: str, comparison: Comparison) -> None:
        m = self._metrics
        for group in GROUPS:
            m.outcome_requests.labels(segment, group).set(comparison.requests[group])
            m.outcome_em.labels(segment, group).set(comparison.em[group])
            m.outcome_tokens.labels(segment, group).set(comparison.tokens[group])
        m.savings_em_change.labels(segment).set(comparison.em_change_pts.estimate)
        m.savings_em_change_se.labels(segment).set(comparison.em_change_pts.se)
        m.savings_token_reduction.labels(segment).set(comparison.token_reduction.estimate)
        m.savings_token_reduction_se.labels(segment).set(comparison.token_reduction.se)

    def reference_em(self, segment: str) -> tuple[float, float, int]:
        """The control group's EM in `segment` over the owned partitions: (mean, se, n)."""
        merged = SavingsTally(self._fraction, self._arm)
        for tally in self._tallies.values():
            if segment in tally.segments:
                merged.merge(tally)
        mean, se, n = merged.reference_em(segment)
        return (mean, se, n) if n else (math.nan, math.nan, 0)
