"""Sharing strength across segments: a global curve shape plus a smooth per-segment deviation.

Model, for every segment s and arm k (EM, or log tokens):

    value[s, k] = level[s] + shape[k] + deviation[s, k]

`shape` is what all segments have in common (EM rises then flattens as
the threshold grows; tokens rise steeply near 1.0). It is fitted by
weighted least squares on every segment's per-arm means, so a segment
profits from the traffic of all the others. `deviation` is the segment's
own departure from the common shape, with a smoothness prior over the
ordered arms (`smoothing.smooth_posterior` with `step_sd`): a segment with
little data looks like the common shape, one with plenty of data follows
its own. This is a two-level (empirical Bayes) model in the spirit of
Gelman & Hill, *Data Analysis Using Regression and Multilevel Models*,
2007, ch. 12, with an ordered-arm prior on the second level.

No one segment may dominate what all share: in the shape's fit and in
the fleet's step scale, the means weigh as `caps.pool_weights` says. A
segment the per-arm cap cut gets a shape of its own, fitted with its own
weights uncut (`fit_shapes`): its heavy arm is its own data, not a
departure from a shape the others set, which its smoothness prior would
spread to its neighbours (long-answers with a 1-point guardrail, seed 1:
the long-form segment stuck at 1.0 with its 0.95 over the limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.learners.caps import capped_columns, capped_rows, pool_weights
from stopbandit.controller.learners.smoothing import smooth_posterior

if TYPE_CHECKING:
    from numpy.typing import NDArray

# A shape and its precision per arm, each (K,).
Shape = tuple["NDArray[np.float64]", "NDArray[np.float64]"]


def fit_shape(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    counts: NDArray[np.float64] | None = None,
) -> Shape:
    """Common shape over arms, by weighted least squares of y[s, k] = level[s] + shape[k].

    Args:
        y: per-(segment, arm) means, shape (S, K).
        precision: their precisions (0 where a cell has no data), shape (S, K).
        counts: the observations behind each mean, shape (S, K); given, the
            weights are `caps.pool_weights` (no segment dominates), else `precision`.

    Returns:
        (shape, shape_precision), each (K,): the shape is centred to weighted
        mean 0, and its precision is 0 for an arm no segment has played.
    """
    fitted, _ = fit_shapes(y, precision, counts)
    return fitted


def fit_shapes(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    counts: NDArray[np.float64] | None = None,
) -> tuple[Shape, dict[int, Shape]]:
    """`fit_shape`, and the own shape of each segment (row) the per-arm cap cut.

    A segment's own shape is the fit with its row at its weights before the
    per-arm cap (the others' as they are): at most one segment per arm is
    cut, so there are at most K, each a K x K solve from the same normal
    equations.
    """
    observed = np.where(precision > 0.0, y, 0.0)
    uncut = precision if counts is None else pool_weights(precision, counts, arm_cap=False)
    weight = uncut if counts is None else capped_columns(uncut)
    matrix, vector = _normal_equations(observed, weight)
    column = weight.sum(axis=0)
    own: dict[int, Shape] = {}
    for s in np.flatnonzero((weight < uncut).any(axis=1)).tolist():
        own_matrix = matrix - _row_matrix(weight[s]) + _row_matrix(uncut[s])
        own_vector = (
            vector - _row_vector(observed[s], weight[s]) + _row_vector(observed[s], uncut[s])
        )
        own_column = column - weight[s] + uncut[s]
        own[s] = (_solved(own_matrix, own_vector, own_column), own_column)
    return (_solved(matrix, vector, column), column), own


def _normal_equations(
    y: NDArray[np.float64], weight: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The K normal equations of the shape, the levels eliminated: (matrix, vector).

    Each level is its segment's weighted mean of y - shape, which leaves
    (diag(C) - sum_s w_s w_s' / W_s) shape = sum_s w_s (y_s - mean_s), C the
    arms' total weights: a sum over segments, so one segment's part can be
    swapped (`fit_shapes`). Solved exactly (`_solved`): alternating updates
    converged at the rate of the others' share of an arm, and 25 of them left
    the shape where it started at an arm one segment held nearly all of, so a
    fake segment at one arm moved every real segment's estimate there (issue 14).
    """
    row = weight.sum(axis=1)
    active = row > 0.0
    w, y = weight[active], y[active]
    matrix = np.diag(w.sum(axis=0)) - (w / row[active, None]).T @ w
    mean = (w * y).sum(axis=1) / row[active]
    return matrix, (w * (y - mean[:, None])).sum(axis=0)


def _row_matrix(w: NDArray[np.float64]) -> NDArray[np.float64]:
    total = w.sum()
    if total <= 0.0:
        return np.zeros((w.size, w.size))
    return np.asarray(np.diag(w) - np.outer(w, w) / total, dtype=np.float64)


def _row_vector(y: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
    total = w.sum()
    if total <= 0.0:
        return np.zeros(w.size)
    return np.asarray(w * (y - float(w @ y) / total), dtype=np.float64)


def _solved(
    matrix: NDArray[np.float64], vector: NDArray[np.float64], column: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The shape from its normal equations, centred to weighted mean 0 (0 where unplayed).

    The system is singular along a constant (the levels absorb it): the
    least-norm solution, then centred.
    """
    shape = np.zeros(vector.size)
    played = column > 0.0
    if played.any():
        solved, *_ = np.linalg.lstsq(matrix[np.ix_(played, played)], vector[played], rcond=None)
        shape[played] = solved
        shape -= np.average(shape, weights=column)
    return shape


def pooled_posterior(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    shape: NDArray[np.float64],
    shape_precision: NDArray[np.float64],
    *,
    step_sd: float | NDArray[np.float64],
    level_sd: float,
    information: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior mean and covariance over the arms of one segment, or of a stack of segments.

    The segment's observations minus the common shape are smoothed
    (`smooth_posterior`), then the shape is added back. The shape's own
    uncertainty (1 / shape_precision) widens the diagonal. `y` and
    `precision` are (K,) or (S, K); all segments in one call take one
    batched solve, which is what keeps a publish of thousands of segments cheap.
    `information` (matrix, vector), where given, is the data's information
    about the arms with paired observations (`smoothing.smooth_posterior`).
    """
    known = shape_precision > 0.0
    residual = np.where(known, y - shape, 0.0)
    weight = precision.sum(axis=-1)
    level_mean = np.divide(
        (precision * residual).sum(axis=-1),
        weight,
        out=np.zeros_like(weight),
        where=weight > 0.0,
    )
    residual_information = None
    if information is not None:
        matrix, vector = information
        known_shape = np.where(known, shape, 0.0)
        residual_information = (matrix, vector - matrix @ known_shape)
    mean, cov = smooth_posterior(
        residual,
        precision,
        step_sd=step_sd,
        level_mean=level_mean,
        level_sd=level_sd,
        information=residual_information,
    )
    shape_var = np.divide(1.0, shape_precision, out=np.zeros_like(shape), where=known)
    return mean + np.where(known, shape, 0.0), cov + np.diag(shape_var)


def deviation_step_sd(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    shape: NDArray[np.float64],
    floor_sd: float,
    step_sampling: NDArray[np.float64] | None = None,
    *,
    counts: NDArray[np.float64] | None = None,
) -> float:
    """How far segments' curves depart from the common shape, per step between arms.

    Method of moments (empirical Bayes): for every segment with data on two
    neighbouring arms, the step of its curve minus the shape's step has
    variance step_sd^2 plus the two means' sampling variances; averaging
    (d^2 - sampling variance) over all such pairs, weighted by precision,
    estimates step_sd^2. Segments that all look alike pool strongly;
    segments that differ keep their own curves. Never below `floor_sd`.
    `step_sampling` (S, K-1), where given, is each step's own sampling
    variance (paired arms measure a step better than their two precisions
    say; taking those would understate how much segments differ). `counts`, where
    given, caps each segment's weight as in the shape (`pool_weights`).
    """
    both = (precision[:, :-1] > 0.0) & (precision[:, 1:] > 0.0)
    if not both.any():
        return floor_sd
    with np.errstate(divide="ignore"):
        sampling = np.where(both, 1.0 / precision[:, :-1] + 1.0 / precision[:, 1:], np.inf)
    if step_sampling is not None:
        sampling = np.where(both, np.minimum(sampling, step_sampling), np.inf)
    step = np.diff(y, axis=1) - np.diff(shape)[None, :]
    weight = np.where(both, 1.0 / sampling, 0.0)
    if counts is not None:
        # Constant outcomes have next to no sampling variance: capped like the shape's
        # weights, one segment of them cannot set the fleet's scale alone.
        pooled = pool_weights(precision, counts)
        with np.errstate(divide="ignore"):
            pooled_sampling = 1.0 / pooled[:, :-1] + 1.0 / pooled[:, 1:]
        weight = capped_rows(np.where(both, np.minimum(weight, 1.0 / pooled_sampling), 0.0))
    excess = np.where(both, step**2 - sampling, 0.0)
    variance = float((weight * excess).sum() / weight.sum())
    return max(floor_sd, variance**0.5 if variance > 0.0 else 0.0)


# What the fleet's scale is worth, in steps, against one segment's own measured step.
_STEP_SCALE_PRIOR = 1.0
# A step counts as departing from the shape only past this many sampling variances.
_DEPARTURE_SAMPLING_VARIANCES = 3.0


def step_sds(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    shape: NDArray[np.float64],
    fleet_sd: float,
    step_sampling: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Prior sd of each step of each segment: the fleet's, loosened where a step departs.

    One fleet-wide scale shrinks a segment whose curve truly departs from
    the common shape at one step (a science segment whose EM still rises past
    0.95 while the others' fall) as hard as every other step. A step measured
    precisely enough (paired arms) whose departure from the shape exceeds
    `_DEPARTURE_SAMPLING_VARIANCES` of its sampling variance gets its own,
    wider scale (the excess, with the fleet's worth `_STEP_SCALE_PRIOR` steps):
    a local scale, in the spirit of shrinkage priors with heavy tails. No
    step is pooled harder than the fleet's scale says.

    Returns:
        Shape (S, K - 1).
    """
    both = (precision[:, :-1] > 0.0) & (precision[:, 1:] > 0.0)
    step = np.diff(y, axis=1) - np.diff(shape)[None, :]
    excess = np.where(
        both & np.isfinite(step_sampling),
        np.maximum(step**2 - _DEPARTURE_SAMPLING_VARIANCES * step_sampling, 0.0),
        0.0,
    )
    prior = _STEP_SCALE_PRIOR
    own = (prior * fleet_sd**2 + excess) / (prior + 1.0)
    return np.asarray(np.sqrt(np.maximum(own, fleet_sd**2)), dtype=np.float64)
