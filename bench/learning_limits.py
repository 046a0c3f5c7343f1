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

    .venv/bin/python bench/learning_limits.py [--scenario FILE] [--interactions 100000]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from controller.config import RewardConfig
from controller.sim.scenario import DEFAULT_SCENARIO, Truth, load_scenario
from policies.reward import TOKENS_PER_UNIT

if TYPE_CHECKING:
    from numpy.typing import NDArray

COSTS = (0.02, 0.005)
PUBLISH_EVERY = 1000
Z = 2.0


def _requests_to_tell(difference: float, sd: float) -> float:
    # Two means of n requests each differ by `difference` at Z standard errors when
    # difference = Z * sd * sqrt(2 / n).
    return 2.0 * (Z * sd / difference) ** 2


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
    """Print the limits of one scenario at each token cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--interactions", type=int, default=100_000)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    print(f"{scenario.name}, {args.interactions:,} interactions (initial state)")
    for cost in COSTS:
        report(Truth(scenario), cost, args.interactions)


if __name__ == "__main__":
    main()
