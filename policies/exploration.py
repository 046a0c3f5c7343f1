"""The exploration rule: per-arm reward beliefs in, a pmf out (pure).

What the numbers in ARCHITECTURE.md call for, in order:

1. **Safe start.** Until an arm has `MIN_SUPPORT` observations (its own or
   borrowed from the shared model) it is *unsupported*; with nothing
   supported, the greedy arm is the configured default.
2. **Probability matching on the evidence.** Each arm's reward belief is
   Normal(mean, sd). An unsupported arm borrows the belief of its nearest
   supported neighbour, widened to at least `prior_sd`: arms are ordered,
   so a neighbour is the best guess, and the width says we do not know.
   P(best) of every arm is computed exactly (numerical integration), as
   Thompson sampling would draw it, with no random numbers.
3. **Local.** Only *plausible* arms (P(best) >= `plausible_min`, plus the
   greedy arm) and their immediate neighbours (the *frontier*) may be
   played. Arms far from anything plausible get nothing, so the costly
   extremes are never explored blindly; the frontier moves with the
   evidence, so a search that keeps finding better arms keeps going.
4. **Bounded.** The greedy arm keeps at least `1 - max_explore`; every
   candidate arm gets at least `floor`, so no plausible or frontier arm is
   ever starved, and an arm the evidence rules out gets the floor at most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from controller.config import ExplorationConfig

MIN_SUPPORT = 30.0
_GRID_POINTS = 401
_GRID_SPAN_SD = 8.0
_erf = np.vectorize(math.erf, otypes=[np.float64])


@dataclass(frozen=True)
class Exploration:
    """The pmf over arms, the greedy arm's index, and each arm's P(best)."""

    pmf: NDArray[np.float64]
    greedy: int
    p_best: NDArray[np.float64]


def probability_best(mean: NDArray[np.float64], sd: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(arm k has the highest value) for independent Normal(mean_k, sd_k) beliefs.

    P_k = integral of pdf_k(x) * prod_{j != k} cdf_j(x) dx, by the trapezoid
    rule on a grid spanning every belief's +/- 8 sd.
    """
    sd = np.maximum(sd, 1e-12)
    low = float(np.min(mean - _GRID_SPAN_SD * sd))
    high = float(np.max(mean + _GRID_SPAN_SD * sd))
    x = np.linspace(low, high, _GRID_POINTS)
    z = (x[None, :] - mean[:, None]) / sd[:, None]
    cdf = np.clip(0.5 * (1.0 + _erf(z / math.sqrt(2.0))), 1e-300, 1.0)
    pdf = np.exp(-0.5 * z * z) / (sd[:, None] * math.sqrt(2.0 * math.pi))
    log_cdf = np.log(cdf)
    others = np.exp(log_cdf.sum(axis=0)[None, :] - log_cdf)
    p = np.trapezoid(pdf * others, x, axis=1)
    total = p.sum()
    if not math.isfinite(total) or total <= 0.0:
        return np.full(len(mean), 1.0 / len(mean))
    return np.asarray(p / total, dtype=np.float64)


def _borrowed_beliefs(
    mean: NDArray[np.float64],
    sd: NDArray[np.float64],
    supported: NDArray[np.bool_],
    prior_sd: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    belief_mean, belief_sd = mean.copy(), sd.copy()
    supported_idx = np.flatnonzero(supported)
    for k in np.flatnonzero(~supported):
        if supported_idx.size == 0:
            belief_mean[k], belief_sd[k] = 0.0, prior_sd
            continue
        nearest = supported_idx[np.argmin(np.abs(supported_idx - k))]
        belief_mean[k] = mean[nearest]
        belief_sd[k] = max(prior_sd, sd[nearest])
    return belief_mean, belief_sd


def explore(
    mean: NDArray[np.float64],
    sd: NDArray[np.float64],
    support: NDArray[np.float64],
    default_arm: int,
    config: ExplorationConfig,
) -> Exploration:
    """Turn per-arm reward beliefs into a pmf.

    Args:
        mean: estimated reward of each arm (arms in ascending threshold order).
        sd: standard error of each estimate.
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
    belief_mean, belief_sd = _borrowed_beliefs(mean, sd, supported, config.prior_sd)
    p_best = probability_best(belief_mean, belief_sd)

    plausible = supported & (p_best >= config.plausible_min)
    plausible[greedy] = True
    candidates = plausible.copy()
    for k in np.flatnonzero(plausible):
        candidates[max(k - 1, 0)] = True
        candidates[min(k + 1, arms - 1)] = True

    weights = np.where(candidates, p_best, 0.0)
    weights[greedy] = 0.0
    explore_mass = min(float(weights.sum()), config.max_explore)
    pmf = np.zeros(arms)
    if weights.sum() > 0.0:
        pmf = weights / weights.sum() * explore_mass
    pmf = np.where(candidates, np.maximum(pmf, config.floor), 0.0)
    pmf[greedy] = 0.0
    pmf[greedy] = max(1.0 - pmf.sum(), 0.0)
    pmf /= pmf.sum()
    return Exploration(pmf=pmf, greedy=greedy, p_best=p_best)
