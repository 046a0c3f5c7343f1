"""What the noise allows: how many requests it takes to tell the scenario's arms apart.

No learning here: arithmetic on a scenario's true curves (its initial state).
For each token cost it prints

- the best fixed threshold and the gap it closes when played from the first
  request, and from the end of the first publish interval (before it, every
  learner plays the default, the reference arm);
- for every other arm played fleet-wide: how far below the best fixed arm
  it is (as a share of the gap), one request's reward standard deviation,
  and how many requests on each of the two arms a difference of two means
  needs to reach 2 standard errors (8 sd^2 / difference^2);
- every segment whose own best arm beats the best fixed one: what that is
  worth (share of the gap), the requests on each arm needed to see it, and
  the requests the segment gets in the whole run.

Where those request counts exceed the run, no learner that moves only on
evidence can know the better arm within it: it can only be lucky.

Then, with paired observations (SCHEMA 1.1 counterfactual traces: a request
played at an arm also shows the arms below it), for every segment and every
pair of neighbouring arms: the difference of their mean rewards, the
requests each arm needs to tell them apart from independent samples (as
above), and the requests needed when every request shows both arms, at each
coupling 0, 0.5, 0.8, 0.95, 1. One request's reward difference then has
variance

    w^2 (p_a (1 - p_a) + p_b (1 - p_b) - 2 (P11 - p_a p_b)) + (c/1000)^2 (t_b - t_a)^2 cv^2

with P11 = P(EM 1 at both arms) = Phi2(Phi^-1(p_a), Phi^-1(p_b); coupling), the
latents' Gaussian copula, and the tokens' one shared lognormal noise draw per
request (so their difference is (t_b - t_a) times it, at any coupling); EM
and tokens are independent in the simulator. 2 standard errors then take
Z^2 var / difference^2 requests. Phi2 is Owen's one-dimensional integral
(Gauss-Legendre, numpy only), cross-checked against the simulator's own
latent draws (controller.sim.requests, fixed seed). The tokens' integer
rounding and monotone clamp are left out.

    .venv/bin/python bench/learning_limits.py [--scenario FILE ...] [--interactions 100000]
    .venv/bin/python bench/learning_limits.py --quick     # the cross-check on fewer draws
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.config import RewardConfig
from stopbandit.controller.sim.requests import Requests
from stopbandit.controller.sim.scenario import SHIPPED_DIR, Scenario, Truth, load_scenario
from stopbandit.policies.reward import TOKENS_PER_UNIT

if TYPE_CHECKING:
    from numpy.typing import NDArray

COSTS = (0.02, 0.005)
PUBLISH_EVERY = 1000
Z = 2.0
COUPLINGS = (0.0, 0.5, 0.8, 0.95, 1.0)
# Owen's integral for Phi2 on this many Gauss-Legendre nodes (smooth after r = sin(theta)).
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)
# Requests of the simulator's own draws per coupling for the cross-check.
CHECK_REQUESTS = 40_000
QUICK_CHECK_REQUESTS = 10_000
CHECK_SEED = 1
_NORMAL = statistics.NormalDist()


def _requests_to_tell(difference: float, sd: float) -> float:
    # Two means of n requests each differ by `difference` at Z standard errors when
    # difference = Z * sd * sqrt(2 / n).
    return 2.0 * (Z * sd / difference) ** 2


def both_one(p_a: float, p_b: float, coupling: float) -> float:
    """P(EM 1 at both arms): Phi2(Phi^-1(p_a), Phi^-1(p_b); coupling) of the Gaussian copula.

    Owen: Phi2(h, k; rho) = Phi(h) Phi(k) + 1/(2 pi) * integral over r from 0 to rho of
    exp(-(h^2 - 2 r h k + k^2) / (2 (1 - r^2))) / sqrt(1 - r^2); with r = sin(theta) the
    integrand is smooth and bounded on [0, asin(rho)], even at rho = 1.
    """
    if min(p_a, p_b) <= 0.0:
        return 0.0
    if max(p_a, p_b) >= 1.0:
        return min(p_a, p_b)
    h, k = _NORMAL.inv_cdf(p_a), _NORMAL.inv_cdf(p_b)
    top = math.asin(min(max(coupling, 0.0), 1.0))
    theta = 0.5 * top * (_NODES + 1.0)
    sin, cos2 = np.sin(theta), np.cos(theta) ** 2
    # cos(theta) -> 0 only at rho = 1, where the exponent -> -inf unless h = k: clamp it.
    exponent = -(h * h - 2.0 * h * k * sin + k * k) / (2.0 * np.maximum(cos2, 1e-300))
    integral = 0.5 * top * float(np.dot(_WEIGHTS, np.exp(exponent)))
    return p_a * p_b + integral / (2.0 * math.pi)


def paired_difference_var(
    truth: Truth, weights: RewardConfig, s: int, pair: tuple[int, int], coupling: float
) -> float:
    """Variance of one request's reward at arm b minus at arm a (`pair`), both observed on it."""
    a, b = pair
    p_a, p_b = float(truth.em[s, a]), float(truth.em[s, b])
    em_var = p_a * (1 - p_a) + p_b * (1 - p_b) - 2.0 * (both_one(p_a, p_b, coupling) - p_a * p_b)
    token_step = float(truth.tokens[s, b] - truth.tokens[s, a]) / TOKENS_PER_UNIT
    cv = float(truth.token_cv[s])
    # The lognormal noise has mean 1 and variance cv^2; both arms scale the same draw.
    token_var = (weights.token_cost_per_1k * token_step * cv) ** 2
    return weights.em_weight**2 * max(em_var, 0.0) + token_var


def _count_text(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "never"


def paired_report(truth: Truth, cost: float, interactions: int) -> None:
    """Requests to tell neighbouring arms apart, independent samples against paired ones."""
    weights = RewardConfig(token_cost_per_1k=cost)
    rewards = truth.rewards(weights)
    sd = _reward_sd(truth, weights)
    print(
        f"\n  neighbouring arms at token cost {cost}: requests for 2 standard errors; indep. "
        "each: on each of the two arms (twice that in all); paired: requests that each show "
        "both arms; * the segment's best arm is one of the two"
    )
    head = f"  {'segment':32} {'arms':>10} {'difference':>10} {'indep. each':>12}"
    head += "".join(f" {f'paired c={c:g}':>14}" for c in COUPLINGS)
    print(head + f" {'segment reqs':>13}")
    # Pairs next to a segment's best arm that the segment's requests in the run can tell apart.
    told = {"independent": 0, **{f"c={c:g}": 0 for c in COUPLINGS}}
    pairs = 0
    for s, key in enumerate(truth.keys):
        best = int(np.argmax(rewards[s]))
        available = float(truth.share[s]) * interactions
        for a in range(len(truth.arms) - 1):
            b = a + 1
            difference = abs(float(rewards[s, b] - rewards[s, a]))
            independent = (
                _requests_to_tell(difference, float(max(sd[s, a], sd[s, b])))
                if difference > 0
                else math.inf
            )
            at_best = best in (a, b)
            pairs += at_best
            told["independent"] += at_best and 2.0 * independent <= available
            arms = f"{truth.arms[a]:g}-{truth.arms[b]:g}" + ("*" if at_best else " ")
            line = f"  {key:32} {arms:>10} {difference:>10.5f} {_count_text(independent):>12}"
            for coupling in COUPLINGS:
                var = paired_difference_var(truth, weights, s, (a, b), coupling)
                needed = (Z**2 * var / difference**2) if difference > 0 else math.inf
                told[f"c={coupling:g}"] += at_best and needed <= available
                line += f" {_count_text(needed):>14}"
            print(line + f" {available:>13,.0f}")
    print(
        f"  of the {pairs} pairs next to a segment's best arm, the requests the segment gets in "
        f"{interactions:,} tell apart: " + ", ".join(f"{k} {v}" for k, v in told.items())
    )


def cross_check(scenario: Scenario, draws: int = CHECK_REQUESTS) -> None:
    """Phi2 and the paired variance against the simulator's own traced outcomes (fixed seed).

    Every request is played at the top arm with a trace, so it shows every arm; per segment
    and neighbouring pair, P(EM 1 at both) and, at each token cost, the variance of the
    reward difference drawn are compared with `both_one` and `paired_difference_var`, in
    standard errors.
    """
    top = len(scenario.arms) - 1
    worst_p11, worst_var = 0.0, dict.fromkeys(COSTS, 0.0)
    comparisons = 0
    for coupling in COUPLINGS:
        truth = Truth(scenario.with_trace(1.0, coupling))
        requests = Requests(truth, CHECK_SEED)
        em: list[list[list[float]]] = [[] for _ in truth.keys]
        tokens: list[list[list[float]]] = [[] for _ in truth.keys]
        for i in range(draws):
            request = requests.draw(i)
            outcome = requests.outcome(request, top)
            lower = outcome.counterfactual or ()
            em[request.segment].append([*(c[1] for c in lower), outcome.em])
            tokens[request.segment].append([*(c[2] for c in lower), outcome.tokens])
        for s in range(len(truth.keys)):
            if len(em[s]) < 2:
                continue
            em_s, tokens_s = np.array(em[s]), np.array(tokens[s])
            n = len(em_s)
            for a in range(top):
                comparisons += 1
                exact = both_one(float(truth.em[s, a]), float(truth.em[s, a + 1]), coupling)
                drawn = float(np.mean(em_s[:, a] * em_s[:, a + 1]))
                se = math.sqrt(max(exact * (1 - exact), 1e-12) / n)
                worst_p11 = max(worst_p11, abs(drawn - exact) / se)
                for cost in COSTS:
                    weights = RewardConfig(token_cost_per_1k=cost)
                    reward_s = weights.em_weight * em_s - cost * tokens_s / TOKENS_PER_UNIT
                    centred = reward_s[:, a + 1] - reward_s[:, a]
                    centred -= centred.mean()
                    var, m4 = float(np.mean(centred**2)), float(np.mean(centred**4))
                    var_se = math.sqrt(max(m4 - var**2, 1e-24) / n)
                    expected = paired_difference_var(truth, weights, s, (a, a + 1), coupling)
                    worst_var[cost] = max(worst_var[cost], abs(var - expected) / var_se)
    variances = ", ".join(f"{worst_var[c]:.1f} at cost {c}" for c in COSTS)
    print(
        f"\n  cross-check against the simulator's own traced outcomes ({draws:,} "
        f"requests per coupling, seed {CHECK_SEED}; {comparisons} (segment, pair, coupling) "
        f"cases): largest gap to the arithmetic, in standard errors: P(EM 1 at both) "
        f"{worst_p11:.1f}; paired reward difference's variance {variances}"
    )


def _reward_sd(truth: Truth, weights: RewardConfig) -> NDArray[np.float64]:
    """One request's reward sd per (segment, arm): EM is Bernoulli, tokens have the segment's CV."""
    em_var = weights.em_weight**2 * truth.em * (1.0 - truth.em)
    token_sd = weights.token_cost_per_1k * truth.tokens * truth.token_cv[:, None] / TOKENS_PER_UNIT
    return np.asarray(np.sqrt(em_var + token_sd**2), dtype=np.float64)


def report(truth: Truth, cost: float, interactions: int) -> None:
    """Print the limits at one token cost."""
    weights = RewardConfig(token_cost_per_1k=cost)
    rewards = truth.rewards(weights)
    share = truth.share
    reference = rewards[:, truth.reference]
    gap = float(share @ (rewards.max(axis=1) - reference))
    fleet = share @ rewards
    best = int(np.argmax(fleet))
    closed = float(fleet[best] - share @ reference) / gap
    late = closed * (1.0 - PUBLISH_EVERY / interactions)
    print(
        f"\ntoken cost {cost}: the gap is {gap:.4f} reward per request; best fixed threshold "
        f"{truth.arms[best]} closes {closed:.3f} from the first request, {late:.3f} from "
        f"request {PUBLISH_EVERY + 1}"
    )
    sd = _reward_sd(truth, weights)
    # Fleet-wide, one request's variance also holds the spread between segments.
    fleet_sd = np.sqrt(share @ sd**2 + share @ rewards**2 - fleet**2)
    print(f"  {'fleet-wide arm':>15} {'below best':>11} {'request sd':>11} {'requests each':>14}")
    for k, arm in enumerate(truth.arms):
        if k == best:
            continue
        difference = float(fleet[best] - fleet[k])
        needed = _requests_to_tell(difference, float(max(fleet_sd[k], fleet_sd[best])))
        print(f"  {arm:>15} {difference / gap:>11.3f} {fleet_sd[k]:>11.3f} {needed:>14,.0f}")
    for s, key in enumerate(truth.keys):
        own = int(np.argmax(rewards[s]))
        if own == best:
            continue
        difference = float(rewards[s, own] - rewards[s, best])
        needed = _requests_to_tell(difference, float(max(sd[s, own], sd[s, best])))
        print(
            f"  {key}: own best {truth.arms[own]} beats {truth.arms[best]} by "
            f"{share[s] * difference / gap:.3f} of the gap; {needed:,.0f} requests on each "
            f"to see it, {share[s] * interactions:,.0f} in the run"
        )


def main() -> None:
    """Print the limits of each scenario (default: the shipped ones) at each token cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, action="append", dest="scenarios")
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument(
        "--no-cross-check", dest="cross_check", action="store_false", help="skip the draws"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"cross-check on {QUICK_CHECK_REQUESTS:,} draws"
    )
    args = parser.parse_args()
    draws = QUICK_CHECK_REQUESTS if args.quick else CHECK_REQUESTS
    for path in args.scenarios or sorted(SHIPPED_DIR.glob("*.yaml")):
        scenario = load_scenario(path)
        print(f"\n=== {scenario.name}, {args.interactions:,} interactions (initial state)")
        for cost in COSTS:
            report(Truth(scenario), cost, args.interactions)
        for cost in COSTS:
            paired_report(Truth(scenario), cost, args.interactions)
        if args.cross_check:
            cross_check(scenario, draws)


if __name__ == "__main__":
    main()
