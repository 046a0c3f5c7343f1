"""Building and sending one round of policies, with versions that never go backwards.

Versions. A serving node ignores a policy older than the one it holds, so a
version must exceed every version ever issued for that segment, by this
process, by a crashed one, or by another replica that owned the partition
before. Before each round every core's counter is raised to

    max(its own counter (checkpointed), the process's last version, int(wall_ms) * 1000)

and the process's last version is carried from core to core within the round.
The checkpointed counter covers restarts; the wall-clock floor covers what a
previous owner issued after its last checkpoint (it issued at an earlier
wall-clock millisecond, so below the floor unless it issued more than 1000
policies in one millisecond or clocks are skewed by more than the time the
partition took to move). `* 1000` keeps versions below 2**53 until the year
2255, so they survive JSON readers that use doubles.

The `*` fallback. Each replica's cores pool the estimates of every segment
they own, weighted by traffic (`controller.core.fallback_beliefs`), the rule a
single process owning all partitions would apply. Only the owner of
partition 0 publishes it, so there is one writer of `*` at a time.

A round costs O(changed segments): each core rebuilds only the segments
that learned since their last build (`ControllerCore.build_policies`), and
`*` is rebuilt only when one did; a round where nothing was learned builds
nothing. A forced round (restore, a failed flush, the anti-entropy
republish every `publish.republish_interval_s`) rebuilds every policy on the
current shared fit: that period is how often a segment without traffic sees
the curve shape the others' learning moved.

Segments evicted by `limits.max_segments` leave `current` and the gauges;
nothing goes to the topic (the controller never deletes a policy it issued:
wire contract), so nodes keep the segment's last policy, no longer refined,
until the segment comes back and a newer one, built from a cold start,
replaces it. Evictions are counted and logged once per round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from stopbandit.controller.core import fallback_beliefs, policy_builder, reward_weights
from stopbandit.controller.daemon.segment_gauges import SegmentFigures, SegmentGauges
from stopbandit.policies.builder import PolicyBook
from stopbandit.policies.signing import canonical_json, sign
from stopbandit.streams.events import FALLBACK_SEGMENT, Policy
from stopbandit.streams.kafka import Message, Outbox

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.core import ControllerCore
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.policies.builder import ArmBeliefs

log = structlog.get_logger(__name__)

VERSIONS_PER_MS = 1000


def version_floor(wall_s: float) -> int:
    """The smallest version a policy issued at wall-clock time `wall_s` may carry."""
    return int(wall_s * 1000) * VERSIONS_PER_MS


def policy_value(policy: Policy) -> bytes:
    """The policies topic's value: canonical JSON, the bytes a signature covers."""
    return canonical_json(policy.model_dump(mode="json", exclude_none=True))


class Publisher:
    """Builds the changed policies of every core, signs them once, and queues them on the outbox.

    `current` is what the broker acknowledged (signed as on the topic): the
    /policies view. Each core's own book is what it built (and checkpoints).
    """

    def __init__(self, config: StopbanditConfig, outbox: Outbox, metrics: Metrics) -> None:
        self._topic = config.kafka.policies_topic
        key = config.publish.hmac_key
        self._key = key.get_secret_value().encode() if key is not None else None
        self._outbox = outbox
        self._metrics = metrics
        self._builder = policy_builder(config)
        self._weights = reward_weights(config)
        self._target_mode = config.target.enabled
        # The `*` policy this replica issued: built here, from every core's estimates.
        self._fallback = PolicyBook()
        self._in_flight: dict[tuple[str, int], Policy] = {}
        # Arms the guardrail held back when each segment's last policy was built.
        self._blocked: dict[str, int] = {}
        self._gauges = SegmentGauges(metrics, config.control.top_segments)
        self._max_builds = config.publish.max_builds_per_round
        # What the last build saw: its cores, and whether anything was rebuilt or evicted.
        self._cores: list[ControllerCore] = []
        self._changed = False
        self.last_version = 0
        # Policies decided in the last build (issued or found unchanged), `*` included.
        self.rebuilt = 0
        self.current: dict[str, Policy] = {}

    def build(
        self,
        cores: Sequence[tuple[ControllerCore, bool]],
        wall_s: float,
        *,
        with_fallback: bool,
        force_fallback: bool = False,
    ) -> list[Policy]:
        """The round's policies: changed ones (all for a core marked force), plus `*` if asked.

        Args:
            cores: each partition's core and whether to force all its policies out.
            wall_s: wall-clock time, the policies' `issued_at` and the version floor.
            with_fallback: whether this replica publishes `*` (it owns partition 0).
            force_fallback: issue `*` even if unchanged.
        """
        floor = max(self.last_version, version_floor(wall_s))
        issued: list[Policy] = []
        rebuilt = 0
        evicted: list[str] = []
        # One budget for the round, over every core: a flood in one partition cannot stall them all.
        budget = self._max_builds
        for core, force in cores:
            core.book.raise_to(floor)
            evicted += core.take_evicted()
            # `*` is built once below from every core's estimates, not per core.
            issued += core.build_policies(
                wall_s, force=force, with_fallback=False, max_builds=max(budget, 0)
            )
            rebuilt += core.rebuilt
            budget -= core.rebuilt
            floor = core.book.last_version
        self._forget(evicted)
        for policy in issued:
            self._count_blocked(policy.segment, _beliefs_of(cores, policy.segment))
        members = [core for core, _ in cores]
        self._changed = bool(rebuilt or evicted) or members != self._cores
        self._cores = members
        fallback_due = (
            force_fallback or rebuilt > 0 or FALLBACK_SEGMENT not in self._fallback.current
        )
        if with_fallback and cores and fallback_due:
            rebuilt += 1
            self._fallback.raise_to(floor)
            estimates: dict[str, ArmBeliefs] = {}
            for core in members:
                estimates.update(core.learner.beliefs)
            beliefs = fallback_beliefs(cores[0][0].learner, estimates)
            fallback = self._fallback.issue(
                self._builder,
                FALLBACK_SEGMENT,
                beliefs,
                # Target mode: the cores carry the fleet's tuned λ (daemon/stats.py).
                cores[0][0].weights if self._target_mode else self._weights,
                wall_s,
                force=force_fallback,
            )
            if fallback is not None:
                issued.append(fallback)
                self._count_blocked(FALLBACK_SEGMENT, beliefs)
            floor = self._fallback.last_version
        self.last_version = floor
        self.rebuilt = rebuilt
        return issued

    def _forget(self, evicted: list[str]) -> None:
        if not evicted:
            return
        self._metrics.segments_evicted.inc(len(evicted))
        for segment in evicted:
            self._blocked.pop(segment, None)
            self.current.pop(segment, None)
        # One line per round, however many: a flood must not flood the log too.
        log.info(
            "segments.evicted",
            count=len(evicted),
            first=evicted[0],
            note="idle longest past limits.max_segments; back, they start from a cold start",
        )

    def _figures(self) -> dict[str, SegmentFigures]:
        figures: dict[str, SegmentFigures] = {}
        for core in self._cores:
            for segment, stats in core.learner.stats.items():
                figures[segment] = SegmentFigures(
                    stats.updates, stats.drifts, self._blocked.get(segment, 0)
                )
        figures[FALLBACK_SEGMENT] = SegmentFigures(0, 0, self._blocked.get(FALLBACK_SEGMENT, 0))
        return figures

    def forget_segments(self, segments: list[str]) -> None:
        """Segments no longer owned here (their partition dropped): out of `current` and gauges."""
        for segment in segments:
            self.current.pop(segment, None)
            self._blocked.pop(segment, None)
        self._changed = True

    def _count_blocked(self, segment: str, beliefs: ArmBeliefs) -> None:
        blocked = self._builder.blocked(beliefs, segment)
        self._blocked[segment] = 0 if blocked is None else int(blocked.sum())

    def send(self, policies: list[Policy]) -> None:
        """Sign (if a key is configured) and queue each policy, keyed by its segment."""
        for policy in policies:
            signed = sign(policy, self._key) if self._key is not None else policy
            self._in_flight[policy.segment, policy.version] = signed
            self._outbox.send(Message(self._topic, policy.segment.encode(), policy_value(signed)))

    def delivered(self, policies: list[Policy], elapsed_s: float) -> None:
        """Record a round the broker acknowledged: metrics, the /policies view, a log event."""
        for policy in policies:
            # /policies serves them signed as on the topic, so keyed nodes can verify them.
            self.current[policy.segment] = self._in_flight.pop((policy.segment, policy.version))
        # A failed round's policies are built again (forced), never delivered as they were.
        self._in_flight.clear()
        if policies or self._changed:
            self._gauges.refresh(self.current, self._figures())
        self._metrics.policies_published.inc(len(policies))
        self._metrics.publish_latency.observe(elapsed_s)
        if policies:
            log.info(
                "policies.published",
                count=len(policies),
                first_version=policies[0].version,
                last_version=policies[-1].version,
            )


def _beliefs_of(cores: Sequence[tuple[ControllerCore, bool]], segment: str) -> ArmBeliefs:
    for core, _ in cores:
        beliefs = core.learner.beliefs.get(segment)
        if beliefs is not None:
            return beliefs
    raise KeyError(segment)
