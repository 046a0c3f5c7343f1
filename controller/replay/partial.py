"""A target's identified part, its bounds per outcome, and the one note that says so.

`controller.replay.evaluate` splits each target's mass, per kind of estimator,
into what the log identifies (`controller.replay.support`) and the rest; this
module turns an estimator's estimate of the identified part into bounds on the
whole target (`controller.ope.bounds`) and writes the note each policy carries
once: how much is bounded, why (cells barely observed, or decisions whose
logging pmf excluded the arm), the cells that weigh most, and the range
assumed there.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import Estimate
from stopbandit.controller.ope.bounds import bounded, group_sums
from stopbandit.streams.arms import arm_label

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.replay.support import Support

# Mass below this is rounding, not a part of the target left unidentified.
MASS_TOLERANCE = 1e-9
_CELLS_NAMED = 2


def split(
    pmf: NDArray[np.float64], mask: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(identified part of the pmf, unidentified mass per row)."""
    identified = np.where(mask, pmf, 0.0)
    per_row = np.clip(pmf.sum(axis=1) - identified.sum(axis=1), 0.0, 1.0)
    return identified, per_row


def bounded_outcomes(
    part: dict[str, Estimate] | None,
    per_row: NDArray[np.float64],
    segment: NDArray[np.int64],
    support: Support,
    *,
    estimator: str,
    confidence: float,
) -> dict[str, Estimate]:
    """Each outcome's bounds: the part's interval plus the unidentified mass times the range."""
    unidentified = float(per_row.mean())
    template = nothing_identified(per_row.size, estimator, confidence)
    return {
        outcome: bounded(
            None if part is None else part[outcome],
            unidentified,
            *(float(np.dot(per_row, r[segment])) / per_row.size for r in ranges),
            template=template,
        )
        for outcome, ranges in support.ranges.items()
    }


def bounds_note(
    pmf: NDArray[np.float64],
    mask: NDArray[np.bool_],
    segment: NDArray[np.int64],
    support: Support,
    names: tuple[list[str], list[float]],
    *,
    traced: bool,
    row_support: bool,
) -> str:
    """One sentence per policy and kind: how much is bounded, why, and the cells that weigh most.

    Args:
        pmf: The target's pmf over the scope's rows.
        mask: The identified (row, arm) entries.
        segment: Segment index per row.
        support: The log's support.
        names: The segments' keys and the arms, to name cells.
        traced: The kind reads traces.
        row_support: The kind also needs each row's logging pmf to allow the arm.
    """
    segments, arms = names
    cell_ok = support.cells[traced][segment]
    by_cell = group_sums(np.where(~cell_ok, pmf, 0.0), segment, len(segments)) / pmf.shape[0]
    cells = [
        f"{segments[g]} @ {arm_label(arms[a])} ({by_cell[g, a]:.1%})"
        for g, a in sorted(zip(*np.nonzero(by_cell > 0.0), strict=True), key=lambda c: -by_cell[c])
    ]
    seen = "observed (played or traced)" if traced else "played"
    parts = []
    if cells:
        named = ", ".join(cells[:_CELLS_NAMED]) + (
            f" and {len(cells) - _CELLS_NAMED} more" if len(cells) > _CELLS_NAMED else ""
        )
        parts.append(
            f"{float(by_cell.sum()):.1%} on arms barely {seen} "
            f"(ESS < {support.min_ess:g} in the segment): {named}"
        )
    if row_support:
        undrawable = float(np.where(cell_ok & ~mask, pmf, 0.0).sum()) / pmf.shape[0]
        if undrawable > MASS_TOLERANCE:
            parts.append(f"{undrawable:.1%} on decisions whose logging pmf excluded the arm")
    em, tokens = support.ranges["em"], support.ranges["tokens"]
    present = np.unique(segment)
    return (
        "bounds, not an interval: " + "; ".join(parts) + "; there EM is only known to lie in "
        f"[{em[0][present].min():g}, {em[1][present].max():g}] and tokens in their segment's "
        f"observed range ({tokens[0][present].min():,.0f} to {tokens[1][present].max():,.0f})"
    )


def nothing_identified(n: int, estimator: str, confidence: float) -> Estimate:
    """The diagnostics of an estimate with nothing identified (its bounds are the range)."""
    return Estimate(
        value=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        std_error=math.nan,
        confidence=confidence,
        ess=0.0,
        max_weight=0.0,
        n=n,
        warnings=(),
        estimator=estimator,
        interval="bounds",
    )
