"""The EM guardrail (pure): arms that confidently lose more than δ EM points are kept out.

Operators state outcomes, not weights: "save tokens, but lose at most δ EM
points on any segment". An arm whose EM is, at `confidence`, more than δ
points below the reference arm's is *blocked*: it never becomes the greedy
arm and gets at most the exploration floor (enough to notice a drift that
makes it safe again, not enough to cost EM). An arm whose *estimated* drop
is over δ, but not yet confidently, may be explored but not be greedy
either: the greedy arm is always one believed to keep the limit. (Requiring
the drop to be confidently within δ before an arm may be greedy was
measured too: on bench/guardrail.py no segment left the reference in 30k
requests, since the reference itself is then the only proven arm.)

The test is one-sided on the difference em[reference] - em[k], with its
standard error from the joint belief (var_ref + var_k - 2 cov): neighbouring
arms are strongly correlated in the learners' posterior (and paired when
nodes send traces), so the difference is much better known than either arm.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from numpy.typing import NDArray

DropPts = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
# "*" in a per-segment mapping: the δ of every segment the mapping does not name (and of `*`).
OTHER_SEGMENTS = "*"
DEFAULT_REFERENCE_SHARE = 0.03


class GuardrailConfig(BaseModel):
    """The `guardrail` config section.

    Attributes:
        max_em_drop_pts: the most EM points (0-100) a segment may lose against the
            reference arm: one number for every segment, a mapping segment -> points
            (`"*"` for the segments it does not name; unnamed ones are unconstrained
            without it), or None for no guardrail.
        confidence: one-sided confidence at which an arm's drop must exceed δ to be blocked.
        reference_share: least probability of the reference arm in a guarded segment's
            policy (within exploration.max_explore), so the EM every drop is measured
            against keeps being measured; 0 when the control group serves the reference.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_em_drop_pts: DropPts | dict[str, DropPts] | None = None
    confidence: Annotated[float, Field(ge=0.5, lt=1.0, allow_inf_nan=False)] = 0.95
    reference_share: Annotated[float, Field(ge=0.0, le=0.2, allow_inf_nan=False)] = (
        DEFAULT_REFERENCE_SHARE
    )

    def drop_pts_for(self, segment: str | None) -> float | None:
        """δ of `segment` in EM points (None: not constrained); None segment is `*`'s."""
        limit = self.max_em_drop_pts
        if limit is None or isinstance(limit, float | int):
            return limit
        if segment is not None and segment in limit:
            return limit[segment]
        return limit.get(OTHER_SEGMENTS)


def em_drop(
    em: NDArray[np.float64], em_cov: NDArray[np.float64], reference: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each arm's EM drop against `reference` (em[ref] - em[k]) and its standard error."""
    variance = em_cov[reference, reference] + np.diag(em_cov) - 2.0 * em_cov[reference, :]
    return em[reference] - em, np.sqrt(np.maximum(variance, 0.0))


def blocked_arms(
    em: NDArray[np.float64],
    em_cov: NDArray[np.float64],
    reference: int,
    max_drop_pts: float,
    confidence: float,
) -> NDArray[np.bool_]:
    """Arms whose EM drop against `reference` exceeds `max_drop_pts` at `confidence`."""
    drop, sd = em_drop(em, em_cov, reference)
    z = NormalDist().inv_cdf(confidence)
    blocked = drop - z * sd > max_drop_pts / 100.0
    blocked[reference] = False  # its drop is 0 by definition, whatever the rounding
    return np.asarray(blocked, dtype=np.bool_)


def over_limit(
    em: NDArray[np.float64], em_cov: NDArray[np.float64], reference: int, max_drop_pts: float
) -> NDArray[np.bool_]:
    """Arms whose estimated EM drop exceeds `max_drop_pts`: they may not be greedy.

    Not yet `blocked` (the drop is not confident), so still explored as usual:
    more evidence either clears them or blocks them.
    """
    drop, _ = em_drop(em, em_cov, reference)
    over = drop > max_drop_pts / 100.0
    over[reference] = False
    return np.asarray(over, dtype=np.bool_)


def true_drop_allowed(
    em: NDArray[np.float64], reference: int, max_drop_pts: float | None
) -> NDArray[np.bool_]:
    """Arms whose known (true) EM drop is within δ: the guardrailed oracle's choices."""
    if max_drop_pts is None:
        return np.ones(len(em), dtype=np.bool_)
    # A hair of tolerance: a curve stated in points must not miss δ by float rounding.
    return np.asarray(100.0 * (em[reference] - em) <= max_drop_pts + 1e-9, dtype=np.bool_)
