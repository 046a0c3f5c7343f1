"""The controller's pure core: events in, interactions learned, policies out.

The daemon, the simulator and replay all drive this one object, so online
and offline are the same computation. It reads no clock, socket or file:
every call takes `now`, and state moves in and out as JSON-ready data.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from stopbandit.controller.learners.caps import capped_columns
from stopbandit.controller.learners.outcome import OutcomeLearner
from stopbandit.controller.outcome_bounds import check_outcome_bounds
from stopbandit.controller.savings_tally import SavingsTally, tally_restored, tally_snapshot
from stopbandit.controller.targets import TargetMode
from stopbandit.policies.builder import ArmBeliefs, PolicyBook, PolicyBuilder
from stopbandit.streams.codec import InvalidEventError
from stopbandit.streams.events import (
    FALLBACK_SEGMENT,
    ControlGroup,
    Decision,
    Event,
    Outcome,
    Policy,
    RewardWeights,
)
from stopbandit.streams.join import Interaction, JoinBuffer, JoinMismatchError

if TYPE_CHECKING:
    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.learners.vw import Backend

STATE_FORMAT = 1
# Segments a partition's savings tally names (the rest pooled): bounds its checkpoint share.
CORE_SAVINGS_SEGMENTS = 1000
_MASS_CACHE_SIZE = 4096


class ControllerCore:
    """Join, learn, and build policies for the segments of one partition (or of everything)."""

    def __init__(self, config: StopbanditConfig, backend: Backend | None = None) -> None:
        self.config = config
        # Target mode: token_cost_per_1k is λ, tuned from what is served (controller.targets).
        self.target = (
            TargetMode.of(config.target, config.reward.token_cost_per_1k)
            if config.target.enabled
            else None
        )
        self.weights = reward_weights(config, self.target)
        self._built_weights = self.weights
        self.join = JoinBuffer(
            wait_s=config.join.wait_s,
            max_pending=config.join.max_pending,
            max_pending_bytes=config.join.max_pending_bytes,
            dedup_capacity=config.join.dedup_capacity,
        )
        self.learner = OutcomeLearner(
            config.arms,
            config.learner,
            backend,
            knob=config.knob,
            max_segments=config.limits.max_segments,
        )
        self.builder = policy_builder(config)
        self.book = PolicyBook()
        self.drifts = 0
        self.counterfactual_dropped: Counter[str] = Counter()
        # Controlled vs control sums of what this core learned (checkpointed with it).
        self.savings = SavingsTally(
            config.control.fraction, config.control_arm, CORE_SAVINGS_SEGMENTS
        )
        self._mass_cache: dict[tuple[tuple[tuple[float, float], ...], float], list[float]] = {}
        # Segments evicted (limits.max_segments) whose policies the publisher has yet to forget.
        self._evicted: list[str] = []
        # Segments whose policy the last `build_policies` decided (issued or found unchanged).
        self.rebuilt = 0

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
                segment differing from its counterpart's, tokens above
                `limits.max_tokens`); the caller dead-letters it.
        """
        if isinstance(event, Decision):
            self.arm_of(event.threshold)
        check_outcome_bounds(event, self.config.limits.max_tokens)
        try:
            interaction = self.join.add(event, now)
        except JoinMismatchError as error:
            raise InvalidEventError("segment", str(error)) from None
        if interaction is not None:
            self.learn(interaction)
        return interaction

    def learn(self, interaction: Interaction) -> None:
        """Update the models with one joined interaction, at every arm its node observed."""
        if self.learner.learn_one(interaction, self.observed(interaction)):
            self.drifts += 1
        if self.learner.evicted:
            self._forget_evicted()
        self.savings.add(interaction)
        if self.target is not None:
            self.target.tally.add(interaction.segment, interaction.em, interaction.tokens)

    def observed(self, interaction: Interaction) -> list[tuple[int, float, float, float]]:
        """(arm, em, tokens, probability of being observed) of every arm the request was seen at.

        The played arm, and the counterfactual ones when the trace keeps the
        rules that need the decision (SCHEMA 1.1): each arm one of ours and
        below the played one. A trace that breaks them is not learned, and
        counted in `counterfactual_dropped` by reason; the outcome still is.
        With a trace, arm b is observed whenever an arm at or above it is
        played, so its probability is the pmf's mass from b up.
        """
        played = self.arm_of(interaction.threshold)
        observed = [(played, interaction.em, float(interaction.tokens), interaction.probability)]
        if not interaction.counterfactual:
            return observed
        arms = [self.config.arm_index(arm) for arm, _, _ in interaction.counterfactual]
        if any(arm is None for arm in arms):
            self.counterfactual_dropped["unknown_arm"] += 1
            return observed
        if any(arm is not None and arm >= played for arm in arms):
            self.counterfactual_dropped["not_below_played"] += 1
            return observed
        mass = self._mass_at_or_above(interaction)
        observed[0] = (*observed[0][:3], mass[played])
        observed += [
            (arm, em, float(tokens), mass[arm])
            for arm, (_, em, tokens) in zip(arms, interaction.counterfactual, strict=True)
            if arm is not None
        ]
        return observed

    def _mass_at_or_above(self, interaction: Interaction) -> list[float]:
        # Without a logged pmf, the played arm's own probability is all that is known (a
        # lower bound on the chance of observing a lower arm: weights stay conservative).
        if interaction.pmf is None:
            return [interaction.probability] * len(self.config.arms)
        # A policy's pmf repeats on every request drawn from it: computed once per pmf.
        key = (interaction.pmf, interaction.probability)
        mass = self._mass_cache.get(key)
        if mass is None:
            if len(self._mass_cache) >= _MASS_CACHE_SIZE:
                self._mass_cache.clear()
            mass = self._mass_cache[key] = self._suffix_mass(interaction)
        return mass

    def _suffix_mass(self, interaction: Interaction) -> list[float]:
        assert interaction.pmf is not None  # noqa: S101 - the caller checked it
        pmf = [0.0] * len(self.config.arms)
        for arm, probability in interaction.pmf:
            index = self.config.arm_index(arm)
            if index is not None:
                pmf[index] += probability
        above = [0.0] * len(pmf)
        running = 0.0
        for k in range(len(pmf) - 1, -1, -1):
            running += pmf[k]
            above[k] = running
        return [max(p, interaction.probability) for p in above]

    def _forget_evicted(self) -> None:
        # An evicted segment is unknown again: back, it starts from a cold start (the prior).
        for segment in self.learner.take_evicted():
            self.book.current.pop(segment, None)
            if self.target is not None:
                self.target.tally.pending.pop(segment, None)
            self._evicted.append(segment)

    def take_evicted(self) -> list[str]:
        """Segments evicted (`limits.max_segments`) since the last call: their policies are gone."""
        evicted, self._evicted = self._evicted, []
        return evicted

    def expire(self, now: float) -> tuple[list[Decision], list[Outcome]]:
        """Give up on decisions and outcomes that waited longer than the join window."""
        return self.join.expire(now)

    @property
    def segments(self) -> list[str]:
        """Segments with learned interactions, in first-seen order."""
        return list(self.learner.stats)

    def build_policies(
        self,
        now: float,
        *,
        force: bool = False,
        estimates: dict[str, ArmBeliefs] | None = None,
        with_fallback: bool = True,
        max_builds: int | None = None,
    ) -> list[Policy]:
        """Policies that changed since they were last built (all of them with `force`).

        Only segments that learned since their last build are rebuilt, with
        `publish.refresh_per_round` others, those built longest ago
        (`OutcomeLearner.estimates_changed`), so a round costs O(changed
        segments); a round where nothing was learned builds nothing. The shape
        the others' learning moves reaches an idle segment within
        (segments / refresh_per_round) rounds where something was learned, and at
        every forced round (restore, the daemon's anti-entropy republish every
        `publish.republish_interval_s`), which rebuilds them all. A change of the
        reward weights (target mode's λ) rebuilds all too.

        Args:
            now: the policies' `issued_at`.
            force: issue every policy, changed or not.
            estimates: the beliefs to build from instead (e.g. `learner.estimates_all()`):
                every segment in it is a candidate.
            with_fallback: whether the `*` fallback for unknown segments is a candidate.
            max_builds: most policies to build (not forced), the busiest changed segments
                first, the rest next time; `publish.max_builds_per_round` by default.
        """
        issued: list[Policy] = []
        refresh = self.config.publish.refresh_per_round
        limit = self.config.publish.max_builds_per_round if max_builds is None else max_builds
        changed = (
            self.learner.estimates_changed(force=force, refresh=refresh, limit=limit)
            if estimates is None
            else estimates
        )
        every = self.learner.beliefs if estimates is None else estimates
        if self.target is not None:
            self.tune(every, now)
        if self.weights != self._built_weights:
            # Target mode's λ moved (stepped here, or taken from the fleet by set_lambda):
            # every segment's policy moves with it, changed data or not.
            changed = every
            self._built_weights = self.weights
        self.rebuilt = len(changed)
        for segment, beliefs in changed.items():
            policy = self.book.issue(self.builder, segment, beliefs, self.weights, now, force=force)
            if policy is not None:
                issued.append(policy)
        fallback_due = force or bool(changed) or FALLBACK_SEGMENT not in self.book.current
        if with_fallback and fallback_due:
            beliefs = fallback_beliefs(self.learner, every)
            policy = self.book.issue(
                self.builder, FALLBACK_SEGMENT, beliefs, self.weights, now, force=force
            )
            if policy is not None:
                issued.append(policy)
        return issued

    def tune(self, estimates: dict[str, ArmBeliefs], now: float) -> None:
        """Target mode: settle the tally at the reference arm's estimates, step λ if local."""
        assert self.target is not None  # noqa: S101 - callers check
        reference = self.config.arm_index(self.config.reference_arm)
        assert reference is not None  # noqa: S101 - the config model guarantees it
        self.target.publish_round(
            {s: (float(b.em[reference]), float(b.tokens[reference])) for s, b in estimates.items()},
            now,
        )
        self.weights = reward_weights(self.config, self.target)

    def set_lambda(self, value: float) -> None:
        """Target mode: take a λ stepped elsewhere (the daemon's fleet-wide controller)."""
        assert self.target is not None  # noqa: S101 - callers check
        self.target.controller.lambda_ = value
        self.weights = reward_weights(self.config, self.target)

    @property
    def policies(self) -> dict[str, Policy]:
        """The last policy built for each segment."""
        return dict(self.book.current)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (for checkpoints)."""
        return {
            "format": STATE_FORMAT,
            "learner": self.learner.snapshot(),
            "join": self.join.snapshot(),
            "last_version": self.book.last_version,
            "policies": {s: p.model_dump(mode="json") for s, p in self.book.current.items()},
            "drifts": self.drifts,
            "savings": tally_snapshot(self.savings),
            # Only in target mode: a checkpoint without it restores as before.
            **({"target": self.target.snapshot()} if self.target is not None else {}),
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
        self.book.raise_to(int(state["last_version"]))
        # A checkpoint over `limits.max_segments` (written with a larger one) keeps the most
        # recent segments; the others' policies go with their statistics, unread.
        self._evicted = self.learner.take_evicted()
        gone = set(self._evicted)
        self.book.current = {
            s: Policy.model_validate(p) for s, p in state["policies"].items() if s not in gone
        }
        self.drifts = int(state["drifts"])
        # Figures, not learning: a missing, malformed or other-group tally starts afresh.
        self.savings = tally_restored(
            state.get("savings"),
            self.config.control.fraction,
            self.config.control_arm,
            CORE_SAVINGS_SEGMENTS,
        ) or SavingsTally(
            self.config.control.fraction, self.config.control_arm, CORE_SAVINGS_SEGMENTS
        )
        if self.target is not None and state.get("target") is not None:
            self.target.restore(state["target"])
            self.weights = reward_weights(self.config, self.target)


def fallback_beliefs(learner: OutcomeLearner, estimates: dict[str, ArmBeliefs]) -> ArmBeliefs:
    """Beliefs for a segment never seen: every known segment's, weighted by its traffic.

    No segment weighs more than all the others together, in the traffic shares
    and in each arm's support and count (`caps.capped_columns`, the shape's
    own rule): one segment of any size holds at most half of `*`, and its traffic
    on an arm nobody else plays cannot make that arm supported there (issue 14).
    With no segment known yet, the learner's cold start for `*` (its shared models' prior).
    """
    if not estimates:
        return learner.estimates(FALLBACK_SEGMENT)
    segments = list(estimates.values())
    traffic = capped_columns(np.array([[b.n.sum()] for b in segments]))[:, 0]
    share = (
        traffic / traffic.sum()
        if traffic.sum() > 0
        else np.full(len(segments), 1.0 / len(segments))
    )
    return ArmBeliefs(
        em=np.tensordot(share, np.stack([b.em for b in segments]), axes=1),
        em_cov=np.tensordot(share**2, np.stack([b.em_cov for b in segments]), axes=1),
        tokens=np.tensordot(share, np.stack([b.tokens for b in segments]), axes=1),
        tokens_cov=np.tensordot(share**2, np.stack([b.tokens_cov for b in segments]), axes=1),
        n=capped_columns(np.stack([b.n for b in segments])).sum(axis=0),
        support=capped_columns(np.stack([b.support for b in segments])).sum(axis=0),
        trace_share=float(np.dot(share, [b.trace_share for b in segments])),
    )


def policy_builder(config: StopbanditConfig) -> PolicyBuilder:
    """The policy builder of a configuration: its arms, default arm and exploration rule."""
    default_arm = config.arm_index(config.default_arm)
    reference_arm = config.arm_index(config.reference_arm)
    if default_arm is None or reference_arm is None:  # the config model already guarantees it
        raise ValueError("default_arm and reference_arm must be arms")
    control = (
        ControlGroup(fraction=config.control.fraction, arm=config.control_arm)
        if config.control.fraction > 0.0
        else None
    )
    return PolicyBuilder(
        arms=list(config.arms),
        default_arm=default_arm,
        exploration=config.exploration,
        knob=config.knob,
        control=control,
        reference_arm=reference_arm,
        guardrail=config.guardrail,
        reference_floor=target_reference_floor(config),
    )


def target_reference_floor(config: StopbanditConfig) -> float:
    """The least share of the reference arm target mode keeps in every segment's policy.

    Target mode measures against the reference arm, which the policies leave once
    they save tokens: without a control group serving it, its estimate would rest on
    ever older data. With one, the control group measures it.
    """
    if not config.target.enabled:
        return 0.0
    if config.control.fraction > 0.0 and math.isclose(config.control_arm, config.reference_arm):
        return 0.0
    return config.target.reference_share


def reward_weights(config: StopbanditConfig, target: TargetMode | None = None) -> RewardWeights:
    """The reward weights policies are built with and echo.

    The configured ones; in target mode, the tuned λ as `token_cost_per_1k`.
    """
    # λ to six significant digits: policies echo it, and a step below that changes nothing.
    token_cost_per_1k = (
        config.reward.token_cost_per_1k if target is None else float(f"{target.lambda_:.6g}")
    )
    return RewardWeights(em_weight=config.reward.em_weight, token_cost_per_1k=token_cost_per_1k)
