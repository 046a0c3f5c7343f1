"""The reward model of the doubly robust estimator, cross-fitted.

q̂(s, a) is the mean outcome of arm a in segment s, shrunk toward the arm's
mean over all segments when the cell has few rows:

    q̂(s, a) = (Σ_{i: s_i=s, a_i=a} y_i + m · ȳ_a) / (n_{s,a} + m)

with n_{s,a} the cell's row count, ȳ_a the pooled mean of arm a over all
segments (the overall mean ȳ when arm a has no rows, 0 with no rows at all),
and m (`prior_rows`) the weight of ȳ_a in pseudo-rows. A cell with n_{s,a}
rows gets weight n_{s,a} / (n_{s,a} + m) on its own mean: the credibility
estimate of Bühlmann (1967, "Experience rating and credibility", ASTIN
Bulletin), i.e. the posterior mean under a normal prior centred on ȳ_a.
Every step is a weighted sum of y with weights that depend only on counts,
so q̂ is linear in y, and so is the DR estimate built on it.

Cross-fitting: the rows are split into K folds, and q̂ for a row of fold k
is fitted on the other folds only, so that no row is scored with a model
fitted to it (Chernozhukov et al. 2018, "Double/debiased machine learning
for treatment and structural parameters", Econometrics Journal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope import _checks

if TYPE_CHECKING:
    from numpy.typing import NDArray

PRIOR_ROWS = 10.0


def fold_assignment(n: int, n_folds: int = 5, seed: int = 0) -> NDArray[np.int64]:
    """Deterministic folds: a seeded permutation of the rows dealt into n_folds.

    Args:
        n: Number of rows.
        n_folds: Number of folds K, at least 2.
        seed: Seed of the permutation; the same seed gives the same folds.

    Returns:
        Fold index of each row, shape (n,), in [0, n_folds); fold sizes
        differ by at most one.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n_folds < 2:  # noqa: PLR2004
        raise ValueError(f"n_folds must be >= 2 to cross-fit, got {n_folds}")
    folds = np.empty(n, np.int64)
    folds[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return folds


def fit_cell_means(
    y: NDArray[np.float64],
    arm: NDArray[np.int64],
    group: NDArray[np.int64],
    *,
    n_arms: int,
    n_groups: int,
    prior_rows: float = PRIOR_ROWS,
) -> NDArray[np.float64]:
    """Shrunk per-(group, arm) mean outcomes, q̂(s, a) of the module docstring.

    Args:
        y: Outcomes of the training rows, shape (m,); may be empty.
        arm: Arm index of each training row, in [0, n_arms).
        group: Group index of each training row, in [0, n_groups).
        n_arms: Number of arms K.
        n_groups: Number of groups.
        prior_rows: Shrinkage weight m >= 0, in pseudo-rows.

    Returns:
        q̂, shape (n_groups, n_arms).
    """
    if prior_rows < 0.0:
        raise ValueError(f"prior_rows must be >= 0, got {prior_rows}")
    cell = group * n_arms + arm
    size = n_groups * n_arms
    count = np.bincount(cell, minlength=size).reshape(n_groups, n_arms).astype(np.float64)
    total = np.bincount(cell, weights=y, minlength=size).reshape(n_groups, n_arms)
    arm_count = count.sum(axis=0)
    arm_total = total.sum(axis=0)
    overall = float(y.mean()) if y.size else 0.0
    arm_mean = np.divide(arm_total, arm_count, out=np.full(n_arms, overall), where=arm_count > 0)
    denominator = count + prior_rows
    # A cell with no rows and m = 0 has no estimate of its own: use ȳ_a.
    fallback = np.broadcast_to(arm_mean, (n_groups, n_arms)).copy()
    table: NDArray[np.float64] = np.divide(
        total + prior_rows * arm_mean, denominator, out=fallback, where=denominator > 0
    )
    return table


def cross_fit(
    y: NDArray[np.float64],
    arm: NDArray[np.int64],
    group: NDArray[np.int64],
    *,
    n_arms: int,
    folds: NDArray[np.int64],
    prior_rows: float = PRIOR_ROWS,
) -> NDArray[np.float64]:
    """Cross-fitted predictions q̂(x_i, a) for every row and every arm.

    Args:
        y: Outcome per row, shape (n,), finite.
        arm: Logged arm index per row, shape (n,), in [0, n_arms).
        group: Group (segment) index per row, shape (n,), >= 0.
        n_arms: Number of arms K.
        folds: Fold index per row, shape (n,), >= 0 (see `fold_assignment`).
        prior_rows: Shrinkage weight m, in pseudo-rows.

    Returns:
        q̂, shape (n, K): row i holds the model fitted without fold folds[i].
    """
    outcome = _checks.vector("y", y)
    arms = _checks.indices("arm", arm, n_arms)
    groups = _checks.indices("group", group)
    fold = _checks.indices("folds", folds)
    n = _checks.same_length(y=outcome, arm=arms, group=groups, folds=fold)
    n_groups = int(groups.max()) + 1
    predictions = np.empty((n, n_arms))
    for k in np.unique(fold):
        held_out = fold == k
        train = ~held_out
        table = fit_cell_means(
            outcome[train],
            arms[train],
            groups[train],
            n_arms=n_arms,
            n_groups=n_groups,
            prior_rows=prior_rows,
        )
        predictions[held_out] = table[groups[held_out]]
    return predictions


def cross_fit_observed(
    y: NDArray[np.float64],
    observed: NDArray[np.bool_],
    group: NDArray[np.int64],
    *,
    folds: NDArray[np.int64],
    prior_rows: float = PRIOR_ROWS,
) -> NDArray[np.float64]:
    """`cross_fit` from every observation: the played arm and the arms of each row's trace.

    Each observed (row, arm) is one training entry of `fit_cell_means`, and a row's
    entries stay in its fold, so no row is scored with a model fitted to any of its
    outcomes. With only the played arm observed this is `cross_fit`.

    Args:
        y: Outcome of row i at arm b, shape (n, K), read where observed.
        observed: Whether row i observed arm b, shape (n, K).
        group: Group (segment) index per row, shape (n,), >= 0.
        folds: Fold index per row, shape (n,), >= 0.
        prior_rows: Shrinkage weight m, in pseudo-rows.

    Returns:
        q̂, shape (n, K): row i holds the model fitted without fold folds[i].
    """
    seen = np.asarray(observed, dtype=np.bool_)
    if seen.ndim != 2:  # noqa: PLR2004
        raise ValueError(f"observed must be an n x K matrix, got shape {seen.shape}")
    n, n_arms = seen.shape
    row, arm = np.nonzero(seen)
    values = _checks.observed_values("y", y, seen)[row, arm]
    groups = _checks.indices("group", group)
    fold = _checks.indices("folds", folds)
    _checks.same_length(observed=seen, group=groups, folds=fold)
    n_groups = int(groups.max()) + 1
    predictions = np.empty((n, n_arms))
    for k in np.unique(fold):
        held_out = fold == k
        train = ~held_out[row]
        table = fit_cell_means(
            values[train],
            arm[train],
            groups[row[train]],
            n_arms=n_arms,
            n_groups=n_groups,
            prior_rows=prior_rows,
        )
        predictions[held_out] = table[groups[held_out]]
    return predictions
