"""Target mode in a simulated run: λ's path next to what the scenario's truth says was achieved.

The controller steps λ from what it can measure (realised tokens and EM, the
learners' estimate of the reference arm); the simulator also knows the truth,
the expected tokens and EM of every arm played and of the reference arm, so
the report shows both: the controller's figure and the true one, per block of
interactions, next to the target. `true_achieved` over a block is the
targeted metric (points) computed from the truth's expected sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stopbandit.controller.targets import Totals

if TYPE_CHECKING:
    from stopbandit.controller.targets import TargetMode

BLOCK = 10_000


@dataclass
class TargetTrace:
    """λ and the true cumulative sums at every publish of a simulated run."""

    target: TargetMode
    block: int = BLOCK
    marks: list[tuple[int, float, Totals]] = field(default_factory=list)

    def record(self, interactions: int, truth: Totals) -> None:
        """After a publish: the interactions so far, the λ now in force, the true sums so far."""
        self.marks.append((interactions, self.target.lambda_, truth))

    def true_achieved(self, start: int, end: int) -> float | None:
        """The true metric over the interactions between two recorded marks (points)."""
        at = {interactions: totals for interactions, _, totals in self.marks}
        if end not in at:
            return None
        before = at.get(start, Totals())
        return (at[end] - before).achieved(self.target.controller.metric)

    def report(self) -> dict[str, Any]:
        """The core's target report plus true figures per block of `block` interactions."""
        report = self.target.report()
        ends = [i for i, _, _ in self.marks if i % self.block == 0]
        lambdas = {i: value for i, value, _ in self.marks}
        report["blocks"] = [
            {
                "from": end - self.block,
                "to": end,
                "true_achieved": self.true_achieved(end - self.block, end),
                "lambda_end": lambdas[end],
            }
            for end in ends
        ]
        report["true_path"] = [
            [i, value, self.true_achieved(previous, i)]
            for (previous, _, _), (i, value, _) in zip(
                [(0, 0.0, Totals()), *self.marks[:-1]], self.marks, strict=True
            )
        ]
        return report
