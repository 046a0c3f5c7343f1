"""The exploration rule: per-arm reward beliefs in, a pmf out (pure).

1. **Probability matching on the evidence.** The learners give a joint
   Normal belief over the arms' rewards (correlated: neighbouring arms and
   segments inform each other). P(best) of every arm is estimated from a
   fixed set of draws of that belief, as Thompson sampling would play it,
   with no randomness from one call to the next. The pmf is P(best),
   restricted to the candidates below.
2. **Safe start.** Until an arm has `MIN_SUPPORT` observations (its own, or
   borrowed from other segments and the shared model) it cannot be the
   greedy arm; with nothing supported, the greedy arm is the configured
   default.
3. **Only plausible arms.** An arm is played only if it is plausibly best
   (P(best) >= `plausible_min`) or next to the greedy arm: arms the
   evidence rules out get nothing, not a share of a uniform exploration.
   Measured on the shipped and held-out scenarios (bench/learning.py), a
   threshold of 0.05 beat both 0.01 and 0.1, and restricting play to the
   greedy arm's neighbourhood lost more where the best arm is far from the
   default (0.7 or 0.8) than it saved elsewhere.
4. **Neighbours are never starved.** A neighbour of the greedy arm without
   data gets at least `probe` until it has support; a measured neighbour
   at least `neighbour_floor` (fading as 1/sqrt(n) past
   `NEIGHBOUR_FLOOR_FULL_UNTIL` observations); every candidate at least
   `floor`. Apart from those, the greedy arm keeps at least `1 - max_explore`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from numpy.typing import NDArray


Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
MIN_SUPPORT = 30.0
NEIGHBOUR_FLOOR_FULL_UNTIL = 500.0
_DRAWS = 4096
_DRAW_SEED = 20_251_130


class ExplorationConfig(BaseModel):
    """The rule that turns outcome estimates into a pmf (the `exploration` config section).

    Attributes:
        floor: least probability of every arm that may be played.
        plausible_min: P(best) from which an arm may be played at all.
        max_explore: most probability taken from the greedy arm (1: pure probability matching).
        probe: least probability of a neighbour of the greedy arm that has no data yet.
        neighbour_floor: least probability of a measured neighbour (fades as 1/sqrt(n)).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    floor: Probability = 0.005
    plausible_min: Probability = 0.05
    max_explore: Probability = 1.0
    probe: Probability = 0.1
    neighbour_floor: Probability = 0.0


@dataclass(frozen=True)
class Exploration:
    """The pmf over arms, the greedy arm's index, and each arm's P(best)."""

    pmf: NDArray[np.float64]
    greedy: int
    p_best: NDArray[np.float64]


@functools.cache
def _standard_normal_draws(arms: int) -> NDArray[np.float64]:
    """Shape (arms, _DRAWS): one row per arm, so every per-draw reduction runs over rows."""
    draws = np.ascontiguousarray(
        np.random.default_rng(_DRAW_SEED).standard_normal((_DRAWS, arms)).T
    )
    draws.flags.writeable = False  # shared by every call
    return draws


def probability_best(mean: NDArray[np.float64], cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(arm k has the highest value) under the belief Normal(mean, cov).

    Estimated from `_DRAWS` draws with a fixed seed: the same belief always
    gives the same answer, and comparing two beliefs uses common random numbers.
    """
    arms = len(mean)
    jitter = 1e-12 * max(float(np.trace(cov)) / arms, 1e-12)
    factor = np.linalg.cholesky(cov + jitter * np.eye(arms))
    draws = factor @ _standard_normal_draws(arms)
    draws += mean[:, None]
    # Counting the arms equal to each draw's maximum is ~6x faster than argmax over
    # a short axis; only an exact tie (arms with identical beliefs) needs argmax's
    # first-wins rule.
    counts = (draws == draws.max(axis=0)).sum(axis=1)
    if counts.sum() != _DRAWS:
        counts = np.bincount(np.argmax(draws, axis=0), minlength=arms)
    return np.asarray(counts / _DRAWS, dtype=np.float64)


def explore(
    mean: NDArray[np.float64],
    cov: NDArray[np.float64],
    support: NDArray[np.float64],
    default_arm: int,
    config: ExplorationConfig,
    *,
    free_below: float = 0.0,
) -> Exploration:
    """Turn per-arm reward beliefs into a pmf.

    Args:
        mean: estimated reward of each arm (arms in ascending threshold order).
        cov: covariance of those estimates.
        support: observations behind each estimate (own plus prior pseudo-observations).
        default_arm: index of the configured default arm (the safe start).
        config: exploration settings.
        free_below: share of requests that show every arm below the one played
            (counterfactual traces): that share of the exploration below the
            greedy arm is moved to the greedy arm, which reveals those arms anyway.

    Returns:
        The pmf (sums to 1), the greedy arm, and P(best) per arm.
    """
    arms = len(mean)
    supported = support >= MIN_SUPPORT
    if supported.any():
        greedy = int(np.flatnonzero(supported)[np.argmax(mean[supported])])
    else:
        greedy = default_arm
    p_best = probability_best(mean, cov)

    candidates = p_best >= config.plausible_min
    candidates[max(greedy - 1, 0) : greedy + 2] = True

    weights = np.where(candidates, p_best, 0.0)
    weights[greedy] = 0.0
    below = np.arange(arms) < greedy
    weights[below] *= 1.0 - free_below
    explore_mass = min(float(weights.sum()), config.max_explore)
    pmf = np.zeros(arms)
    if weights.sum() > 0.0:
        pmf = weights / weights.sum() * explore_mass
    floor = np.where(below, config.floor * (1.0 - free_below), config.floor)
    pmf = np.where(candidates, np.maximum(pmf, floor), 0.0)
    # Neighbours are where improvement lies: one nobody has measured yet is probed until
    # it has support of its own, and a measured one keeps enough traffic to recover from
    # an unlucky start (sample means of abandoned arms stay biased low).
    # The guarantee fades as 1/sqrt(n): the negative bias is a small-sample effect.
    for k in (greedy - 1, greedy + 1):
        if 0 <= k < arms:
            guarantee = (
                config.neighbour_floor * min(1.0, (NEIGHBOUR_FLOOR_FULL_UNTIL / support[k]) ** 0.5)
                if supported[k]
                else config.probe
            )
            if k < greedy:
                guarantee *= 1.0 - free_below
            pmf[k] = max(pmf[k], guarantee)
    pmf[greedy] = 0.0
    pmf[greedy] = max(1.0 - pmf.sum(), 0.0)
    pmf /= pmf.sum()
    return Exploration(pmf=pmf, greedy=greedy, p_best=p_best)
