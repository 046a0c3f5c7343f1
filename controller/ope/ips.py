"""Inverse propensity scoring (IPS).

    V̂_IPS = (1/n) Σ_i w_i y_i,   w_i = π(a_i|x_i) / p_i

where a_i is the logged arm, p_i the probability the logging policy drew it
with, and π the target policy. Unbiased when p_i > 0 wherever π puts mass
(Horvitz & Thompson 1952, "A generalization of sampling without replacement
from a finite universe", JASA; Dudík, Langford & Li 2011, "Doubly Robust
Policy Evaluation and Learning", ICML).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from stopbandit.controller.ope import _checks, intervals

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from stopbandit.controller.ope.estimate import Estimate
    from stopbandit.controller.ope.rows import Rows


def importance_weights(
    target_probability: NDArray[np.float64], logged_probability: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Importance weights w_i = π(a_i|x_i) / p_i.

    Args:
        target_probability: π(a_i|x_i) of the logged arm under the target, in [0, 1], shape (n,).
        logged_probability: p_i, the logged propensity, in (0, 1], shape (n,).

    Returns:
        w, shape (n,), each >= 0.

    Raises:
        ValueError: On shapes that differ or probabilities out of range.
    """
    target = _checks.target_probability(target_probability)
    logged = _checks.logged_probability(logged_probability)
    _checks.same_length(target_probability=target, logged_probability=logged)
    return target / logged


def weighted_rows(
    target_probability: NDArray[np.float64],
    logged_probability: NDArray[np.float64],
    y: NDArray[np.float64],
    *,
    target_pmf: NDArray[np.float64] | None,
    arm: NDArray[np.int64] | None,
    group: NDArray[np.int64] | None,
    min_ess: float,
    min_ess_fraction: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[str, ...]]:
    """Checked importance weights, outcomes and weight/support warnings (IPS and SNIPS).

    Raises:
        ValueError: As `ips` documents.
    """
    weights = importance_weights(target_probability, logged_probability)
    outcome = _checks.vector("y", y)
    _checks.same_length(weights=weights, y=outcome)
    _checks.optional_pmf(target_probability, target_pmf, arm, group)
    warnings = intervals.diagnose(
        weights,
        target_pmf=target_pmf,
        arm=arm,
        group=group,
        min_ess=min_ess,
        min_ess_fraction=min_ess_fraction,
    )
    return weights, outcome, warnings


def ips(
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
    """IPS estimate of E_π[y]: V̂ = (1/n) Σ w_i y_i with a Wald interval.

    The interval is the Wald interval from the sample variance of the per-row
    terms w_i y_i. `y` is any per-row outcome (EM, tokens, or a reward
    computed per row), so one set of weights serves every outcome; for a
    reward that is linear in EM and tokens, pass the per-row reward values
    so that the interval accounts for their covariance.

    Args:
        target_probability: π(a_i|x_i), shape (n,), in [0, 1].
        logged_probability: p_i, shape (n,), in (0, 1].
        y: Outcome per row, shape (n,), finite.
        confidence: Nominal coverage of the interval.
        target_pmf: Optional π(·|x_i), shape (n, K); with `arm`, enables
            missing-support warnings and is checked against target_probability.
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
    return intervals.wald_estimate(
        weights * outcome, weights, confidence=confidence, warnings=warnings, estimator="ips"
    )


def ips_from_rows(rows: Rows) -> Estimate:
    """IPS of one target's rows (registered as `ips`), with the rows' shared warnings.

    Args:
        rows: The target's probabilities, outcome and diagnostics.

    Returns:
        `ips` of the rows, its warnings replaced by `rows.warnings`.
    """
    estimate = ips(
        rows.target_probability, rows.logged_probability, rows.y, confidence=rows.confidence
    )
    return replace(estimate, warnings=rows.warnings)
