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

No one segment may dominate what all share (`pool_weights`): in the
shape's fit and in the fleet's step scale, a segment's observations of an
arm weigh at most `MAX_PRECISION_RATIO` times the median segment's per
observation of that arm, and a segment in all at most `MAX_SEGMENT_RATIO`
times the median segment's weight. Without the caps one fake segment of
3,000 constant outcomes (variance 0, so precision at the variance floor:
~25 times a real observation's) flattened the shape and moved the greedy
arm of real segments (issue 14). A cap per arm as well (no segment above
twice the median on one arm) held more of them, but cost the token-budget
scenario a third of its online gap closed (0.52 to 0.37, seeds 1-3): its
heavy segments carry the thin arms' information, as they should.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.learners.smoothing import smooth_posterior

if TYPE_CHECKING:
    from numpy.typing import NDArray

_ITERATIONS = 25
# Per observation, a segment weighs at most this many times the median segment's in the pool.
MAX_PRECISION_RATIO = 2.0
# In all, a segment weighs at most this many times the median segment in the pool.
MAX_SEGMENT_RATIO = 3.0


def capped_rows(
    weight: NDArray[np.float64], ratio: float = MAX_SEGMENT_RATIO
) -> NDArray[np.float64]:
    """`weight` (S, K) with each row's sum cut to at most `ratio` times the median row's.

    The median is over rows with any weight: one vote per segment, so no
    segment's own traffic can raise its cap.
    """
    row = weight.sum(axis=-1)
    active = row > 0.0
    if active.sum() < 2:  # noqa: PLR2004 - one segment has nobody to dominate
        return weight
    cap = ratio * float(np.median(row[active]))
    factor = np.divide(cap, row, out=np.ones_like(row), where=row > cap)
    return np.asarray(weight * np.minimum(factor, 1.0)[:, None], dtype=np.float64)


def pool_weights(
    precision: NDArray[np.float64],
    counts: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The weights of each (segment, arm) mean in what segments share, (S, K).

    On each arm, a segment's precision per observation (1 / its variance)
    is cut to `MAX_PRECISION_RATIO` times the median segment's on that arm,
    so data of no spread (constant outcomes) cannot pass for near-certainty
    in the pool; per arm, because arms legitimately differ (tokens under a
    small budget hardly vary). Then each segment's total is cut by
    `capped_rows`. `counts` are the observations behind each mean (own and prior
    pseudo-observations).
    """
    seen = (precision > 0.0) & (counts > 0.0)
    if not seen.any():
        return precision
    per_observation = np.where(seen, precision / np.where(seen, counts, 1.0), np.nan)
    enough = seen.sum(axis=0) >= 2  # noqa: PLR2004 - one segment has nobody to dominate
    cap = np.full(precision.shape[1], np.inf)
    if enough.any():
        cap[enough] = MAX_PRECISION_RATIO * np.nanmedian(per_observation[:, enough], axis=0)
    with np.errstate(invalid="ignore"):  # inf * 0 where an arm has one segment
        limit = cap[None, :] * counts
    return capped_rows(np.where(seen & (limit < precision), limit, precision))


def fit_shape(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    counts: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Common shape over arms, by weighted least squares of y[s, k] = level[s] + shape[k].

    Args:
        y: per-(segment, arm) means, shape (S, K).
        precision: their precisions (0 where a cell has no data), shape (S, K).
        counts: the observations behind each mean, shape (S, K); given, the
            weights are `pool_weights` (no segment dominates), else `precision`.

    Returns:
        (shape, shape_precision), each (K,): the shape is centred to weighted
        mean 0, and its precision is 0 for an arm no segment has played.
    """
    if counts is not None:
        precision = pool_weights(precision, counts)
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
