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

With a guardrail (`guardrail.max_em_drop_pts`), the oracle of each segment
is its best arm among those whose true EM drop against the reference is
within the segment's limit, and gap closed is measured against that oracle.
The report also gives the realised exploration share (requests drawn off the
greedy arm of the policy they were drawn from) and, per segment, the online
EM drop with the 95 % half-width a measurement of it from the segment's own
outcomes would have, and the final greedy arm's true drop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from stopbandit.controller.sim.built import built
from stopbandit.controller.sim.requests import (
    SECONDS_PER_INTERACTION,
    START_TS,
    Requests,
    nearest_arm,
)
from stopbandit.controller.sim.scenario import Scenario, Truth
from stopbandit.controller.sim.targets import TargetTrace
from stopbandit.controller.targets import Totals
from stopbandit.policies.guardrail import GuardrailConfig, true_drop_allowed
from stopbandit.policies.sampling import serve_index, served_pmf
from stopbandit.streams.arms import DEFAULT_KNOB
from stopbandit.streams.events import FALLBACK_SEGMENT, Decision, Outcome, Policy

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import NDArray

    from stopbandit.controller.config import RewardConfig
    from stopbandit.controller.core import ControllerCore
    from stopbandit.controller.sim.control import ControlLedger
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
# Policies whose served pmf is kept (a policy's pmf repeats on every request drawn from it).
_SERVING_CACHE_SIZE = 4096
# Two-sided 95 % normal quantile: the half-width of a segment's measured online EM drop.
_Z95 = 1.959964


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
        """Publish what changed; segments evicted (limits.max_segments) fall back to `*`."""
        for segment in self.core.take_evicted():
            self.published.pop(segment, None)
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
    # Requests drawn off the greedy arm of the policy they were drawn from.
    explored: int = 0
    # Per segment (lists: the hot loop's element access): requests, expected EM played,
    # the reference's, and the Bernoulli variance of what was played.
    segment_n: list[int] = field(default_factory=list)
    segment_em: list[float] = field(default_factory=list)
    segment_reference_em: list[float] = field(default_factory=list)
    segment_em_var: list[float] = field(default_factory=list)


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


def oracle_arms(
    truth: Truth, weights: RewardConfig, guardrail: GuardrailConfig | None = None
) -> NDArray[np.int64]:
    """Best arm index per segment; with a guardrail, best among those within its EM limit."""
    if guardrail is None or guardrail.max_em_drop_pts is None:
        return truth.oracle_arms(weights)
    rewards = truth.rewards(weights)
    allowed = np.stack(
        [
            true_drop_allowed(truth.em[s], truth.reference, guardrail.drop_pts_for(key))
            for s, key in enumerate(truth.keys)
        ]
    )
    return np.asarray(np.argmax(np.where(allowed, rewards, -np.inf), axis=1), dtype=np.int64)


def evaluate_arms(
    truth: Truth,
    arms_by_segment: dict[str, float],
    weights: RewardConfig,
    fallback_arm: float,
    guardrail: GuardrailConfig | None = None,
) -> dict[str, Any]:
    """Expected figures of playing one arm per segment on `truth`, traffic-weighted.

    Gap closed is against the oracle `oracle_arms` gives under `guardrail`.
    """
    share = truth.share
    chosen = np.array(
        [nearest_arm(truth.arms, arms_by_segment.get(k, fallback_arm)) for k in truth.keys]
    )
    rows = np.arange(len(truth.keys))
    rewards = truth.rewards(weights)
    oracle = oracle_arms(truth, weights, guardrail)
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
    drops = 100.0 * (truth.em[rows, truth.reference] - truth.em[rows, chosen])
    result["em_drop_pts_by_segment"] = dict(zip(truth.keys, drops.tolist(), strict=True))
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
        guardrail: GuardrailConfig | None = None,
        control: ControlLedger | None = None,
    ) -> None:
        self.scenario = scenario
        # The control group's report and truth (None: not tallied, the run is as fast as before).
        self.control = control
        self._serving: dict[int, tuple[tuple[int, float] | None, list[float]]] = {}
        self.guardrail = guardrail
        self.agent = agent
        self.seed = seed
        self.weights = weights
        self.fallback_arm = fallback_arm
        self.publish_every = publish_every
        self.log = log
        self.truth = Truth(scenario)
        self._requests = Requests(self.truth, seed)
        self._fallback = nearest_arm(self.truth.arms, fallback_arm)
        segments = len(self.truth.keys)
        self._tally = _Tally(
            arm_rewards=np.zeros(len(scenario.arms)),
            segment_n=[0] * segments,
            segment_em=[0.0] * segments,
            segment_reference_em=[0.0] * segments,
            segment_em_var=[0.0] * segments,
        )
        self.snapshots: dict[int, dict[str, Any]] = {}
        # Target mode: λ's path against the truth (controller.sim.targets).
        target = agent.core.target if isinstance(agent, ControllerAgent) else None
        self.target_trace = TargetTrace(target) if target is not None else None
        self._tables()

    def _tables(self) -> None:
        # Python lists: element access from the hot loop is several times faster than numpy's.
        rewards = self.truth.rewards(self.weights)
        self._rewards = rewards.tolist()
        self._oracle = oracle_arms(self.truth, self.weights, self.guardrail).tolist()
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
                if self.control is not None:
                    self.control.drifted()
            request = requests.draw(i)
            segment_counts[request.segment] += 1
            decision, k = self._decide(request)
            outcome = requests.outcome(request, k)
            if self.log is not None:
                self.log.write(decision)
                self.log.write(outcome)
            if self.control is not None:
                self._record_control(request, decision, outcome)
            self.agent.observe(decision, outcome, request.ts)
            self._count(request.segment, k)
            if (i + 1) % self.publish_every == 0:
                self.agent.publish(request.ts)
                if self.target_trace is not None:
                    self.target_trace.record(i + 1, self._true_totals())
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
        tally.segment_n[s] += 1
        tally.segment_em[s] += em[k]
        tally.segment_reference_em[s] += em[ref]
        tally.segment_em_var[s] += em[k] * (1.0 - em[k])

    def _true_totals(self) -> Totals:
        tally = self._tally
        return Totals(tally.n, tally.tokens, tally.em, tally.reference_tokens, tally.reference_em)

    def _decide(self, request: Request) -> tuple[Decision, int]:
        """The decision a serving node logs for `request`, and the arm index it plays."""
        policy = self.agent.policy_for(request.key)
        if policy is None:
            k, probability, version, pmf = self._fallback, 1.0, 0, None
        else:
            control, served = self._served(policy)
            k = serve_index(policy.pmf, request.request_id, control)
            probability, version = served[k], policy.version
            if self.truth.arms[k] != policy.greedy:
                self._tally.explored += 1
            pmf = list(zip(policy.arms, served, strict=True))
        # Built, not validated (controller/sim/built.py); the context is copied as validation
        # would, so no event shares the truth's dict.
        decision = built(
            Decision,
            v=1,
            request_id=request.request_id,
            ts=request.ts,
            segment=request.key,
            context=dict(request.features),
            threshold=self.truth.arms[k],
            probability=probability,
            policy_version=version,
            pmf=pmf,
        )
        return decision, k

    def _served(self, policy: Policy) -> tuple[tuple[int, float] | None, list[float]]:
        """The policy's control group (arm index, fraction) and the pmf a node serves from."""
        cached = self._serving.get(policy.version)
        if cached is None:
            control = None
            if policy.control is not None and policy.control.fraction > 0.0:
                arm = nearest_arm(self.truth.arms, policy.control.arm)
                control = (arm, policy.control.fraction)
            served = served_pmf(policy.pmf, *control) if control is not None else policy.pmf
            if len(self._serving) > _SERVING_CACHE_SIZE:
                self._serving.clear()
            cached = self._serving[policy.version] = (control, served)
        return cached

    def _record_control(self, request: Request, decision: Decision, outcome: Outcome) -> None:
        assert self.control is not None  # noqa: S101 - the caller checked it
        s = request.segment
        self.control.record(
            decision,
            outcome,
            self.agent.policy_for(request.key),
            (self._requests.em[s], self._requests.tokens[s]),
            nearest_arm(self.truth.arms, self.control.control_arm),
        )

    def report(self, segment_counts: NDArray[np.float64], elapsed_s: float) -> dict[str, Any]:
        """The run so far: online, final policy, oracle, reference, best global arm."""
        tally, truth, n = self._tally, self.truth, max(self._tally.n, 1)
        reference = (tally.reference_em / n, tally.reference_tokens / n, tally.reference_reward / n)
        online = _summary(tally.em / n, tally.tokens / n, tally.reward / n, reference)
        oracle_reward = tally.oracle_reward / n
        online["gap_closed"] = _gap_closed(online["reward"], reference[2], oracle_reward)
        online["exploration_share"] = tally.explored / n
        arm_rewards = (tally.arm_rewards + segment_counts @ self._reward_rows) / n
        best = int(np.argmax(arm_rewards))
        greedy = {k: p.greedy for k in truth.keys if (p := self.agent.policy_for(k)) is not None}
        final = evaluate_arms(truth, greedy, self.weights, self.fallback_arm, self.guardrail)
        oracle_now = evaluate_arms(
            truth,
            {
                k: truth.arms[a]
                for k, a in zip(
                    truth.keys, oracle_arms(truth, self.weights, self.guardrail), strict=True
                )
            },
            self.weights,
            self.fallback_arm,
            self.guardrail,
        )
        # The knob only where it is not the 1.0 default: threshold reports stay as they were.
        knob = {} if self.scenario.knob == DEFAULT_KNOB else {"knob": self.scenario.knob}
        return {
            "scenario": self.scenario.name,
            **knob,
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
            **({"target": self.target_trace.report()} if self.target_trace is not None else {}),
            "segments": self._segment_report(final["em_drop_pts_by_segment"]),
        } | ({"control": self.control.report()} if self.control is not None else {})

    def _segment_report(self, final_drops: dict[str, float]) -> dict[str, dict[str, Any]]:
        """Per segment: requests, online EM drop (with a measurement's 95 % half-width)."""
        tally, segments = self._tally, {}
        for s, key in enumerate(self.truth.keys):
            n = max(tally.segment_n[s], 1)
            reference_em = tally.segment_reference_em[s] / n
            # A measurement from the segment's own outcomes: its played and its reference EM
            # each a mean of n Bernoulli draws.
            variance = tally.segment_em_var[s] / n + reference_em * (1.0 - reference_em)
            limit = None if self.guardrail is None else self.guardrail.drop_pts_for(key)
            segments[key] = {
                "interactions": tally.segment_n[s],
                "online_em_drop_pts": 100.0 * (reference_em - tally.segment_em[s] / n),
                "online_em_drop_halfwidth_pts": 100.0 * _Z95 * (variance / n) ** 0.5,
                "final_em_drop_pts": final_drops[key],
                "max_em_drop_pts": limit,
            }
        return segments
