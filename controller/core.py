"""The controller's pure core: events in, interactions learned, policies out.

The daemon, the simulator and replay all drive this one object, so online
and offline are the same computation. It reads no clock, socket or file:
every call takes `now`, and state moves in and out as JSON-ready data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from controller.learners.outcome import OutcomeEstimates, OutcomeLearner
from controller.reward import reward, reward_cov
from policies.builder import ArmBeliefs, PolicyBuilder
from streams.codec import InvalidEventError
from streams.events import FALLBACK_SEGMENT, Decision, Event, Outcome, Policy, RewardWeights
from streams.join import Interaction, JoinBuffer, JoinMismatchError

if TYPE_CHECKING:
    from controller.config import StopbanditConfig
    from controller.learners.vw import Backend

STATE_FORMAT = 1


class ControllerCore:
    """Join, learn, and build policies for the segments of one partition (or of everything)."""

    def __init__(self, config: StopbanditConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.weights = RewardWeights(
            em_weight=config.reward.em_weight,
            token_cost_per_1k=config.reward.token_cost_per_1k,
        )
        self.join = JoinBuffer(
            wait_s=config.join.wait_s,
            max_pending=config.join.max_pending,
            dedup_capacity=config.join.dedup_capacity,
        )
        self.learner = OutcomeLearner(config.arms, config.learner, backend)
        default_arm = config.arm_index(config.default_arm)
        if default_arm is None:  # the config model already guarantees it
            raise ValueError("default_arm is not one of the arms")
        self.builder = PolicyBuilder(
            arms=list(config.arms), default_arm=default_arm, exploration=config.exploration
        )
        self.drifts = 0

    def arm_of(self, threshold: float) -> int:
        """Index of a decision's threshold among the arms.

        Raises:
            InvalidEventError: the threshold is not one of the configured arms.
        """
        index = self.config.arm_index(threshold)
        if index is None:
            raise InvalidEventError(
                "arm", f"decision.threshold: {threshold} is not one of the arms {self.config.arms}"
            )
        return index

    def offer(self, event: Event, now: float) -> Interaction | None:
        """Join one valid event and learn the interaction it completes, if any.

        Raises:
            InvalidEventError: the event is well-formed but unusable here (unknown arm,
                segment differing from its counterpart's); the caller dead-letters it.
        """
        if isinstance(event, Decision):
            self.arm_of(event.threshold)
        try:
            interaction = self.join.add(event, now)
        except JoinMismatchError as error:
            raise InvalidEventError("segment", str(error)) from None
        if interaction is not None:
            self.learn(interaction)
        return interaction

    def learn(self, interaction: Interaction) -> None:
        """Update the models with one joined interaction."""
        if self.learner.learn_one(interaction, self.arm_of(interaction.threshold)):
            self.drifts += 1

    def expire(self, now: float) -> tuple[list[Decision], list[Outcome]]:
        """Give up on decisions and outcomes that waited longer than the join window."""
        return self.join.expire(now)

    @property
    def segments(self) -> list[str]:
        """Segments with learned interactions, in first-seen order."""
        return list(self.learner.stats)

    def _beliefs_of(self, estimates: OutcomeEstimates) -> ArmBeliefs:
        rewards = self.config.reward
        return ArmBeliefs(
            reward=reward(estimates.em, estimates.tokens, rewards),
            reward_cov=reward_cov(estimates.em_cov, estimates.tokens_cov, rewards),
            support=estimates.support,
            em=estimates.em,
            tokens=estimates.tokens,
            n=estimates.n,
        )

    def fallback_beliefs(self, estimates: dict[str, OutcomeEstimates] | None = None) -> ArmBeliefs:
        """Beliefs for a segment never seen: every known segment's, weighted by its traffic."""
        if estimates is None:
            estimates = self.learner.estimates_all()
        known = list(estimates.values())
        if not known:
            return self._beliefs_of(self.learner.estimates(FALLBACK_SEGMENT))
        traffic = np.array([e.n.sum() for e in known])
        share = (
            traffic / traffic.sum() if traffic.sum() > 0 else np.full(len(known), 1 / len(known))
        )
        pooled = OutcomeEstimates(
            em=np.tensordot(share, np.stack([e.em for e in known]), axes=1),
            em_cov=np.tensordot(share**2, np.stack([e.em_cov for e in known]), axes=1),
            tokens=np.tensordot(share, np.stack([e.tokens for e in known]), axes=1),
            tokens_cov=np.tensordot(share**2, np.stack([e.tokens_cov for e in known]), axes=1),
            n=np.sum([e.n for e in known], axis=0),
            support=np.sum([e.support for e in known], axis=0),
        )
        return self._beliefs_of(pooled)

    def build_policies(
        self,
        now: float,
        *,
        force: bool = False,
        estimates: dict[str, OutcomeEstimates] | None = None,
        with_fallback: bool = True,
    ) -> list[Policy]:
        """Policies that changed since they were last built (all of them with `force`).

        Args:
            now: the policies' `issued_at`.
            force: issue every policy, changed or not.
            estimates: `learner.estimates_all()` if the caller already has it (it costs
                as much as the build itself).
            with_fallback: whether the `*` fallback for unknown segments is a candidate.
        """
        issued: list[Policy] = []
        if estimates is None:
            estimates = self.learner.estimates_all()
        candidates = [*self.segments, FALLBACK_SEGMENT] if with_fallback else self.segments
        for segment in candidates:
            beliefs = (
                self.fallback_beliefs(estimates)
                if segment == FALLBACK_SEGMENT
                else self._beliefs_of(estimates[segment])
            )
            policy = self.builder.build(segment, beliefs, self.weights, now, force=force)
            if policy is not None:
                issued.append(policy)
        return issued

    @property
    def policies(self) -> dict[str, Policy]:
        """The last policy built for each segment."""
        return dict(self.builder.current)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (for checkpoints)."""
        return {
            "format": STATE_FORMAT,
            "learner": self.learner.snapshot(),
            "join": self.join.snapshot(),
            "last_version": self.builder.last_version,
            "policies": {s: p.model_dump(mode="json") for s, p in self.builder.current.items()},
            "drifts": self.drifts,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a `snapshot`, replacing the current state.

        Raises:
            ValueError: the snapshot is of another format or other arms.
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r} is not {STATE_FORMAT}")
        self.learner.restore(state["learner"])
        self.join.restore(state["join"])
        self.builder.last_version = max(self.builder.last_version, int(state["last_version"]))
        self.builder.current = {s: Policy.model_validate(p) for s, p in state["policies"].items()}
        self.drifts = int(state["drifts"])
