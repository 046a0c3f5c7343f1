"""The exploration rule: per-arm reward beliefs in, a pmf out (pure).

What the numbers in ARCHITECTURE.md call for, in order:

1. **Safe start.** Until an arm has `MIN_SUPPORT` observations (its own or
   borrowed from the shared model) it cannot be the greedy arm; with
   nothing supported, the greedy arm is the configured default.
2. **Probability matching on the evidence.** The learners give a joint
   Normal belief over the arms' rewards (correlated: neighbouring arms
   inform each other). P(best) of every arm is estimated from a fixed
   set of draws of that belief, as Thompson sampling would play it, with
   no randomness from one call to the next.
3. **Local.** Only the greedy arm, its two neighbours, and arms with data
   that are still plausibly best (P(best) >= `plausible_min`) may be
   played. Arms are ordered and the reward is roughly unimodal, so the
   neighbours are where improvement lies (unimodal bandits: Combes and
   Proutiere 2014; Paladino et al. 2017); the costly extremes are never
   explored blindly, and the neighbourhood moves with the greedy arm.
4. **Bounded.** The greedy arm keeps at least `1 - max_explore`; every
   candidate arm gets at least `floor`, so a neighbour is never starved
   (a local search that cannot stall), and an arm the evidence rules out
   gets the floor at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from controller.config import ExplorationConfig

MIN_SUPPORT = 30.0
NEIGHBOUR_FLOOR_FULL_UNTIL = 500.0
_DRAWS = 4096
_DRAW_SEED = 20_251_130


@dataclass(frozen=True)
class Exploration:
    """The pmf over arms, the greedy arm's index, and each arm's P(best)."""

    pmf: NDArray[np.float64]
    greedy: int
    p_best: NDArray[np.float64]


def probability_best(mean: NDArray[np.float64], cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(arm k has the highest value) under the belief Normal(mean, cov).

    Estimated from `_DRAWS` draws with a fixed seed: the same belief always
    gives the same answer, and comparing two beliefs uses common random numbers.
    """
    arms = len(mean)
    jitter = 1e-12 * max(float(np.trace(cov)) / arms, 1e-12)
    factor = np.linalg.cholesky(cov + jitter * np.eye(arms))
    normal = np.random.default_rng(_DRAW_SEED).standard_normal((_DRAWS, arms))
    draws = mean[None, :] + normal @ factor.T
    counts = np.bincount(np.argmax(draws, axis=1), minlength=arms)
    return np.asarray(counts / _DRAWS, dtype=np.float64)


def explore(
    mean: NDArray[np.float64],
    cov: NDArray[np.float64],
    support: NDArray[np.float64],
    default_arm: int,
    config: ExplorationConfig,
) -> Exploration:
    """Turn per-arm reward beliefs into a pmf.

    Args:
        mean: estimated reward of each arm (arms in ascending threshold order).
        cov: covariance of those estimates.
        support: observations behind each estimate (own plus prior pseudo-observations).
        default_arm: index of the configured default arm (the safe start).
        config: exploration settings.

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

    candidates = (support >= 1.0) & (p_best >= config.plausible_min)
    candidates[max(greedy - 1, 0) : greedy + 2] = True

    weights = np.where(candidates, p_best, 0.0)
    weights[greedy] = 0.0
    explore_mass = min(float(weights.sum()), config.max_explore)
    pmf = np.zeros(arms)
    if weights.sum() > 0.0:
        pmf = weights / weights.sum() * explore_mass
    pmf = np.where(candidates, np.maximum(pmf, config.floor), 0.0)
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
            pmf[k] = max(pmf[k], guarantee)
    pmf[greedy] = 0.0
    pmf[greedy] = max(1.0 - pmf.sum(), 0.0)
    pmf /= pmf.sum()
    return Exploration(pmf=pmf, greedy=greedy, p_best=p_best)
