"""Partial identification: what a log says about a target on arms it barely observed.

Importance weighting sees an arm only where the log observed it, and a reward
model fills the rest by extrapolation: a doubly robust estimate of a policy
the log never played is the model's guess with the tight interval of its
residuals (replay once put "never stop early" at 0.589 ± 0.004 against a
true 0.640). Where the log barely observed an arm in a segment nothing but
the outcome's range is known there (Manski 2003, "Partial Identification of
Probability Distributions", ch. 1; for off-policy evaluation, Kallus & Zhou
2018, "Confounding-Robust Policy Improvement", NeurIPS). Split the target's
mass on row i into the part on arms with adequate support, π_I, and the
rest, u_i = 1 - Σ_b π_I(b|x_i); then

    V = E[Σ_b π_I(b|x) μ(x, b)] + E[Σ_b (π - π_I)(b|x) μ(x, b)]
      ∈ [V_I + (1/n) Σ_i u_i y_low(x_i), V_I + (1/n) Σ_i u_i y_high(x_i)]

with V_I estimated as usual (every estimator here is linear in π; `Rows.partial`)
and [y_low, y_high] the outcome's range (per segment): EM in [0, 1], tokens
within their observed or configured range, and the reward from those. The
reported interval adds those sums to V_I's interval: it covers V whenever
V_I's interval covers V_I, at the nominal level.

Support is measured per (segment, arm) cell by the effective sample size of
the observation weights W_ib = 1[i observed b] / P_i(b) over the segment's
rows (Kish's (Σ W)² / Σ W², Owen 2013, §9.3): for an arm played at a steady
probability it is the number of times it was observed, and a handful of
observations at tiny propensities, which dominate an IPS estimate, count for
little. A cell below `min_ess` is "barely observed" and bounded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import _checks

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.ope.estimate import Estimate

DEFAULT_MIN_ESS = 30.0


def observation_weights(
    observed: NDArray[np.bool_], propensity: NDArray[np.float64]
) -> NDArray[np.float64]:
    """W_ib = 1[i observed b] / P_i(b); an observation whose chance is unknown (NaN) counts 1.

    Args:
        observed: Whether row i observed arm b, shape (n, K).
        propensity: The chance P_i(b) of that observation, shape (n, K); read where observed.

    Returns:
        W, shape (n, K), 0 where unobserved.
    """
    seen = np.asarray(observed, dtype=np.bool_)
    chance = _checks.observation_propensity(propensity, seen)
    known = seen & ~np.isnan(chance)
    weights = np.where(seen, 1.0, 0.0)
    np.divide(1.0, chance, out=weights, where=known)
    return weights


def group_sums(
    values: NDArray[np.float64], group: NDArray[np.int64], n_groups: int
) -> NDArray[np.float64]:
    """Σ over each group's rows of an (n, K) matrix, shape (n_groups, K).

    One bincount per column: numpy's `add.at` is an order of magnitude slower, and this
    runs per target and scope.
    """
    matrix = np.asarray(values, dtype=np.float64)
    sums = np.empty((n_groups, matrix.shape[1]))
    for k in range(matrix.shape[1]):
        sums[:, k] = np.bincount(group, weights=matrix[:, k], minlength=n_groups)
    return sums


def cell_ess(
    weights: NDArray[np.float64], group: NDArray[np.int64], n_groups: int
) -> NDArray[np.float64]:
    """Kish's effective sample size of each (group, arm) cell's observation weights.

    Args:
        weights: W_ib (`observation_weights`), shape (n, K).
        group: Group (segment) index per row, shape (n,).
        n_groups: Number of groups (rows of the result).

    Returns:
        ESS per cell, shape (n_groups, K); 0 for a cell never observed.
    """
    groups = _checks.indices("group", group, n_groups)
    w = np.asarray(weights, dtype=np.float64)
    total = group_sums(w, groups, n_groups)
    squares = group_sums(w * w, groups, n_groups)
    ess: NDArray[np.float64] = np.divide(
        total * total, squares, out=np.zeros_like(total), where=squares > 0.0
    )
    return ess


def bounded(
    part: Estimate | None,
    unidentified: float,
    low: float,
    high: float,
    *,
    template: Estimate,
) -> Estimate:
    """The estimate of a target with `unidentified` of its mass bounded.

    Args:
        part: The estimate of the identified part (V_I, from `Rows.partial`
            rows); None when nothing is identified (the bounds are the range).
        unidentified: ū, the mean unidentified mass per row, in (0, 1].
        low: (1/n) Σ_i u_i y_low(x_i): the least the unidentified mass can add.
        high: (1/n) Σ_i u_i y_high(x_i): the most.
        template: Diagnostics to keep (ESS, max weight, n, estimator) when
            `part` is None.

    Returns:
        An Estimate with interval "bounds": (ci_low, ci_high) the bounds of
        the module docstring, value their midpoint, std_error V_I's (its
        sampling noise alone), identified = 1 - ū.
    """
    base = template if part is None else part
    part_low = 0.0 if part is None else part.ci_low
    part_high = 0.0 if part is None else part.ci_high
    part_value = 0.0 if part is None else part.value
    return replace(
        base,
        value=part_value + (low + high) / 2.0,
        ci_low=part_low + low,
        ci_high=part_high + high,
        std_error=0.0 if part is None else part.std_error,
        interval="bounds",
        identified=1.0 - unidentified,
    )
