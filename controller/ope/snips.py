"""Self-normalised inverse propensity scoring (SNIPS).

    V̂_SNIPS = Σ_i w_i y_i / Σ_i w_i,   w_i = π(a_i|x_i) / p_i

Dividing by the realised Σ w_i instead of n trades a small bias for much
less variance, and keeps the estimate inside [min y, max y]
(Swaminathan & Joachims 2015, "The Self-Normalized Estimator for
Counterfactual Learning", NeurIPS). The interval is the delta-method
interval of the ratio (see `intervals.snips_influence`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import intervals
from stopbandit.controller.ope.estimate import Estimate
from stopbandit.controller.ope.ips import weighted_rows

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.ope.rows import Rows


def snips(
    target_probability: NDArray[np.float64],
    logged_probability: NDArray[np.float64],
    y: NDArray[np.float64],
    *,
    confidence: float = 0.95,
    target_pmf: NDArray[np.float64] | None = None,
    arm: NDArray[np.int64] | None = None,
    group: NDArray[np.int64] | None = None,
    min_ess: float = intervals.MIN_ESS,
    min_ess_fraction: float = intervals.MIN_ESS_FRACTION,
) -> Estimate:
    """SNIPS estimate of E_π[y]: V̂ = Σ w_i y_i / Σ w_i, delta-method interval.

    The interval is V̂ ± z · s_ψ / √n, the Wald interval from the sample
    variance of the per-row influence terms ψ_i = w_i (y_i - V̂) / w̄ (delta
    method for a ratio of means). When every weight is zero the target never
    plays a logged arm, the ratio is 0/0, and the value and interval are NaN
    with a warning.

    Args:
        target_probability: π(a_i|x_i), shape (n,), in [0, 1].
        logged_probability: p_i, shape (n,), in (0, 1].
        y: Outcome per row (EM, tokens or per-row reward), shape (n,), finite.
        confidence: Nominal coverage of the interval.
        target_pmf: Optional π(·|x_i), shape (n, K), for support warnings.
        arm: Optional logged arm index per row, shape (n,).
        group: Optional group (segment) index per row, for support warnings.
        min_ess: Warn when the effective sample size is below this.
        min_ess_fraction: Warn when ESS is below this fraction of n.

    Returns:
        The estimate, its interval and its diagnostics.

    Raises:
        ValueError: On inputs of different lengths, probabilities out of
            range, non-finite y, or a target_pmf inconsistent with
            target_probability.
    """
    weights, outcome, warnings = weighted_rows(
        target_probability,
        logged_probability,
        y,
        target_pmf=target_pmf,
        arm=arm,
        group=group,
        min_ess=min_ess,
        min_ess_fraction=min_ess_fraction,
    )
    total = float(weights.sum())
    if total == 0.0:
        value = low = high = std_error = math.nan
    else:
        value = float(np.dot(weights, outcome)) / total
        influence = intervals.snips_influence(weights, outcome, value)
        _, _, std_error = intervals.wald_interval(influence, confidence)
        half_width = intervals.normal_quantile(confidence) * std_error
        low, high = value - half_width, value + half_width
    return Estimate(
        value=value,
        ci_low=low,
        ci_high=high,
        std_error=std_error,
        confidence=confidence,
        ess=intervals.effective_sample_size(weights),
        max_weight=float(weights.max()),
        n=len(weights),
        warnings=warnings,
        estimator="snips",
        interval="wald-delta",
    )


def snips_from_rows(rows: Rows) -> Estimate:
    """SNIPS of one target's rows (registered as `snips`), with the rows' shared warnings.

    Args:
        rows: The target's probabilities, outcome and diagnostics.

    Returns:
        `snips` of the rows, its warnings replaced by `rows.warnings`. For a
        partial target (`Rows.partial`) holding mass m = (1/n) Σ_i Σ_b π(b|x_i)
        the ratio estimates the mean over that mass, so the part is m times it.
    """
    estimate = snips(
        rows.target_probability, rows.logged_probability, rows.y, confidence=rows.confidence
    )
    if rows.partial and rows.target_pmf is not None:
        mass = float(rows.target_pmf.sum(axis=1).mean())
        estimate = replace(
            estimate,
            value=mass * estimate.value,
            ci_low=mass * estimate.ci_low,
            ci_high=mass * estimate.ci_high,
            std_error=mass * estimate.std_error,
        )
    return replace(estimate, warnings=rows.warnings)
