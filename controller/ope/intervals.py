"""Confidence intervals and trust diagnostics for off-policy estimates.

Every interval here is a normal-approximation (CLT) interval: an estimator
that is a mean of per-row terms φ_i gets the Wald interval from the sample
variance of those terms,

    V̂ ± z_{1-alpha/2} · s_φ / √n,   s_φ² = Σ (φ_i - φ̄)² / (n - 1),

and SNIPS, a ratio of means, gets its interval from the delta method. The
normal quantile comes from `statistics.NormalDist`. References: Dudík,
Langford & Li (2011), "Doubly Robust Policy Evaluation and Learning", ICML;
Owen (2013), "Monte Carlo theory, methods and examples", ch. 9 (effective
sample size of importance weights).

Intervals for a reward that is linear in EM and tokens must come from the
per-row reward values, not from adding the EM and token intervals: the
per-row terms carry the covariance of EM and tokens, a sum of intervals
does not.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import _checks
from stopbandit.controller.ope.estimate import Estimate

if TYPE_CHECKING:
    from numpy.typing import NDArray

MIN_ESS = 30.0
MIN_ESS_FRACTION = 0.01


def normal_quantile(confidence: float) -> float:
    """Return z such that P(|Z| <= z) = confidence for a standard normal Z."""
    return NormalDist().inv_cdf(0.5 + _checks.confidence(confidence) / 2.0)


def wald_interval(
    terms: NDArray[np.float64], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Wald interval from the sample variance of the per-row terms.

    For V̂ = (1/n) Σ φ_i, the interval is V̂ ± z · s_φ / √n with s_φ the sample
    standard deviation (ddof = 1) of φ.

    Args:
        terms: The per-row terms φ_i, shape (n,), finite.
        confidence: Nominal coverage, in (0, 1).

    Returns:
        (ci_low, ci_high, std_error). With fewer than 2 rows the variance is
        unknown and the interval is (-inf, inf).
    """
    phi = _checks.vector("terms", terms)
    z = normal_quantile(confidence)
    if phi.size < 2:  # noqa: PLR2004
        return -math.inf, math.inf, math.inf
    value = float(phi.mean())
    std_error = float(phi.std(ddof=1)) / math.sqrt(phi.size)
    return value - z * std_error, value + z * std_error, std_error


def snips_influence(
    weights: NDArray[np.float64], y: NDArray[np.float64], value: float
) -> NDArray[np.float64]:
    """Per-row influence terms of the SNIPS ratio, for the delta method.

    V̂ = Σ w_i y_i / Σ w_i is a ratio of means; its linearisation around the
    means gives ψ_i = w_i (y_i - V̂) / w̄ with w̄ = (1/n) Σ w_i, and
    Var(V̂) ≈ Var(ψ) / n (Swaminathan & Joachims 2015, "The Self-Normalized
    Estimator for Counterfactual Learning", NeurIPS). The Wald interval of
    ψ, shifted to V̂, is the delta-method interval.

    Args:
        weights: Importance weights w_i, shape (n,), with Σ w_i > 0.
        y: Outcomes y_i, shape (n,).
        value: The SNIPS estimate V̂.

    Returns:
        ψ, shape (n,); it sums to zero up to rounding.
    """
    influence: NDArray[np.float64] = weights * (y - value) / weights.mean()
    return influence


def effective_sample_size(weights: NDArray[np.float64]) -> float:
    """Kish's effective sample size ESS = (Σ w)² / Σ w² of importance weights.

    ESS equals n when all weights are equal and falls toward 1 as one weight
    dominates (Owen 2013, §9.3). All-zero weights give ESS = 0.
    """
    w = _checks.vector("weights", weights)
    total_sq = float(np.dot(w, w))
    if total_sq == 0.0:
        return 0.0
    return float(w.sum()) ** 2 / total_sq


def weight_warnings(
    weights: NDArray[np.float64],
    min_ess: float = MIN_ESS,
    min_ess_fraction: float = MIN_ESS_FRACTION,
) -> tuple[str, ...]:
    """Warnings about importance weights too uneven to support an estimate.

    Args:
        weights: Importance weights w_i, shape (n,).
        min_ess: Warn when ESS < min_ess.
        min_ess_fraction: Warn when ESS < min_ess_fraction · n.

    Returns:
        Zero or more short warning strings.
    """
    w = _checks.vector("weights", weights)
    ess = effective_sample_size(w)
    if ess == 0.0:
        return ("no weight: the target policy gives zero probability to every logged action",)
    floor = max(min_ess, min_ess_fraction * w.size)
    if ess < floor:
        return (f"low effective sample size: ESS {ess:.1f} < {floor:.1f} (n = {w.size})",)
    return ()


def support_warnings(
    target_pmf: NDArray[np.float64],
    arm: NDArray[np.int64],
    group: NDArray[np.int64] | None = None,
    *,
    partial: bool = False,
) -> tuple[str, ...]:
    """Warnings for arms the target policy plays but the log never played.

    Importance weighting only sees logged arms: where π(a|x) > 0 but the
    logging policy never played a in that group (p missing support), IPS and
    SNIPS are biased and DR relies on its reward model alone.

    Args:
        target_pmf: π(·|x_i), shape (n, K), rows summing to 1.
        arm: Logged arm index of each row, shape (n,), in [0, K).
        group: Group (segment) index of each row, shape (n,); one group if None.
        partial: Rows of target_pmf may sum to less than 1 (`Rows.partial`).

    Returns:
        One warning per (group, arm) cell with positive target mass and no
        logged row, giving the target's average probability of that arm in
        the group.
    """
    pmf = _checks.target_pmf(target_pmf, partial=partial)
    n, n_arms = pmf.shape
    arms = _checks.indices("arm", arm, n_arms)
    groups = np.zeros(n, np.int64) if group is None else _checks.indices("group", group)
    _checks.same_length(target_pmf=pmf, arm=arms, group=groups)
    n_groups = int(groups.max()) + 1
    logged = np.bincount(groups * n_arms + arms, minlength=n_groups * n_arms)
    mass = np.empty((n_groups, n_arms))
    for k in range(n_arms):  # one bincount per arm: numpy's add.at is far slower
        mass[:, k] = np.bincount(groups, weights=pmf[:, k], minlength=n_groups)
    rows = np.bincount(groups, minlength=n_groups)
    missing = (mass.ravel() > 0.0) & (logged == 0)
    found = []
    for cell in np.flatnonzero(missing):
        g, a = divmod(int(cell), n_arms)
        share = mass[g, a] / rows[g]
        found.append(f"missing support: group {g} arm {a} never logged (target mass {share:.3g})")
    return tuple(found)


def diagnose(
    weights: NDArray[np.float64],
    *,
    target_pmf: NDArray[np.float64] | None = None,
    arm: NDArray[np.int64] | None = None,
    group: NDArray[np.int64] | None = None,
    min_ess: float = MIN_ESS,
    min_ess_fraction: float = MIN_ESS_FRACTION,
    partial: bool = False,
) -> tuple[str, ...]:
    """All warnings for one estimate: weight warnings, then support warnings.

    Support can only be checked when the whole target pmf and the logged arms
    are known; without them only the weights are checked. With `partial` the
    pmf is the identified part of a target (`Rows.partial`).
    """
    found = weight_warnings(weights, min_ess, min_ess_fraction)
    if target_pmf is not None and arm is not None:
        found += support_warnings(target_pmf, arm, group, partial=partial)
    return found


def wald_estimate(
    terms: NDArray[np.float64],
    weights: NDArray[np.float64],
    *,
    confidence: float,
    warnings: tuple[str, ...],
    estimator: str,
) -> Estimate:
    """The mean of per-row `terms` with its Wald interval and the weights' diagnostics.

    IPS and DR are both the mean of per-row terms; only the terms differ.
    """
    low, high, std_error = wald_interval(terms, confidence)
    return Estimate(
        value=float(terms.mean()),
        ci_low=low,
        ci_high=high,
        std_error=std_error,
        confidence=confidence,
        ess=effective_sample_size(weights),
        max_weight=float(weights.max()),
        n=terms.size,
        warnings=warnings,
        estimator=estimator,
        interval="wald",
    )
