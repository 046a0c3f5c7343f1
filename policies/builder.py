"""From per-arm reward beliefs to versioned policies, issuing only what changed (pure).

Versions come from one counter shared by every segment, so they strictly
increase across all policies this builder issues; the caller persists
`last_version` (checkpoints) so they keep increasing across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from policies.exploration import explore
from streams.events import ArmEstimates, Policy, RewardWeights

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from policies.exploration import ExplorationConfig

PMF_CHANGE_TOLERANCE = 1e-3
_PMF_DECIMALS = 6


@dataclass(frozen=True)
class ArmBeliefs:
    """What the learners believe about each arm of one segment."""

    reward: NDArray[np.float64]
    reward_cov: NDArray[np.float64]
    support: NDArray[np.float64]
    em: NDArray[np.float64]
    tokens: NDArray[np.float64]
    n: NDArray[np.float64]


def _rounded_pmf(pmf: NDArray[np.float64]) -> list[float]:
    # Six decimals keep messages short; the remainder goes to the largest entry so it sums to 1.
    values = [round(float(p), _PMF_DECIMALS) for p in pmf]
    largest = max(range(len(values)), key=values.__getitem__)
    values[largest] = round(values[largest] + 1.0 - sum(values), _PMF_DECIMALS + 3)
    return values


@dataclass
class PolicyBuilder:
    """Builds each segment's policy and remembers the last one issued."""

    arms: list[float]
    default_arm: int
    exploration: ExplorationConfig
    last_version: int = 0
    model_id: str = ""
    current: dict[str, Policy] = field(default_factory=dict)

    def build(
        self,
        segment: str,
        beliefs: ArmBeliefs,
        weights: RewardWeights,
        now: float,
        *,
        force: bool = False,
    ) -> Policy | None:
        """The segment's new policy, or None if it would not differ from the last one issued.

        A policy differs when its greedy arm, its reward weights, or any pmf
        entry (by more than `PMF_CHANGE_TOLERANCE`) differ; `force` issues it anyway.
        """
        result = explore(
            beliefs.reward, beliefs.reward_cov, beliefs.support, self.default_arm, self.exploration
        )
        pmf = _rounded_pmf(result.pmf)
        greedy = self.arms[result.greedy]
        previous = self.current.get(segment)
        if (
            not force
            and previous is not None
            and previous.greedy == greedy
            and previous.reward == weights
            and max(abs(a - b) for a, b in zip(previous.pmf, pmf, strict=True))
            <= PMF_CHANGE_TOLERANCE
        ):
            return None
        self.last_version += 1
        policy = Policy(
            segment=segment,
            version=self.last_version,
            issued_at=now,
            model_id=self.model_id,
            arms=self.arms,
            pmf=pmf,
            greedy=greedy,
            reward=weights,
            estimates=ArmEstimates(
                em=[round(float(v), 6) for v in beliefs.em],
                tokens=[round(float(v), 2) for v in beliefs.tokens],
                n=[round(float(v), 2) for v in beliefs.n],
            ),
        )
        self.current[segment] = policy
        return policy
