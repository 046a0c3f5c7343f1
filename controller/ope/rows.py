"""The logged rows one estimate is computed from: what every registered estimator reads.

A caller (replay's `evaluate`) builds one `Rows` per target and scope, with the
importance weights and their warnings diagnosed once, and copies it per outcome
with that outcome's `y` and reward model; each estimator in
`controller.ope.registry` turns it into an `Estimate`. On a log whose requests
carry counterfactual traces (SCHEMA 1.1), `graph` adds what each row observed
at every arm, for the estimators that read the feedback graph (`graph`, `direct`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Graph:
    """What n logged rows observed arm by arm: the played arm and the arms their traces showed.

    Attributes:
        observed: Whether row i observed arm b, shape (n, K) bool; the logged
            arm always, the arms of a kept trace too.
        y: The outcome row i had at arm b, shape (n, K); read only where observed.
        propensity: The chance P_i(b) that row i observed arm b under the
            logging policy (`graph.observation_propensity`), shape (n, K); read
            only where observed, NaN where unknown (a trace of a decision
            without a pmf: such an observation is not weighted).
        group: Group (segment) index per row, shape (n,): the strata of the
            direct estimate and of support warnings.
        q_hat: Reward model fitted on every observation, cross-fitted by row,
            shape (n, K); None when no registered estimator needs one.
        notes: Warnings about the traces themselves, shared by every estimate
            that reads them (incomplete traces).
    """

    observed: NDArray[np.bool_]
    y: NDArray[np.float64]
    propensity: NDArray[np.float64]
    group: NDArray[np.int64]
    q_hat: NDArray[np.float64] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rows:
    """One target's view of n logged rows, for one outcome.

    Attributes:
        arm: Logged arm index a_i, shape (n,).
        logged_probability: p_i, the logged propensity, shape (n,), in (0, 1].
        target_probability: π(a_i|x_i) of the logged arm under the target, shape (n,).
        weights: w_i = π(a_i|x_i) / p_i, shape (n,).
        warnings: The weights' diagnostics (low ESS, missing support), shared by
            every estimator of this target and scope.
        y: Outcome per row (EM, tokens or per-row reward), shape (n,).
        confidence: Nominal coverage of the interval.
        target_pmf: π(·|x_i), shape (n, K); None when unknown (the logged policy
            of decisions without a pmf) or when no estimator needs it.
        q_hat: Cross-fitted reward model q̂(x_i, a), shape (n, K); None when no
            registered estimator needs one.
        graph: What each row observed at every arm; None on a log without traces.
        partial: `target_pmf` (and `target_probability`) hold only the part of
            the target on identified arms, rows summing to at most 1: the
            estimate is of that part, Σ_b π(b|x) E[y|x, b] over those arms
            (`controller.ope.bounds` adds the rest as bounds).
    """

    arm: NDArray[np.int64]
    logged_probability: NDArray[np.float64]
    target_probability: NDArray[np.float64]
    weights: NDArray[np.float64]
    warnings: tuple[str, ...]
    y: NDArray[np.float64]
    confidence: float
    target_pmf: NDArray[np.float64] | None = None
    q_hat: NDArray[np.float64] | None = None
    graph: Graph | None = None
    partial: bool = False
