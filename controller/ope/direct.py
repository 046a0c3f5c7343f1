"""The direct estimate: each arm's mean over the requests that observed it, per segment.

With counterfactual traces (SCHEMA 1.1) a request played at arm a shows its
outcome at every arm b <= a, so an arm is observed on far more requests than
played it. Whether request i observed b depends on the logging policy only
through the arm it played, and that draw is independent of the request's
potential outcomes given its segment; so, within a segment s, the mean of
the observed outcomes at b is an unbiased estimate of the arm's mean there
(as long as a node's tracing does not depend on the outcomes). No propensity
enters: the stratified mean of a missing-at-random design (Little & Rubin
2019, "Statistical Analysis with Missing Data", ch. 3; with side-observations,
Mannor & Shamir 2011). For a target π:

    V̂_direct = Σ_{s,b} (Π_sb / n) ȳ_sb,   ȳ_sb = Σ_{i in s observed b} y_ib / m_sb

with Π_sb = Σ_{i in s} π(b|x_i) (n_s for a fixed arm b: each segment weighted
by its share of logged requests) and m_sb the number of rows of s that
observed b. Its interval is the Wald interval of the per-row influence terms
(the delta method)

    φ_i = Σ_b π(b|x_i) ȳ_{s_i b} - V̂
          + Σ_b 1[i observed b] (Π_{s_i b} / m_{s_i b}) (y_ib - ȳ_{s_i b})

whose first part is the sampling of the segments' shares and the second
each arm's sampling within its segment; the covariance of one request's
outcomes across arms is in the sum. The row weight W_i = Σ_b 1[i observed b]
Π_{s_i b} / m_{s_i b} has mean 1 and, for a fixed arm in one segment, ESS =
m_sb, the count of direct observations. A cell the target plays that no row
observed has no estimate: the value is NaN, with a warning.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import _checks, intervals
from stopbandit.controller.ope.bounds import group_sums
from stopbandit.controller.ope.estimate import Estimate

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.ope.rows import Rows

# A cell with fewer observations has a variance estimate too rough for its interval.
MIN_OBSERVATIONS = 30


def direct(
    target_pmf: NDArray[np.float64],
    observed: NDArray[np.bool_],
    y: NDArray[np.float64],
    group: NDArray[np.int64],
    *,
    confidence: float = 0.95,
    min_observations: int = MIN_OBSERVATIONS,
    partial: bool = False,
) -> Estimate:
    """The direct estimate of E_π[y] of the module docstring, with its Wald interval.

    Args:
        target_pmf: π(·|x_i), shape (n, K), rows summing to 1.
        observed: Whether row i observed arm b, shape (n, K).
        y: Outcome of row i at arm b, shape (n, K), finite where observed.
        group: Group (segment) index per row, shape (n,): the strata.
        confidence: Nominal coverage of the interval.
        min_observations: Warn about a cell the target plays with fewer observations.
        partial: Rows of target_pmf may sum to less than 1 (`Rows.partial`).

    Returns:
        The estimate (NaN where a played cell was never observed) and its diagnostics.

    Raises:
        ValueError: On inconsistent shapes or non-finite observed outcomes.
    """
    pmf = _checks.target_pmf(target_pmf, partial=partial)
    n = pmf.shape[0]
    seen = _checks.observed(observed, pmf.shape)
    values = np.where(seen, _checks.observed_values("y", y, seen), 0.0)
    groups = _checks.indices("group", group)
    _checks.same_length(target_pmf=pmf, group=groups)
    level = _checks.confidence(confidence)
    n_groups = int(groups.max()) + 1
    mass = group_sums(pmf, groups, n_groups)
    count = group_sums(seen.astype(np.float64), groups, n_groups)
    total = group_sums(values, groups, n_groups)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    scale = np.divide(mass, count, out=np.zeros_like(mass), where=count > 0)
    weights = (seen * scale[groups]).sum(axis=1)
    played = mass > 0.0
    missing = [
        f"no direct observation: group {g} arm {a} never observed "
        f"(target mass {mass[g, a] / np.count_nonzero(groups == g):.3g})"
        for g, a in zip(*np.nonzero(played & (count == 0)), strict=True)
    ]
    if missing:
        return _unavailable(weights, n, level, tuple(missing))
    # V̂ + φ_i: their mean is V̂, as the residuals sum to zero within each cell.
    plug_in = (pmf * mean[groups]).sum(axis=1)
    residual = np.where(seen, values - mean[groups], 0.0)
    terms = plug_in + (scale[groups] * residual).sum(axis=1)
    few = tuple(
        f"few direct observations: group {g} arm {a} observed {int(count[g, a])} times"
        for g, a in zip(*np.nonzero(played & (count < min_observations)), strict=True)
    )
    return intervals.wald_estimate(
        terms,
        weights,
        confidence=level,
        warnings=intervals.weight_warnings(weights) + few,
        estimator="direct",
    )


def _unavailable(
    weights: NDArray[np.float64], n: int, confidence: float, warnings: tuple[str, ...]
) -> Estimate:
    return Estimate(
        value=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        std_error=math.nan,
        confidence=confidence,
        ess=intervals.effective_sample_size(weights),
        max_weight=float(weights.max()),
        n=n,
        warnings=warnings,
        estimator="direct",
        interval="wald",
    )


def direct_from_rows(rows: Rows) -> Estimate:
    """The direct estimate of one target's rows (registered as `direct`).

    Raises:
        ValueError: On rows without a target pmf or a graph.
    """
    graph = rows.graph
    if rows.target_pmf is None or graph is None:
        raise ValueError("the direct estimate needs the target pmf and the rows' observations")
    return direct(
        rows.target_pmf,
        graph.observed,
        graph.y,
        graph.group,
        confidence=rows.confidence,
        partial=rows.partial,
    )
