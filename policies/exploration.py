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
   default. Until some arm other than the default is supported (the segment
   has no evidence against today's threshold), only the default's
   neighbours are explored.
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
   `floor`.
5. **A hard cap.** Everything off the greedy arm together is at most
   `max_explore`, always: floors first (the config keeps floor x (arms - 1)
   within the cap), the probes and matching's shares scaled into what is
   left. So the greedy arm (the default, at the safe start) keeps at least
   `1 - max_explore`.
6. **Guardrail.** Arms the caller marks `blocked` (policies.guardrail: they
   confidently lose too much EM) never become greedy and get at most `floor`;
   those marked `over_limit` (estimated to lose too much) are not greedy either.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from numpy.typing import NDArray


Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
MIN_SUPPORT = 30.0
NEIGHBOUR_FLOOR_FULL_UNTIL = 500.0
_DRAWS = 4096
_DRAW_SEED = 20_251_130
_MIX_GRID = np.linspace(0.0, 1.0, 101)
_NO_INFORMATION = 1e-18
# The default cap on traffic off the greedy arm: >= 85 % stays on today's threshold at the
# safe start (issue 13 asks >= 80 %; at 0.2 a realised share would fall below 80 % about
# half the time). bench/learning.py (cost 0.02, seeds 1-3, 100k; mixed-reasoning and
# thirty-segments, bandit and traces at coupling 0.8) against the cap at 1: online gap
# closed 0.876/0.952/0.796/0.927 vs 0.841/0.944/0.788/0.912, final 0.971/0.989/0.927/0.983
# vs 0.967/0.987/0.944/0.984; 0.2 measured no better than 0.15 within seed noise.
DEFAULT_MAX_EXPLORE = 0.15


class ExplorationConfig(BaseModel):
    """The rule that turns outcome estimates into a pmf (the `exploration` config section).

    Attributes:
        rule: how exploration is spread: `matching` (probability matching: each arm as
            often as it is plausibly best), `ids` (information-directed sampling with the
            feedback graph of traces), or `auto`: IDS for segments whose nodes send
            counterfactual traces, matching for the others.
        floor: least probability of every arm that may be played.
        plausible_min: P(best) from which an arm may be played at all.
        max_explore: most probability off the greedy arm, all arms together, at all
            times (a hard cap: floors, probes and matching fit within it).
        probe: least probability of a neighbour of the greedy arm that has no data yet.
        neighbour_floor: least probability of a measured neighbour (fades as 1/sqrt(n)).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Literal["auto", "ids", "matching"] = "auto"
    floor: Probability = 0.005
    plausible_min: Probability = 0.05
    max_explore: Probability = DEFAULT_MAX_EXPLORE
    probe: Probability = 0.1
    neighbour_floor: Probability = 0.0


@dataclass(frozen=True)
class Exploration:
    """The pmf over arms, the greedy arm's index, and each arm's P(best)."""

    pmf: NDArray[np.float64]
    greedy: int
    p_best: NDArray[np.float64]

    @property
    def explore_share(self) -> float:
        """Probability off the greedy arm (at most the config's `max_explore`)."""
        return float(1.0 - self.pmf[self.greedy])


@functools.cache
def _standard_normal_draws(arms: int) -> NDArray[np.float64]:
    """Shape (arms, _DRAWS): one row per arm, so every per-draw reduction runs over rows."""
    draws = np.ascontiguousarray(
        np.random.default_rng(_DRAW_SEED).standard_normal((_DRAWS, arms)).T
    )
    draws.flags.writeable = False  # shared by every call
    return draws


def _draws(mean: NDArray[np.float64], cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """The belief's fixed draws, shape (arms, _DRAWS)."""
    arms = len(mean)
    jitter = 1e-12 * max(float(np.trace(cov)) / arms, 1e-12)
    factor = np.linalg.cholesky(cov + jitter * np.eye(arms))
    draws = factor @ _standard_normal_draws(arms)
    draws += mean[:, None]
    return draws


def probability_best(mean: NDArray[np.float64], cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(arm k has the highest value) under the belief Normal(mean, cov).

    Estimated from `_DRAWS` draws with a fixed seed: the same belief always
    gives the same answer, and comparing two beliefs uses common random numbers.
    """
    return _p_best_of(_draws(mean, cov))


def _p_best_of(draws: NDArray[np.float64]) -> NDArray[np.float64]:
    arms = len(draws)
    # Counting the arms equal to each draw's maximum is ~6x faster than argmax over
    # a short axis; only an exact tie (arms with identical beliefs) needs argmax's
    # first-wins rule.
    counts = (draws == draws.max(axis=0)).sum(axis=1)
    if counts.sum() != _DRAWS:
        counts = np.bincount(np.argmax(draws, axis=0), minlength=arms)
    return np.asarray(counts / _DRAWS, dtype=np.float64)


def information_directed(draws: NDArray[np.float64], free_below: float) -> NDArray[np.float64]:
    """The information-directed pmf over arms, with the feedback graph of traces.

    Variance-based IDS (Russo & Van Roy, "Learning to Optimize via
    Information-Directed Sampling", Operations Research 2018): each arm's
    expected regret Delta(a) = E[max_b r_b] - E[r_a], and its information
    gain v(a) = sum_j P(a* = j) (E[r_a | a* = j] - E[r_a])^2; play the
    distribution over at most two arms minimising (pi . Delta)^2 / (pi . g).
    With traces, playing a also shows every lower arm (Liu, Buccapatnam &
    Shroff, "Information Directed Sampling for Stochastic Bandits with Graph
    Feedback", AAAI 2018), so g(a) = v(a) + free_below * sum_{b < a} v(b).
    Expectations are over `draws` of the reward belief, shape (arms, draws):
    the same fixed draws as `probability_best`.
    Where probability matching keeps playing an arm that is nearly as good
    and barely informative, IDS plays it only as far as it pays in information.
    """
    arms = len(draws)
    best = np.argmax(draws, axis=0)
    p_best = np.bincount(best, minlength=arms) / _DRAWS
    mu = draws.mean(axis=1)
    regret = np.maximum(draws.max(axis=0).mean() - mu, 0.0)
    variance = np.zeros(arms)
    for j in np.flatnonzero(p_best > 0.0):
        variance += p_best[j] * (draws[:, best == j].mean(axis=1) - mu) ** 2
    lower = np.concatenate([[0.0], np.cumsum(variance)[:-1]])
    gain = variance + free_below * lower
    pmf = np.zeros(arms)
    if gain.max() <= _NO_INFORMATION:
        pmf[int(np.argmin(regret))] = 1.0
        return pmf
    # Every pair (i, j) mixed at q on a grid: the optimum is on two arms at most.
    q = _MIX_GRID[:, None, None]
    mixed_regret = q * regret[None, :, None] + (1.0 - q) * regret[None, None, :]
    mixed_gain = q * gain[None, :, None] + (1.0 - q) * gain[None, None, :]
    ratio = np.full(mixed_gain.shape, np.inf)
    np.divide(mixed_regret**2, mixed_gain, out=ratio, where=mixed_gain > 0.0)
    k, i, j = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
    pmf[i] += float(_MIX_GRID[k])
    pmf[j] += 1.0 - float(_MIX_GRID[k])
    return pmf


def explore(
    mean: NDArray[np.float64],
    cov: NDArray[np.float64],
    support: NDArray[np.float64],
    default_arm: int,
    config: ExplorationConfig,
    *,
    free_below: float = 0.0,
    blocked: NDArray[np.bool_] | None = None,
    over_limit: NDArray[np.bool_] | None = None,
    yardstick: tuple[int, float] | None = None,
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
        blocked: arms that may not be greedy and get at most `floor` (the guardrail).
        over_limit: arms that may be explored but not be greedy (the guardrail: their
            estimated EM drop is over its limit); the default arm is exempt.
        yardstick: (arm, share): an arm kept at least at `share` (within the cap), the
            guardrail's reference, whose EM every drop is measured against.

    Returns:
        The pmf (sums to 1), the greedy arm, and P(best) per arm.
    """
    arms = len(mean)
    blocked = np.zeros(arms, dtype=np.bool_) if blocked is None else blocked
    supported = support >= MIN_SUPPORT
    not_greedy = blocked.copy() if over_limit is None else blocked | over_limit
    # Today's threshold stays a safe start unless the guardrail is confident against it.
    not_greedy[default_arm] = blocked[default_arm]
    greedy = _greedy(mean, supported, not_greedy, default_arm)
    draws = _draws(mean, cov)
    p_best = _p_best_of(draws)

    near = np.zeros(arms, dtype=np.bool_)
    near[max(greedy - 1, 0) : greedy + 2] = True
    # Without evidence against the default, only its neighbours are worth a request.
    safe_start = not np.delete(supported, default_arm).any()
    candidates = near.copy() if safe_start else (p_best >= config.plausible_min) | near

    use_ids = config.rule == "ids" or (config.rule == "auto" and free_below > 0.0)
    target = information_directed(draws, free_below) if use_ids else p_best
    weights = np.where(candidates, target, 0.0)
    weights[greedy] = 0.0
    below = np.arange(arms) < greedy
    weights[below] *= 1.0 - free_below
    explore_mass = min(float(weights.sum()), config.max_explore)
    pmf = np.zeros(arms)
    if weights.sum() > 0.0:
        pmf = weights / weights.sum() * explore_mass
    floor = np.where(
        candidates, np.where(below, config.floor * (1.0 - free_below), config.floor), 0
    )
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
    pmf = np.where(blocked, np.minimum(pmf, floor), pmf)
    kept = np.minimum(pmf, floor)
    if yardstick is not None and yardstick[0] != greedy:
        # Unmeasured, the reference's EM would stay at its early noise, and so every drop.
        pmf[yardstick[0]] = kept[yardstick[0]] = max(pmf[yardstick[0]], yardstick[1])
    pmf = _capped(pmf, kept, config.max_explore)
    pmf[greedy] = max(1.0 - pmf.sum(), 0.0)
    pmf /= pmf.sum()
    return Exploration(pmf=pmf, greedy=greedy, p_best=p_best)


def _greedy(
    mean: NDArray[np.float64],
    supported: NDArray[np.bool_],
    blocked: NDArray[np.bool_],
    default_arm: int,
) -> int:
    """The best supported arm the guardrail allows; else the default (or the nearest allowed)."""
    eligible = supported & ~blocked
    if eligible.any():
        return int(np.flatnonzero(eligible)[np.argmax(mean[eligible])])
    allowed = np.flatnonzero(~blocked)
    if len(allowed) == 0 or not blocked[default_arm]:
        return default_arm
    return int(allowed[np.argmin(np.abs(allowed - default_arm))])


def _capped(
    off_greedy: NDArray[np.float64], floors: NDArray[np.float64], cap: float
) -> NDArray[np.float64]:
    """`off_greedy` scaled to sum to at most `cap`: the floors kept, the rest scaled down."""
    total = float(off_greedy.sum())
    if total <= cap:
        return off_greedy
    floor_total = float(floors.sum())
    if floor_total >= cap:  # only where the config's floor x arms check was bypassed
        return floors * (cap / floor_total) if floor_total > 0.0 else np.zeros_like(floors)
    extra = off_greedy - floors
    return floors + extra * ((cap - floor_total) / float(extra.sum()))
