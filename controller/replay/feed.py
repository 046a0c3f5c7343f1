"""Replay: logged events in, the joined interactions and what the daemon would have learned out.

Events go through the same gate and join as live traffic: `streams.codec.decode`
(bad lines are counted by kind, never fatal), then a `ControllerCore` (or,
without learning, a `JoinBuffer` with the config's join settings), with `now` = the event-time
watermark (the highest ts seen so far), as the daemon keeps per partition:
replay keeps one for the whole log, since a file does not say which partition
an event came from, and has no wall clock to clamp it to. With learning, the
core learns every interaction in order and rebuilds its policies every
`publish_every` interactions, as the daemon does on its publish interval (and
`simulate --publish-every`); each
interaction records the pmf of the policy built *before* it, so the learned
policy is evaluated without peeking at the interaction it is scored on.

The result is a set of per-interaction arrays (`ReplayLog`) for the
off-policy estimators (`controller.replay.evaluate`). Where outcomes carry
counterfactual traces (SCHEMA 1.1), `ReplayLog.observations` adds every arm
each interaction was observed at, the played one and those of its trace, kept
by the rules the core learns by and counted by reason when dropped
(`controller.replay.observations`); it is None for a log without traces. Nothing here reads a clock,
a socket or a file: callers hand in raw lines.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.outcome_bounds import check_outcome_bounds
from stopbandit.controller.replay.observations import Observations, TraceRecorder, TraceStats
from stopbandit.controller.sim.simulate import ControllerAgent
from stopbandit.streams.codec import InvalidEventError, decode
from stopbandit.streams.events import Decision
from stopbandit.streams.join import Interaction, JoinBuffer, JoinMismatchError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import NDArray

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.streams.events import Event, Policy

log = structlog.get_logger(__name__)

DEFAULT_PUBLISH_EVERY = 1000
EXPIRE_EVERY_EVENTS = 1000
# Invalid lines are all counted; only the first few of each kind are logged one by one.
LOGGED_INVALID_PER_KIND = 5


@dataclass(frozen=True)
class RawEvent:
    """One message as read: where it came from, its key (None in files) and its bytes."""

    source: str
    position: int
    key: bytes | None
    value: bytes | None


@dataclass
class ReplayStats:
    """What happened to the input: events read, rejected by kind, and the join's counters."""

    events: int = 0
    decisions: int = 0
    outcomes: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    join: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    traces: TraceStats = field(default_factory=TraceStats)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form; `traces` only when some outcome carried one."""
        document: dict[str, Any] = {
            "events": self.events,
            "decisions": self.decisions,
            "outcomes": self.outcomes,
            "invalid": dict(sorted(self.invalid.items())),
            "join": self.join,
            "pending_at_end": self.pending,
        }
        if self.traces:
            document["traces"] = self.traces.to_json()
        return document


@dataclass(frozen=True)
class ReplayLog:
    """Joined interactions as arrays, in join order.

    Attributes:
        arms: The configured thresholds (column order of every pmf).
        segments: Segment keys; `segment` holds indices into this list.
        segment: Segment index per interaction, shape (n,).
        arm: Logged arm index per interaction, shape (n,).
        probability: Logged propensity p_i of the logged arm, shape (n,).
        em: Exact match per interaction, shape (n,).
        tokens: Tokens per interaction, shape (n,).
        logged_pmf: The logging policy's pmf per interaction, shape (n, K); a
            row is NaN when the decision carried no pmf (and p_i < 1).
        learned_pmf: The pmf of the policy replay's core had built before each
            interaction, shape (n, K); None without learning.
        stats: Input and join counters.
        core: The core trained on the whole log (None without learning).
        watermark_s: The event-time watermark at the end (highest ts seen).
        observations: Every arm each interaction was observed at (played arm
            and kept trace); None when no interaction kept a trace.
    """

    arms: list[float]
    segments: list[str]
    segment: NDArray[np.int64]
    arm: NDArray[np.int64]
    probability: NDArray[np.float64]
    em: NDArray[np.float64]
    tokens: NDArray[np.float64]
    logged_pmf: NDArray[np.float64]
    learned_pmf: NDArray[np.float64] | None
    stats: ReplayStats
    core: ControllerCore | None
    watermark_s: float
    observations: Observations | None = None

    @property
    def n(self) -> int:
        """Number of joined interactions."""
        return int(self.arm.size)


class Replayer:
    """Feeds raw events through decode, join and (optionally) learning, collecting arrays."""

    def __init__(
        self,
        config: StopbanditConfig,
        *,
        learn: bool = True,
        publish_every: int = DEFAULT_PUBLISH_EVERY,
    ) -> None:
        if publish_every < 1:
            raise ValueError(f"publish_every must be >= 1, got {publish_every}")
        self.config = config
        self.arms = list(config.arms)
        self.publish_every = publish_every
        self.stats = ReplayStats()
        self.traces = TraceRecorder(config, self.stats.traces)
        self.agent = ControllerAgent(ControllerCore(config)) if learn else None
        self.join = (
            self.agent.core.join
            if self.agent is not None
            else JoinBuffer(
                wait_s=config.join.wait_s,
                max_pending=config.join.max_pending,
                dedup_capacity=config.join.dedup_capacity,
            )
        )
        default = config.arm_index(config.default_arm)
        self._default_pmf = tuple(1.0 if k == default else 0.0 for k in range(len(self.arms)))
        self._nan_pmf = tuple(math.nan for _ in self.arms)
        self._pmf_rows: dict[tuple[tuple[float, float], ...], tuple[float, ...]] = {}
        self._pending_pmf: dict[str, tuple[float, ...]] = {}
        self._segment_index: dict[str, int] = {}
        self._rows: list[tuple[int, int, float, float, float]] = []
        self._logged_rows: list[tuple[float, ...]] = []
        self._learned_rows: list[tuple[float, ...]] = []
        self._watermark = -math.inf
        self._last_ts = 0.0

    def feed_all(self, events: Iterable[RawEvent]) -> None:
        """Feed every event in order."""
        for raw in events:
            self.feed(raw)

    def feed(self, raw: RawEvent) -> None:
        """Decode, join and learn one message; invalid ones are counted, never raised."""
        self.stats.events += 1
        try:
            event = decode(raw.key, raw.value)
            interaction = self._offer(event)
        except InvalidEventError as error:
            self._reject(raw, error)
            return
        if self.stats.events % EXPIRE_EVERY_EVENTS == 0:
            self._expire()
        if interaction is not None:
            self._record(interaction)

    def _offer(self, event: Event) -> Interaction | None:
        # The same rules as ControllerCore.offer, so both modes reject the same events.
        self._watermark = now = max(self._watermark, event.ts)
        if isinstance(event, Decision):
            if self.config.arm_index(event.threshold) is None:
                raise InvalidEventError(
                    "arm",
                    f"decision.threshold: {event.threshold} is not one of the arms {self.arms}",
                )
            self.stats.decisions += 1
            if not self.join.has_joined(event.request_id):
                self._pending_pmf[event.request_id] = self._logged_pmf_of(event)
        else:
            check_outcome_bounds(event, self.config.limits.max_tokens)
            self.stats.outcomes += 1
            if event.counterfactual_dropped is not None:
                self.traces.dropped_by_decoder(event.counterfactual_dropped)
        self._last_ts = now
        if self.agent is not None:
            return self.agent.core.offer(event, now)
        try:
            return self.join.add(event, now)
        except JoinMismatchError as error:
            raise InvalidEventError("segment", str(error)) from None

    def _reject(self, raw: RawEvent, error: InvalidEventError) -> None:
        self.stats.invalid[error.kind] += 1
        if self.stats.invalid[error.kind] <= LOGGED_INVALID_PER_KIND:
            log.warning(
                "replay.invalid_event",
                source=raw.source,
                position=raw.position,
                kind=error.kind,
                reason=error.reason,
            )

    def _logged_pmf_of(self, decision: Decision) -> tuple[float, ...]:
        if decision.pmf is None:
            # A fallback decision (p = 1) is a point mass; otherwise the pmf is unknown.
            if decision.probability == 1.0:
                index = self.config.arm_index(decision.threshold)
                return tuple(1.0 if k == index else 0.0 for k in range(len(self.arms)))
            return self._nan_pmf
        key = tuple(decision.pmf)
        row = self._pmf_rows.get(key)
        if row is None:
            row = self._pmf_row(decision.pmf)
            self._pmf_rows[key] = row
        return row

    def _pmf_row(self, pairs: list[tuple[float, float]]) -> tuple[float, ...]:
        values = [0.0] * len(self.arms)
        for threshold, probability in pairs:
            index = self.config.arm_index(threshold)
            if index is None:
                if probability > 0.0:  # mass on an arm replay does not know: pmf unusable
                    return self._nan_pmf
                continue
            values[index] += probability
        return tuple(values)

    def _expire(self) -> None:
        expired, _ = self.join.expire(self._watermark)
        for decision in expired:
            self._pending_pmf.pop(decision.request_id, None)

    def _record(self, interaction: Interaction) -> None:
        segment = self._segment_index.setdefault(interaction.segment, len(self._segment_index))
        arm = self.config.arm_index(interaction.threshold)
        if arm is None:  # decisions with unknown arms were rejected before the join
            raise AssertionError(interaction.threshold)
        self.traces.record(len(self._rows), arm, interaction.counterfactual)
        self._rows.append(
            (
                segment,
                arm,
                interaction.probability,
                interaction.em,
                float(interaction.tokens),
            )
        )
        self._logged_rows.append(self._pending_pmf.pop(interaction.request_id, self._nan_pmf))
        if self.agent is None:
            return
        # The policy in force before this interaction: it was built from earlier ones only.
        self._learned_rows.append(self._policy_pmf(self.agent.policy_for(interaction.segment)))
        if len(self._rows) % self.publish_every == 0:
            self.agent.publish(self._last_ts)

    def _policy_pmf(self, policy: Policy | None) -> tuple[float, ...]:
        if policy is None:
            return self._default_pmf
        return tuple(policy.pmf)

    def finish(self) -> ReplayLog:
        """The arrays of everything fed so far; with learning, a last build of the policies.

        Raises:
            ValueError: no event joined, so there is nothing to evaluate.
        """
        if not self._rows:
            raise ValueError("no decision joined an outcome: nothing to replay")
        self.stats.join = dict(vars(self.join.stats))
        self.stats.pending = self.join.pending
        if self.agent is not None:
            self.agent.publish(self._last_ts)
        k_arms = len(self.arms)
        columns = list(zip(*self._rows, strict=True))
        arm = np.asarray(columns[1], dtype=np.int64)
        em = np.asarray(columns[3], dtype=np.float64)
        tokens = np.asarray(columns[4], dtype=np.float64)
        return ReplayLog(
            arms=self.arms,
            segments=list(self._segment_index),
            segment=np.asarray(columns[0], dtype=np.int64),
            arm=arm,
            probability=np.asarray(columns[2], dtype=np.float64),
            em=em,
            tokens=tokens,
            logged_pmf=np.asarray(self._logged_rows, dtype=np.float64).reshape(-1, k_arms),
            learned_pmf=(
                np.asarray(self._learned_rows, dtype=np.float64).reshape(-1, k_arms)
                if self.agent is not None
                else None
            ),
            stats=self.stats,
            core=self.agent.core if self.agent is not None else None,
            watermark_s=self._watermark,
            observations=self.traces.finish(arm, em, tokens),
        )


def replay(
    events: Iterable[RawEvent],
    config: StopbanditConfig,
    *,
    learn: bool = True,
    publish_every: int = DEFAULT_PUBLISH_EVERY,
) -> ReplayLog:
    """Feed `events` through decode, join and learning; return the interactions as arrays."""
    replayer = Replayer(config, learn=learn, publish_every=publish_every)
    replayer.feed_all(events)
    result = replayer.finish()
    log.info(
        "replay.joined",
        events=result.stats.events,
        interactions=result.n,
        invalid=sum(result.stats.invalid.values()),
        segments=len(result.segments),
    )
    return result
