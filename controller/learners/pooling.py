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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.learners.smoothing import smooth_posterior

if TYPE_CHECKING:
    from numpy.typing import NDArray

_ITERATIONS = 25


def fit_shape(
    y: NDArray[np.float64], precision: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Common shape over arms, by weighted least squares of y[s, k] = level[s] + shape[k].

    Args:
        y: per-(segment, arm) means, shape (S, K).
        precision: their precisions (0 where a cell has no data), shape (S, K).

    Returns:
        (shape, shape_precision), each (K,): the shape is centred to weighted
        mean 0, and its precision is 0 for an arm no segment has played.
    """
    segments, arms = y.shape
    level = np.zeros(segments)
    shape = np.zeros(arms)
    row_weight = precision.sum(axis=1)
    col_weight = precision.sum(axis=0)
    observed = np.where(precision > 0.0, y, 0.0)
    for _ in range(_ITERATIONS):
        # Alternating updates (Gauss-Seidel on the normal equations) converge for this layout.
        level = np.divide(
            (precision * (observed - shape[None, :])).sum(axis=1),
            row_weight,
            out=np.zeros(segments),
            where=row_weight > 0.0,
        )
        shape = np.divide(
            (precision * (observed - level[:, None])).sum(axis=0),
            col_weight,
            out=np.zeros(arms),
            where=col_weight > 0.0,
        )
    if col_weight.sum() > 0.0:
        shape -= np.average(shape, weights=col_weight)
    return shape, col_weight


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
    say; taking those would understate how much segments differ).
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
