"""The control group in a simulated run: what the controller would report, and the truth.

The report is `controller.savings` over the run's joined interactions, the
groups recomputed from request_ids as the daemon does. The truth comes from
the scenario's curves: for each controlled request, the EM and tokens
expected under the pmf that served it (the policy's own, the draw outside
the control group) and those of the control arm in the same segment at the
same moment; their differences averaged over the controlled traffic are
what the reported differences estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stopbandit.controller.savings import CONTROLLED, SavingsTally, savings
from stopbandit.streams.join import Interaction

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stopbandit.streams.events import Decision, Outcome, Policy


@dataclass
class _Truth:
    """Sums over one segment's controlled requests of expected figures."""

    n: int = 0
    em: float = 0.0
    tokens: float = 0.0
    control_em: float = 0.0
    control_tokens: float = 0.0

    def add(self, other: _Truth) -> None:
        self.n += other.n
        self.em += other.em
        self.tokens += other.tokens
        self.control_em += other.control_em
        self.control_tokens += other.control_tokens

    def to_json(self) -> dict[str, float | None]:
        if not self.n:
            return {"requests": 0, "em_change_pts": None, "tokens_change": None}
        return {
            "requests": self.n,
            "em_change_pts": 100 * (self.em - self.control_em) / self.n,
            "tokens_change": (self.tokens - self.control_tokens) / self.n,
            "token_reduction": 1 - self.tokens / self.control_tokens
            if self.control_tokens > 0
            else None,
        }


@dataclass
class ControlLedger:
    """Tally of a run's control group against the truth of its scenario.

    Args:
        fraction: the control fraction the run's policies carry.
        control_arm: the arm control requests are served at.
        top_segments: segments reported by name.
    """

    fraction: float
    control_arm: float
    top_segments: int = 20
    tally: SavingsTally = field(init=False)
    _truth: dict[str, _Truth] = field(default_factory=dict)
    _expected: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tally = SavingsTally(self.fraction, self.control_arm)

    def drifted(self) -> None:
        """The curves changed: forget the expected figures computed under the old ones."""
        self._expected.clear()

    def record(
        self,
        decision: Decision,
        outcome: Outcome,
        policy: Policy | None,
        expected: tuple[Sequence[float], Sequence[float]],
        control_index: int,
    ) -> None:
        """Count one finished request; `expected` is its segment's (EM, tokens) rows now."""
        em, tokens = expected
        group = self.tally.add(Interaction.of(decision, outcome))
        if group != CONTROLLED or policy is None:
            return
        key = (policy.version, id(em))
        under_pmf = self._expected.get(key)
        if under_pmf is None:
            under_pmf = self._expected[key] = (
                math.fsum(p * e for p, e in zip(policy.pmf, em, strict=True)),
                math.fsum(p * t for p, t in zip(policy.pmf, tokens, strict=True)),
            )
        truth = self._truth.setdefault(decision.segment, _Truth())
        truth.n += 1
        truth.em += under_pmf[0]
        truth.tokens += under_pmf[1]
        truth.control_em += em[control_index]
        truth.control_tokens += tokens[control_index]

    def report(self) -> dict[str, Any]:
        """The reported figures (`controller.savings`) with the truth beside them."""
        document = savings(self.tally, self.top_segments).to_json()
        fleet = _Truth()
        for truth in self._truth.values():
            fleet.add(truth)
        document["truth"] = {
            "fleet": fleet.to_json(),
            "segments": {s: t.to_json() for s, t in self._truth.items()},
        }
        return document
