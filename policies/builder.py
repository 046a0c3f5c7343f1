"""The one path from estimates to a policy (pure): beliefs -> reward -> exploration -> Policy.

`PolicyBuilder.decide` is where a segment's pmf and greedy arm come from,
for the daemon's publish, `simulate`, and replay's learned and sweep
targets alike, so that a rule added here holds in all of them.

`PolicyBook` remembers the last policy issued per segment and owns the
version counter: a policy is issued only when it differs from the last one,
and versions come from one counter shared by every segment, so they
strictly increase across all policies the book issues. The caller persists
the book (checkpoints) so they keep increasing across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stopbandit.policies.exploration import Exploration, explore
from stopbandit.policies.guardrail import GuardrailConfig, blocked_arms, over_limit
from stopbandit.policies.reward import reward, reward_cov
from stopbandit.streams.arms import DEFAULT_KNOB, Knob
from stopbandit.streams.events import ArmEstimates, ControlGroup, Policy, RewardWeights

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from stopbandit.policies.exploration import ExplorationConfig
    from stopbandit.policies.reward import Weights

PMF_CHANGE_TOLERANCE = 1e-3
_PMF_DECIMALS = 6


@dataclass(frozen=True)
class ArmBeliefs:
    """What the learners believe about each arm of one segment: EM and tokens, with covariances.

    `n` counts the segment's own (decayed) observations; `support` adds the
    prior's pseudo-observations.
    """

    em: NDArray[np.float64]
    em_cov: NDArray[np.float64]
    tokens: NDArray[np.float64]
    tokens_cov: NDArray[np.float64]
    n: NDArray[np.float64]
    support: NDArray[np.float64]
    # Share of the segment's requests whose node sends counterfactual traces: playing an
    # arm then shows every lower one, so exploring below the greedy arm buys nothing.
    trace_share: float = 0.0


def _rounded_pmf(pmf: NDArray[np.float64]) -> list[float]:
    # Six decimals keep messages short; the remainder goes to the largest entry so it sums to 1.
    values = [round(float(p), _PMF_DECIMALS) for p in pmf]
    largest = max(range(len(values)), key=values.__getitem__)
    values[largest] = round(values[largest] + 1.0 - sum(values), _PMF_DECIMALS + 3)
    return values


def exploration_share(policy: Policy) -> float:
    """The probability `policy` puts off its greedy arm: the share of requests it explores with."""
    greedy = min(range(len(policy.arms)), key=lambda k: abs(policy.arms[k] - policy.greedy))
    return max(0.0, 1.0 - policy.pmf[greedy])


@dataclass(frozen=True)
class PolicyBuilder:
    """Turns one segment's beliefs into its pmf, greedy arm and policy.

    `reference_arm` (an index) is the arm the guardrail measures EM drops
    against; without it (or without a `guardrail` limit) no arm is held back.
    """

    arms: list[float]
    default_arm: int
    exploration: ExplorationConfig
    # What the arms mean to the nodes (SCHEMA 1.1), carried by every policy.
    knob: Knob = DEFAULT_KNOB
    # Carried by every policy so nodes serve the control group (policies/sampling.py).
    control: ControlGroup | None = None
    reference_arm: int | None = None
    guardrail: GuardrailConfig = field(default_factory=GuardrailConfig)
    # Least share of the reference arm in every segment (target mode measuring against it).
    reference_floor: float = 0.0

    def decide(
        self, beliefs: ArmBeliefs, weights: Weights, *, segment: str | None = None
    ) -> Exploration:
        """The pmf and greedy arm under `weights`: the reward's belief through exploration.

        `segment` picks its guardrail limit when the limit is per segment (None: `*`'s).
        """
        return explore(
            reward(beliefs.em, beliefs.tokens, weights),
            reward_cov(beliefs.em_cov, beliefs.tokens_cov, weights),
            beliefs.support,
            self.default_arm,
            self.exploration,
            free_below=beliefs.trace_share,
            blocked=self.blocked(beliefs, segment),
            over_limit=self.over_limit(beliefs, segment),
            yardstick=self.yardstick(segment),
        )

    def yardstick(self, segment: str | None = None) -> tuple[int, float] | None:
        """The reference arm and its least share (a guardrail's on `segment`, target mode's)."""
        if self.reference_arm is None:
            return None
        share = self.reference_floor
        if self.guardrail.drop_pts_for(segment) is not None:
            share = max(share, self.guardrail.reference_share)
        return (self.reference_arm, share) if share > 0.0 else None

    def over_limit(
        self, beliefs: ArmBeliefs, segment: str | None = None
    ) -> NDArray[np.bool_] | None:
        """Arms whose estimated EM drop is over the guardrail's limit: explored, never greedy."""
        limit = self.guardrail.drop_pts_for(segment)
        if limit is None or self.reference_arm is None:
            return None
        return over_limit(beliefs.em, beliefs.em_cov, self.reference_arm, limit)

    def blocked(self, beliefs: ArmBeliefs, segment: str | None = None) -> NDArray[np.bool_] | None:
        """Arms the guardrail keeps at the floor for `segment` (None: no guardrail applies)."""
        limit = self.guardrail.drop_pts_for(segment)
        if limit is None or self.reference_arm is None:
            return None
        return blocked_arms(
            beliefs.em, beliefs.em_cov, self.reference_arm, limit, self.guardrail.confidence
        )

    def policy(
        self,
        segment: str,
        beliefs: ArmBeliefs,
        decision: Decided,
        *,
        weights: RewardWeights,
        now: float,
        version: int,
    ) -> Policy:
        """The segment's policy, as decided, issued at `now` with `version`."""
        return Policy(
            segment=segment,
            version=version,
            issued_at=now,
            arms=self.arms,
            pmf=decision.pmf,
            knob=self.knob,
            greedy=decision.greedy,
            reward=weights,
            control=self.control,
            estimates=ArmEstimates(
                em=[round(float(v), 6) for v in beliefs.em],
                tokens=[round(float(v), 2) for v in beliefs.tokens],
                n=[round(float(v), 2) for v in beliefs.n],
            ),
        )

    def decided(
        self, beliefs: ArmBeliefs, weights: Weights, *, segment: str | None = None
    ) -> Decided:
        """`decide` in the form a policy carries: the pmf rounded, the greedy arm's value."""
        result = self.decide(beliefs, weights, segment=segment)
        return Decided(pmf=_rounded_pmf(result.pmf), greedy=self.arms[result.greedy])


@dataclass(frozen=True)
class Decided:
    """A pmf and greedy arm as a policy carries them."""

    pmf: list[float]
    greedy: float

    def differs_from(self, previous: Policy | None, weights: RewardWeights) -> bool:
        """Whether a policy of this decision is worth issuing after `previous`.

        It is when its greedy arm or its reward weights differ, or any pmf
        entry by more than `PMF_CHANGE_TOLERANCE`.
        """
        return (
            previous is None
            or previous.greedy != self.greedy
            or previous.reward != weights
            or max(abs(a - b) for a, b in zip(previous.pmf, self.pmf, strict=True))
            > PMF_CHANGE_TOLERANCE
        )


@dataclass
class PolicyBook:
    """The last policy issued per segment, and the version counter they share."""

    last_version: int = 0
    current: dict[str, Policy] = field(default_factory=dict)

    def issue(
        self,
        builder: PolicyBuilder,
        segment: str,
        beliefs: ArmBeliefs,
        weights: RewardWeights,
        now: float,
        *,
        force: bool = False,
    ) -> Policy | None:
        """The segment's new policy, or None if it would not differ from the last one issued."""
        decision = builder.decided(beliefs, weights, segment=segment)
        previous = self.current.get(segment)
        unchanged = previous is not None and previous.control == builder.control
        if not force and unchanged and not decision.differs_from(previous, weights):
            return None
        self.last_version += 1
        policy = builder.policy(
            segment, beliefs, decision, weights=weights, now=now, version=self.last_version
        )
        self.current[segment] = policy
        return policy

    def raise_to(self, floor: int) -> None:
        """Issue no version at or below `floor` from now on."""
        self.last_version = max(self.last_version, floor)
