"""The daemon's outcome figures: the owned partitions' savings tallies, as gauges and /savings.

Each partition's core keeps a `controller.savings.SavingsTally` of every
interaction it learned, in its checkpoint, so the figures carry across
restarts and rebalances: a partition's tally moves with it. The figures
merge the tallies of the partitions this replica owns; with several
replicas each reports its own. Cardinality is bounded: segments by name
only for the busiest `control.top_segments`, the rest under `_other`.

`refresh` runs on the loop's thread (at each publish); `document` is read by
HTTP threads: it is one reference, swapped whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stopbandit.controller.savings import FLEET, GROUPS, SavingsTally, savings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.savings import Comparison, Savings


class Outcomes:
    """The owned partitions' savings tallies, reported as gauges and a JSON document."""

    def __init__(self, config: StopbanditConfig, metrics: Metrics) -> None:
        self._fraction = config.control.fraction
        self._arm = config.control_arm
        self._top = config.control.top_segments
        self._metrics = metrics
        self._labelled: set[str] = set()
        self._reasons: set[str] = set()
        self.document: dict[str, Any] = self._empty().to_json()

    def _empty(self) -> Savings:
        return savings(SavingsTally(self._fraction, self._arm), self._top)

    def refresh(self, tallies: Iterable[SavingsTally]) -> Savings:
        """Recompute the figures over the owned partitions' `tallies`; set gauges and document."""
        merged = SavingsTally(self._fraction, self._arm)
        for tally in tallies:
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
