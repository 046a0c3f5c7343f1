"""The result every off-policy estimator returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Estimate:
    """An off-policy estimate of one outcome under one target policy.

    Attributes:
        value: The point estimate of E_π[y]; NaN when the log cannot support one.
        ci_low: Lower end of the confidence interval.
        ci_high: Upper end of the confidence interval.
        std_error: The standard error the interval was built from.
        confidence: Nominal coverage of the interval, e.g. 0.95.
        ess: Effective sample size of the importance weights, (Σ w)² / Σ w².
        max_weight: The largest importance weight w_i = π(a_i|x_i) / p_i.
        n: Number of logged rows.
        warnings: Short, human-readable reasons to distrust the estimate
            (missing support, low effective sample size); empty when none.
        estimator: Which estimator produced it: "ips", "snips", "dr" (its registered name).
        interval: How the interval was computed, e.g. "wald" or "wald-delta";
            "bounds" when part of the target is only partially identified
            (`controller.ope.bounds`): then (ci_low, ci_high) are bounds and
            value is their midpoint, not a point estimate.
        identified: Share of the target's mass on arms with adequate support,
            estimated as usual; the rest is bounded. 1 for an ordinary estimate.
    """

    value: float
    ci_low: float
    ci_high: float
    std_error: float
    confidence: float
    ess: float
    max_weight: float
    n: int
    warnings: tuple[str, ...]
    estimator: str
    interval: str
    identified: float = 1.0
