"""Graph-aware IPS and DR: off-policy estimates that read counterfactual traces (SCHEMA 1.1).

A node that traces shows, with the outcome of the played arm a, what its run
would have returned at every lower arm: playing a reveals every arm b <= a, a
feedback graph over the ordered arms (Mannor & Shamir 2011, "From Bandits to
Experts: On the Value of Side-Observations", NeurIPS; Alon, Cesa-Bianchi,
Dekel & Koren 2015, "Online Learning with Feedback Graphs: Beyond Bandits",
COLT). Row i then observes arm b with the chance

    P_i(b) = Σ_{a >= b} μ_i(a)   (a traced row),   P_i(b) = μ_i(b)   (an untraced one),

μ_i the logging pmf (the played arm's entry is the logged propensity p_i), and
weighting each observation by 1/P_i(b) (Horvitz & Thompson 1952) gives

    V̂_IPS-G = (1/n) Σ_i Σ_b π(b|x_i) 1[i observed b] y_ib / P_i(b)
    V̂_DR-G  = (1/n) Σ_i Σ_b π(b|x_i) [q̂(x_i, b) + 1[i observed b] (y_ib - q̂(x_i, b)) / P_i(b)]

unbiased when the node's tracing does not depend on the played arm (the
policy does not know it) and, at the lowest arm, not on the outcomes either
(below). For a deterministic target, π is one arm per row; without any trace
both are IPS and DR (`ips`, `dr`) exactly. q̂ is fitted on every observation
(`reward_model.cross_fit_observed`). The per-row weight W_i = Σ_b π(b|x_i)
1[i observed b] / P_i(b) has mean 1; its ESS and largest value are the
diagnostics, as for IPS.

The lowest arm. A traced request played at the lowest arm has nothing below
it to send, so whether its node traces is unseen there; conditioning on
"carries a trace" would weight those rows 1/μ_i(0) while the traced rows
above weight 1/1, biased by a factor of up to 2. The lowest arm uses instead
the chance over both kinds of node, P_i(0) = μ_i(0) + τ_s (1 - μ_i(0)), with
τ_s the share of traced rows among segment s's rows played above it (from
pmf-carrying decisions): unbiased when tracing does not depend on the
outcomes (which the direct estimate assumes throughout).

A decision without a logged pmf has no P_i(b) for b below the played arm:
its trace is not weighted (P NaN there) and only its played arm counts, with
p_i. A trace that misses arms below the played one leaves them unobserved
while P counts them in: the estimates come out low where nodes do that, so
replay counts such traces and the estimates carry a note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import _checks, intervals
from stopbandit.controller.ope.bounds import group_sums

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.ope.estimate import Estimate
    from stopbandit.controller.ope.rows import Rows


def trace_share(
    traced: NDArray[np.bool_], arm: NDArray[np.int64], group: NDArray[np.int64]
) -> NDArray[np.float64]:
    """τ_s per group: the share of rows played above the lowest arm that carry a trace.

    Args:
        traced: Whether row i carries a trace its weights can use, shape (n,).
        arm: Logged arm index per row, shape (n,).
        group: Group (segment) index per row, shape (n,).

    Returns:
        τ per group, shape (max group + 1,); 0 where no row was played above the lowest arm.
    """
    groups = _checks.indices("group", group)
    above = np.asarray(arm) > 0
    n_groups = int(groups.max()) + 1
    rows = np.bincount(groups[above], minlength=n_groups).astype(np.float64)
    hits = np.bincount(groups[above & traced], minlength=n_groups).astype(np.float64)
    share: NDArray[np.float64] = np.divide(hits, rows, out=np.zeros(n_groups), where=rows > 0)
    return share


def observation_propensity(
    logged_pmf: NDArray[np.float64],
    arm: NDArray[np.int64],
    probability: NDArray[np.float64],
    traced: NDArray[np.bool_],
    group: NDArray[np.int64],
) -> NDArray[np.float64]:
    """P_i(b), the chance that row i observed arm b, as the module docstring defines it.

    Args:
        logged_pmf: The logging pmf per row, shape (n, K); a NaN row is unknown.
        arm: Logged arm index a_i, shape (n,).
        probability: Logged propensity p_i, shape (n,), in (0, 1].
        traced: Whether row i carries a kept trace, shape (n,).
        group: Group (segment) index per row, shape (n,): τ is per group.

    Returns:
        P, shape (n, K), in [0, 1]; on a row without a pmf, NaN except at the played arm.

    Raises:
        ValueError: On shapes that differ or probabilities out of range.
    """
    pmf = np.asarray(logged_pmf, dtype=np.float64)
    if pmf.ndim != 2 or pmf.shape[0] == 0 or pmf.shape[1] == 0:  # noqa: PLR2004
        raise ValueError(f"logged_pmf must be a non-empty n x K matrix, got shape {pmf.shape}")
    n, n_arms = pmf.shape
    arms = _checks.indices("arm", arm, n_arms)
    p = _checks.logged_probability(probability)
    traces = np.asarray(traced, dtype=np.bool_)
    groups = _checks.indices("group", group)
    _checks.same_length(logged_pmf=pmf, arm=arms, probability=p, traced=traces, group=groups)
    known = np.asarray(~np.isnan(pmf).any(axis=1), dtype=np.bool_)
    if known.any():
        _checks.target_pmf(pmf[known], "logged_pmf")
    usable = traces & known & (arms > 0)
    rows = np.arange(n)
    mu = np.where(known[:, None], pmf, 0.0)
    mu[rows, arms] = p
    at_or_above = np.cumsum(mu[:, ::-1], axis=1)[:, ::-1]
    propensity = np.where(usable[:, None], at_or_above, mu)
    tau = trace_share(usable, arms, groups)[groups]
    propensity[:, 0] = np.minimum(mu[:, 0] + tau * (1.0 - mu[:, 0]), 1.0)
    propensity[~known] = np.nan
    propensity[~known, arms[~known]] = p[~known]
    return np.clip(propensity, 0.0, 1.0)


def graph_weights(
    target_pmf: NDArray[np.float64],
    observed: NDArray[np.bool_],
    propensity: NDArray[np.float64],
    *,
    partial: bool = False,
) -> NDArray[np.float64]:
    """W_ib = π(b|x_i) 1[i observed b] / P_i(b), 0 where unobserved or P is unknown.

    With `partial`, rows of target_pmf may sum to less than 1 (`Rows.partial`).

    Raises:
        ValueError: On shapes that differ or a chance out of (0, 1] where observed.
    """
    pmf = _checks.target_pmf(target_pmf, partial=partial)
    seen = _checks.observed(observed, pmf.shape)
    chance = _checks.observation_propensity(propensity, seen)
    weighted = seen & ~np.isnan(chance)
    ratio = np.divide(1.0, chance, out=np.zeros(pmf.shape), where=weighted)
    weights: NDArray[np.float64] = pmf * ratio
    return weights


def graph_support_warnings(
    target_pmf: NDArray[np.float64],
    weights: NDArray[np.float64],
    group: NDArray[np.int64] | None = None,
) -> tuple[str, ...]:
    """One warning per (group, arm) cell the target plays but no weighted row observed."""
    pmf = np.asarray(target_pmf, dtype=np.float64)
    n = pmf.shape[0]
    groups = np.zeros(n, np.int64) if group is None else _checks.indices("group", group)
    _checks.same_length(target_pmf=pmf, group=groups)
    n_groups = int(groups.max()) + 1
    mass = group_sums(pmf, groups, n_groups)
    seen = group_sums((weights > 0.0).astype(np.float64), groups, n_groups)
    counts = np.bincount(groups, minlength=n_groups)
    found = []
    for g, a in zip(*np.nonzero((mass > 0.0) & (seen == 0)), strict=True):
        share = mass[g, a] / counts[g]
        found.append(f"missing support: group {g} arm {a} never observed (target mass {share:.3g})")
    return tuple(found)


def _graph_estimate(
    terms: NDArray[np.float64],
    pmf: NDArray[np.float64],
    weights: NDArray[np.float64],
    *,
    group: NDArray[np.int64] | None,
    confidence: float,
    notes: tuple[str, ...],
    estimator: str,
) -> Estimate:
    row_weights = weights.sum(axis=1)
    warnings = (
        intervals.weight_warnings(row_weights) + graph_support_warnings(pmf, weights, group) + notes
    )
    return intervals.wald_estimate(
        terms, row_weights, confidence=confidence, warnings=warnings, estimator=estimator
    )


def ips_graph(
    target_pmf: NDArray[np.float64],
    observed: NDArray[np.bool_],
    propensity: NDArray[np.float64],
    y: NDArray[np.float64],
    *,
    group: NDArray[np.int64] | None = None,
    confidence: float = 0.95,
    notes: tuple[str, ...] = (),
    partial: bool = False,
) -> Estimate:
    """Graph IPS of E_π[y]: (1/n) Σ_i Σ_b π(b|x_i) 1[i observed b] y_ib / P_i(b), Wald interval.

    Args:
        target_pmf: π(·|x_i), shape (n, K), rows summing to 1.
        observed: Whether row i observed arm b, shape (n, K).
        propensity: P_i(b) (`observation_propensity`), shape (n, K).
        y: Outcome of row i at arm b, shape (n, K), finite where observed.
        group: Optional group (segment) index per row, for support warnings.
        confidence: Nominal coverage of the interval.
        notes: Warnings to carry (about the traces).
        partial: Rows of target_pmf may sum to less than 1 (`Rows.partial`).

    Returns:
        The estimate; ESS and max weight are those of the row weights W_i.

    Raises:
        ValueError: On inconsistent shapes or values out of range.
    """
    weights = graph_weights(target_pmf, observed, propensity, partial=partial)
    seen = np.asarray(observed)
    values = np.where(seen, _checks.observed_values("y", y, seen), 0.0)
    terms = (weights * values).sum(axis=1)
    return _graph_estimate(
        terms,
        np.asarray(target_pmf, dtype=np.float64),
        weights,
        group=group,
        confidence=confidence,
        notes=notes,
        estimator="ips_graph",
    )


def dr_graph(
    target_pmf: NDArray[np.float64],
    observed: NDArray[np.bool_],
    propensity: NDArray[np.float64],
    y: NDArray[np.float64],
    q_hat: NDArray[np.float64],
    *,
    group: NDArray[np.int64] | None = None,
    confidence: float = 0.95,
    notes: tuple[str, ...] = (),
    partial: bool = False,
) -> Estimate:
    """Graph DR of E_π[y]: q̂'s value of π plus graph IPS of the residuals, Wald interval.

    Args:
        target_pmf: π(·|x_i), shape (n, K), rows summing to 1.
        observed: Whether row i observed arm b, shape (n, K).
        propensity: P_i(b) (`observation_propensity`), shape (n, K).
        y: Outcome of row i at arm b, shape (n, K), finite where observed.
        q_hat: Reward model q̂(x_i, b), shape (n, K), finite.
        group: Optional group (segment) index per row, for support warnings.
        confidence: Nominal coverage of the interval.
        notes: Warnings to carry (about the traces).
        partial: Rows of target_pmf may sum to less than 1 (`Rows.partial`).

    Returns:
        The estimate; ESS and max weight are those of the row weights W_i.

    Raises:
        ValueError: On inconsistent shapes or values out of range.
    """
    weights = graph_weights(target_pmf, observed, propensity, partial=partial)
    pmf = np.asarray(target_pmf, dtype=np.float64)
    seen = np.asarray(observed)
    values = _checks.observed_values("y", y, seen)
    model = np.asarray(q_hat, dtype=np.float64)
    if model.shape != pmf.shape or not np.all(np.isfinite(model)):
        raise ValueError(f"q_hat must be finite, of target_pmf's shape {pmf.shape}")
    residual = np.where(seen, values - model, 0.0)
    terms = (pmf * model).sum(axis=1) + (weights * residual).sum(axis=1)
    return _graph_estimate(
        terms, pmf, weights, group=group, confidence=confidence, notes=notes, estimator="dr_graph"
    )


def ips_graph_from_rows(rows: Rows) -> Estimate:
    """Graph IPS of one target's rows (registered as `ips_graph`).

    Raises:
        ValueError: On rows without a target pmf or a graph.
    """
    if rows.target_pmf is None or rows.graph is None:
        raise ValueError("graph IPS needs the target pmf and the rows' observations")
    graph = rows.graph
    return ips_graph(
        rows.target_pmf,
        graph.observed,
        graph.propensity,
        graph.y,
        group=graph.group,
        confidence=rows.confidence,
        notes=graph.notes,
        partial=rows.partial,
    )


def dr_graph_from_rows(rows: Rows) -> Estimate:
    """Graph DR of one target's rows (registered as `dr_graph`).

    Raises:
        ValueError: On rows without a target pmf, a graph or its reward model.
    """
    graph = rows.graph
    if rows.target_pmf is None or graph is None or graph.q_hat is None:
        raise ValueError("graph DR needs the target pmf, the observations and their reward model")
    return dr_graph(
        rows.target_pmf,
        graph.observed,
        graph.propensity,
        graph.y,
        graph.q_hat,
        group=graph.group,
        confidence=rows.confidence,
        notes=graph.notes,
        partial=rows.partial,
    )
