"""Doubly robust (DR) off-policy estimation.

    V̂_DR = (1/n) Σ_i [ Σ_a π(a|x_i) q̂(x_i, a) + w_i (y_i - q̂(x_i, a_i)) ],
    w_i = π(a_i|x_i) / p_i

The first term is the reward model's prediction for the target policy (the
direct method); the second corrects it with the importance-weighted residual
of the logged arm. The estimate is unbiased if either the propensities or
the reward model are right, and its variance shrinks as q̂ approaches
E[y|x, a] (Dudík, Langford & Li 2011, "Doubly Robust Policy Evaluation and
Learning", ICML). `dr` fits q̂ by cross-fitting (see `reward_model`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import _checks, intervals, reward_model

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.ope.estimate import Estimate
    from stopbandit.controller.ope.rows import Rows


def dr_terms(
    target_pmf: NDArray[np.float64],
    arm: NDArray[np.int64],
    logged_probability: NDArray[np.float64],
    y: NDArray[np.float64],
    q_hat: NDArray[np.float64],
    *,
    partial: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The two per-row parts of DR: direct term and weighted residual.

    Args:
        target_pmf: π(·|x_i), shape (n, K), rows summing to 1.
        arm: Logged arm index a_i, shape (n,), in [0, K).
        logged_probability: p_i, shape (n,), in (0, 1].
        y: Outcome per row, shape (n,), finite.
        q_hat: Reward model predictions q̂(x_i, a), shape (n, K), finite.
        partial: Rows of target_pmf may sum to less than 1 (`Rows.partial`).

    Returns:
        (direct, correction), each shape (n,): direct_i = Σ_a π(a|x_i) q̂(x_i, a)
        and correction_i = w_i (y_i - q̂(x_i, a_i)); their sum is the DR term.
    """
    pmf = _checks.target_pmf(target_pmf, partial=partial)
    arms = _checks.indices("arm", arm, pmf.shape[1])
    logged = _checks.logged_probability(logged_probability)
    outcome = _checks.vector("y", y)
    model = np.asarray(q_hat, dtype=np.float64)
    if model.shape != pmf.shape:
        raise ValueError(f"q_hat must have target_pmf's shape {pmf.shape}, got {model.shape}")
    if not np.all(np.isfinite(model)):
        raise ValueError("q_hat must be finite (no NaN or inf)")
    _checks.same_length(target_pmf=pmf, arm=arms, logged_probability=logged, y=outcome)
    weights = _checks.arm_probability(pmf, arms) / logged
    direct = np.einsum("ik,ik->i", pmf, model)
    correction = weights * (outcome - _checks.arm_probability(model, arms))
    return direct, correction


def dr_from_rows(rows: Rows) -> Estimate:
    """DR of one target's rows (registered as `dr`): the mean of `dr_terms`, Wald interval.

    The rows' weights give ESS and the largest weight, and their warnings are
    the estimate's: diagnosed once per target, as `doubly_robust` does per call.

    Args:
        rows: The target's pmf, probabilities, outcome, reward model and diagnostics.

    Returns:
        The estimate, its interval and the rows' diagnostics.

    Raises:
        ValueError: On rows without a target pmf or a reward model, or
            inputs `dr_terms` refuses.
    """
    if rows.target_pmf is None or rows.q_hat is None:
        raise ValueError("DR needs the target pmf and a reward model (q_hat)")
    direct, correction = dr_terms(
        rows.target_pmf,
        rows.arm,
        rows.logged_probability,
        rows.y,
        rows.q_hat,
        partial=rows.partial,
    )
    return intervals.wald_estimate(
        direct + correction,
        rows.weights,
        confidence=rows.confidence,
        warnings=rows.warnings,
        estimator="dr",
    )


def doubly_robust(
    target_pmf: NDArray[np.float64],
    arm: NDArray[np.int64],
    logged_probability: NDArray[np.float64],
    y: NDArray[np.float64],
    q_hat: NDArray[np.float64],
    *,
    group: NDArray[np.int64] | None = None,
    confidence: float = 0.95,
    min_ess: float = intervals.MIN_ESS,
    min_ess_fraction: float = intervals.MIN_ESS_FRACTION,
) -> Estimate:
    """DR estimate of E_π[y] with a given reward model, and its Wald interval.

    The interval is the Wald interval from the sample variance of the per-row
    DR terms direct_i + correction_i. Pass q̂ from `reward_model.cross_fit`
    (as `dr` does) so that no row is scored by a model fitted to it.

    Args:
        target_pmf: π(·|x_i), shape (n, K), rows summing to 1.
        arm: Logged arm index a_i, shape (n,), in [0, K).
        logged_probability: p_i, shape (n,), in (0, 1].
        y: Outcome per row (EM, tokens or per-row reward), shape (n,), finite.
        q_hat: Reward model predictions q̂(x_i, a), shape (n, K).
        group: Optional group (segment) index per row, for support warnings.
        confidence: Nominal coverage of the interval.
        min_ess: Warn when the effective sample size is below this.
        min_ess_fraction: Warn when ESS is below this fraction of n.

    Returns:
        The estimate, its interval and its diagnostics.

    Raises:
        ValueError: On inputs of inconsistent shapes, probabilities out of
            range or non-finite values.
    """
    direct, correction = dr_terms(target_pmf, arm, logged_probability, y, q_hat)
    terms = direct + correction
    pmf = np.asarray(target_pmf, dtype=np.float64)
    arms = np.asarray(arm, dtype=np.int64)
    weights = _checks.arm_probability(pmf, arms) / np.asarray(logged_probability, np.float64)
    warnings = intervals.diagnose(
        weights,
        target_pmf=pmf,
        arm=arms,
        group=group,
        min_ess=min_ess,
        min_ess_fraction=min_ess_fraction,
    )
    return intervals.wald_estimate(
        terms, weights, confidence=confidence, warnings=warnings, estimator="dr"
    )


def dr(
    target_pmf: NDArray[np.float64],
    arm: NDArray[np.int64],
    group: NDArray[np.int64],
    logged_probability: NDArray[np.float64],
    y: NDArray[np.float64],
    *,
    n_folds: int = 5,
    seed: int = 0,
    folds: NDArray[np.int64] | None = None,
    prior_rows: float = reward_model.PRIOR_ROWS,
    confidence: float = 0.95,
    min_ess: float = intervals.MIN_ESS,
    min_ess_fraction: float = intervals.MIN_ESS_FRACTION,
) -> Estimate:
    """Cross-fitted DR estimate of E_π[y], with a Wald interval.

    q̂ is the shrunk per-(group, arm) mean of y (`reward_model.fit_cell_means`),
    cross-fitted over K folds; then V̂ = (1/n) Σ [Σ_a π(a|x_i) q̂(x_i,a) +
    w_i (y_i - q̂(x_i,a_i))] as in `doubly_robust`. With fixed folds the
    estimate is linear in y, so DR of a per-row reward equals the same
    combination of the DR estimates of EM and tokens; its interval, from the
    per-row reward terms, accounts for their covariance.

    Args:
        target_pmf: π(·|x_i), shape (n, K), rows summing to 1.
        arm: Logged arm index a_i, shape (n,), in [0, K).
        group: Group (segment) index per row, shape (n,), >= 0.
        logged_probability: p_i, shape (n,), in (0, 1].
        y: Outcome per row, shape (n,), finite.
        n_folds: Number of cross-fitting folds K (>= 2), when `folds` is None.
        seed: Seed of the fold permutation, when `folds` is None.
        folds: Explicit fold index per row, overriding n_folds and seed;
            use the same folds for every outcome of one replay.
        prior_rows: Shrinkage weight of the per-arm mean, in pseudo-rows.
        confidence: Nominal coverage of the interval.
        min_ess: Warn when the effective sample size is below this.
        min_ess_fraction: Warn when ESS is below this fraction of n.

    Returns:
        The estimate, its interval and its diagnostics.

    Raises:
        ValueError: On inputs of inconsistent shapes, probabilities out of
            range or non-finite values.
    """
    pmf = _checks.target_pmf(target_pmf)
    n = pmf.shape[0]
    fold = reward_model.fold_assignment(n, n_folds, seed) if folds is None else folds
    q_hat = reward_model.cross_fit(
        y, arm, group, n_arms=pmf.shape[1], folds=fold, prior_rows=prior_rows
    )
    estimate = doubly_robust(
        pmf,
        arm,
        logged_probability,
        y,
        q_hat,
        group=group,
        confidence=confidence,
        min_ess=min_ess,
        min_ess_fraction=min_ess_fraction,
    )
    if np.unique(fold).size < 2:  # noqa: PLR2004
        note = "one fold only: the reward model is 0 and DR reduces to IPS"
        return replace(estimate, warnings=(*estimate.warnings, note))
    return estimate
