"""An in-process simulated fleet driving a learner through the real decision/outcome path.

Each simulated request (`controller.sim.requests`: its segment by traffic,
its EM and tokens from the scenario's curves) gets a threshold drawn from
the segment's current policy exactly as a serving node draws it (seeded by
the request_id, probability logged), and both events go to the agent. Every
`publish_every` interactions the agent rebuilds its policies, as the daemon
does on its publish interval.

Online figures use the *expected* EM and tokens of each chosen arm under the
scenario's true curves (pseudo-reward), so they measure the decisions, not
the EM coin flips; the oracle and the reference are those in force at each
interaction. Final figures evaluate each segment's greedy arm on the
scenario's state at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from stopbandit.controller.sim.requests import (
    SECONDS_PER_INTERACTION,
    START_TS,
    Requests,
    nearest_arm,
)
from stopbandit.controller.sim.scenario import Scenario, Truth
from stopbandit.policies.sampling import draw_index
from stopbandit.streams.events import FALLBACK_SEGMENT, Decision, Outcome, Policy

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import NDArray

    from stopbandit.controller.config import RewardConfig
    from stopbandit.controller.core import ControllerCore
    from stopbandit.controller.sim.requests import Request
    from stopbandit.streams.files import EventLogWriter

# The request clock is controller.sim.requests'; it stays importable from here.
__all__ = [
    "SECONDS_PER_INTERACTION",
    "START_TS",
    "Agent",
    "ControllerAgent",
    "Simulation",
    "evaluate_arms",
]

# Below this, oracle and reference coincide: nothing to close.
_NO_GAP = 1e-12


class Agent(Protocol):
    """What the simulator drives: the controller, or a baseline learner."""

    def policy_for(self, segment: str) -> Policy | None:
        """The policy a serving node holds for `segment` now (None: use the fallback arm)."""

    def observe(self, decision: Decision, outcome: Outcome, now: float) -> None:
        """Both events of one finished request."""

    def publish(self, now: float) -> None:
        """Rebuild and publish policies."""


class ControllerAgent:
    """The stopbandit core as a simulator agent: events go through join and learning."""

    def __init__(self, core: ControllerCore) -> None:
        self.core = core
        self.published: dict[str, Policy] = {}

    def policy_for(self, segment: str) -> Policy | None:
        """The published policy of `segment`, else the `*` fallback."""
        return self.published.get(segment) or self.published.get(FALLBACK_SEGMENT)

    def observe(self, decision: Decision, outcome: Outcome, now: float) -> None:
        """Offer both events to the core, decision first."""
        self.core.offer(decision, now)
        self.core.offer(outcome, now)

    def publish(self, now: float) -> None:
        """Publish what changed."""
        for policy in self.core.build_policies(now):
            self.published[policy.segment] = policy


@dataclass
class _Tally:
    """Running sums of the online figures."""

    n: int = 0
    em: float = 0.0
    tokens: float = 0.0
    reward: float = 0.0
    reference_em: float = 0.0
    reference_tokens: float = 0.0
    reference_reward: float = 0.0
    oracle_em: float = 0.0
    oracle_tokens: float = 0.0
    oracle_reward: float = 0.0
    arm_rewards: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def _gap_closed(value: float, reference: float, oracle: float) -> float:
    span = oracle - reference
    return (value - reference) / span if span > _NO_GAP else 1.0


def _summary(
    em: float, tokens: float, reward: float, ref: tuple[float, float, float]
) -> dict[str, float]:
    reference_em, reference_tokens, _ = ref
    return {
        "reward": reward,
        "em": em,
        "tokens": tokens,
        "token_reduction": 1.0 - tokens / reference_tokens if reference_tokens > 0 else 0.0,
        "em_drop_pts": 100.0 * (reference_em - em),
    }


def evaluate_arms(
    truth: Truth, arms_by_segment: dict[str, float], weights: RewardConfig, fallback_arm: float
) -> dict[str, Any]:
    """Expected figures of playing one arm per segment on `truth`, traffic-weighted."""
    share = truth.share
    chosen = np.array(
        [nearest_arm(truth.arms, arms_by_segment.get(k, fallback_arm)) for k in truth.keys]
    )
    rows = np.arange(len(truth.keys))
    rewards = truth.rewards(weights)
    oracle = truth.oracle_arms(weights)
    ref = truth.reference

    def weighted(matrix: NDArray[np.float64], cols: NDArray[np.int64] | int) -> float:
        return float(np.dot(share, matrix[rows, cols]))

    reference = (weighted(truth.em, ref), weighted(truth.tokens, ref), weighted(rewards, ref))
    result: dict[str, Any] = _summary(
        weighted(truth.em, chosen),
        weighted(truth.tokens, chosen),
        weighted(rewards, chosen),
        reference,
    )
    result["gap_closed"] = _gap_closed(result["reward"], reference[2], weighted(rewards, oracle))
    result["arms"] = {k: truth.arms[c] for k, c in zip(truth.keys, chosen, strict=True)}
    return result


class Simulation:
    """One simulated run of a scenario against an agent."""

    def __init__(
        self,
        scenario: Scenario,
        agent: Agent,
        *,
        seed: int,
        weights: RewardConfig,
        fallback_arm: float,
        publish_every: int = 1000,
        log: EventLogWriter | None = None,
    ) -> None:
        self.scenario = scenario
        self.agent = agent
        self.seed = seed
        self.weights = weights
        self.fallback_arm = fallback_arm
        self.publish_every = publish_every
        self.log = log
        self.truth = Truth(scenario)
        self._requests = Requests(self.truth, seed)
        self._fallback = nearest_arm(self.truth.arms, fallback_arm)
        self._tally = _Tally(arm_rewards=np.zeros(len(scenario.arms)))
        self.snapshots: dict[int, dict[str, Any]] = {}
        self._tables()

    def _tables(self) -> None:
        # Python lists: element access from the hot loop is several times faster than numpy's.
        rewards = self.truth.rewards(self.weights)
        self._rewards = rewards.tolist()
        self._oracle = self.truth.oracle_arms(self.weights).tolist()
        self._reward_rows = rewards

    def run(self, interactions: int, snapshot_at: Iterable[int] = ()) -> dict[str, Any]:
        """Run `interactions` requests; return the report (see `report`)."""
        marks = set(snapshot_at)
        requests, tally = self._requests, self._tally
        started = time.perf_counter()
        segment_counts = np.zeros(len(self.truth.keys))
        for i in range(interactions):
            while (drift := requests.pop_drift(i)) is not None:
                tally.arm_rewards += segment_counts @ self._reward_rows
                segment_counts[:] = 0
                requests.apply(drift)
                self._tables()
            request = requests.draw(i)
            segment_counts[request.segment] += 1
            decision, k = self._decide(request)
            outcome = requests.outcome(request, k)
            if self.log is not None:
                self.log.write(decision)
                self.log.write(outcome)
            self.agent.observe(decision, outcome, request.ts)
            self._count(request.segment, k)
            if (i + 1) % self.publish_every == 0:
                self.agent.publish(request.ts)
            if i + 1 in marks:
                self.snapshots[i + 1] = self.report(segment_counts, time.perf_counter() - started)
        return self.report(segment_counts, time.perf_counter() - started)

    def _count(self, s: int, k: int) -> None:
        """Add one interaction's expected figures, and the reference's and oracle's."""
        tally, ref, oracle = self._tally, self.truth.reference, self._oracle[s]
        em, tokens = self._requests.em[s], self._requests.tokens[s]
        rewards = self._rewards[s]
        tally.n += 1
        tally.em += em[k]
        tally.tokens += tokens[k]
        tally.reward += rewards[k]
        tally.reference_em += em[ref]
        tally.reference_tokens += tokens[ref]
        tally.reference_reward += rewards[ref]
        tally.oracle_em += em[oracle]
        tally.oracle_tokens += tokens[oracle]
        tally.oracle_reward += rewards[oracle]

    def _decide(self, request: Request) -> tuple[Decision, int]:
        """The decision a serving node logs for `request`, and the arm index it plays."""
        policy = self.agent.policy_for(request.key)
        if policy is None:
            k, probability, version, pmf = self._fallback, 1.0, 0, None
        else:
            k = draw_index(policy.pmf, request.request_id)
            probability, version = policy.pmf[k], policy.version
            pmf = list(zip(policy.arms, policy.pmf, strict=True))
        decision = Decision(
            v=1,
            request_id=request.request_id,
            ts=request.ts,
            segment=request.key,
            context=request.features,
            threshold=self.truth.arms[k],
            probability=probability,
            policy_version=version,
            pmf=pmf,
        )
        return decision, k

    def report(self, segment_counts: NDArray[np.float64], elapsed_s: float) -> dict[str, Any]:
        """The run so far: online, final policy, oracle, reference, best global arm."""
        tally, truth, n = self._tally, self.truth, max(self._tally.n, 1)
        reference = (tally.reference_em / n, tally.reference_tokens / n, tally.reference_reward / n)
        online = _summary(tally.em / n, tally.tokens / n, tally.reward / n, reference)
        oracle_reward = tally.oracle_reward / n
        online["gap_closed"] = _gap_closed(online["reward"], reference[2], oracle_reward)
        arm_rewards = (tally.arm_rewards + segment_counts @ self._reward_rows) / n
        best = int(np.argmax(arm_rewards))
        greedy = {k: p.greedy for k in truth.keys if (p := self.agent.policy_for(k)) is not None}
        final = evaluate_arms(truth, greedy, self.weights, self.fallback_arm)
        oracle_now = evaluate_arms(
            truth,
            {
                k: truth.arms[a]
                for k, a in zip(truth.keys, truth.oracle_arms(self.weights), strict=True)
            },
            self.weights,
            self.fallback_arm,
        )
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "interactions": tally.n,
            "reward_weights": self.weights.model_dump(),
            "online": online,
            "final_policy": final,
            "oracle": {
                "reward": oracle_reward,
                "em": tally.oracle_em / n,
                "tokens": tally.oracle_tokens / n,
                "arms": oracle_now["arms"],
            },
            "reference": {
                "arm": truth.arms[truth.reference],
                "reward": reference[2],
                "em": reference[0],
                "tokens": reference[1],
            },
            "best_global": {
                "arm": truth.arms[best],
                "reward": float(arm_rewards[best]),
                "gap_closed": _gap_closed(float(arm_rewards[best]), reference[2], oracle_reward),
            },
            "interactions_per_s": tally.n / elapsed_s if elapsed_s > 0 else 0.0,
        }
