"""A simulated fleet of serving nodes against a real broker.

Requests come from the simulator's generator (`controller.sim.requests`:
the same seed gives the same segments, request ids, event times, drift
points and outcome draws as `stopbandit simulate`), but the threshold
comes from a real `PolicyClient.choose` fed by the policies topic, and
both events go out through a real `EventEmitter`. So `stopbandit fleet`
exercises the serving node's code path end to end, and a fleet that
waits for each publish (the demo's pacing, `on_publish_point`) reproduces
`stopbandit simulate`.

The figures kept per segment are expected values under the scenario's truth
(the EM probability and mean tokens of the chosen arm and of the reference
arm), as the simulator reports them, so they measure the decisions, not the
coin flips.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from stopbandit.controller.sim.requests import Requests, nearest_arm
from stopbandit.controller.sim.scenario import Scenario, Truth
from stopbandit.controller.sim.simulate import evaluate_arms
from stopbandit.streams.events import FALLBACK_SEGMENT

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from stopbandit.controller.config import RewardConfig
    from stopbandit.policies.client import PolicyClient
    from stopbandit.policies.emitter import EventEmitter

log = structlog.get_logger(__name__)

# Sleeping for less than this costs more than it paces.
_MIN_SLEEP_S = 0.001


class FleetError(RuntimeError):
    """The fleet cannot go on (events not delivered, or a publish point not reached).

    Attributes:
        interaction: how many requests had been made.
    """

    def __init__(self, reason: str, interaction: int) -> None:
        super().__init__(f"{reason} (after {interaction} requests)")
        self.interaction = interaction


@dataclass
class SegmentFigures:
    """Running expected figures of one segment: what was played and the reference arm."""

    n: int = 0
    em: float = 0.0
    tokens: float = 0.0
    reference_em: float = 0.0
    reference_tokens: float = 0.0

    def add(self, em: float, tokens: float, reference_em: float, reference_tokens: float) -> None:
        """Count one request."""
        self.n += 1
        self.em += em
        self.tokens += tokens
        self.reference_em += reference_em
        self.reference_tokens += reference_tokens

    def minus(self, other: SegmentFigures) -> SegmentFigures:
        """The figures of the requests since `other` was copied."""
        return SegmentFigures(
            self.n - other.n,
            self.em - other.em,
            self.tokens - other.tokens,
            self.reference_em - other.reference_em,
            self.reference_tokens - other.reference_tokens,
        )


@dataclass
class Progress:
    """A consistent copy of the fleet's state, for displays and reports.

    Attributes:
        interactions: requests made so far.
        segments: running figures per segment key.
        greedy: each segment's greedy threshold in the policy the first node holds.
        versions: each segment's policy version held by the first node (0: fallback).
        history: one entry per window: (interactions, {segment: figures of the window}).
    """

    interactions: int
    segments: dict[str, SegmentFigures]
    greedy: dict[str, float]
    versions: dict[str, int]
    history: list[tuple[int, dict[str, SegmentFigures]]] = field(default_factory=list)


class Fleet:
    """Simulated serving nodes making requests, drawing thresholds, emitting events.

    Args:
        scenario: the fleet's segments, traffic, response curves and drift.
        nodes: one `PolicyClient` per simulated node; request i goes to node i mod len.
        emitter: where every decision and outcome goes.
        seed: the random seed (the simulator's seed gives the simulator's requests).
        weights: reward weights, for the figures of the final report.
        fallback_threshold: the nodes' threshold when they hold no policy.
        rate_per_s: requests per second at most (None: as fast as possible).
        publish_every: requests between publish points (`on_publish_point`, history).
        on_publish_point: called with the request count after every `publish_every`
            requests, once their events are flushed; the demo waits there for the
            controller's policies, which makes the run reproduce `stopbandit simulate`.
        monotonic: the clock of the rate limit.
        sleep: how to wait for the rate limit.
    """

    def __init__(
        self,
        scenario: Scenario,
        nodes: Sequence[PolicyClient],
        emitter: EventEmitter,
        *,
        seed: int,
        weights: RewardConfig,
        fallback_threshold: float,
        rate_per_s: float | None = None,
        publish_every: int = 1000,
        on_publish_point: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not nodes:
            raise ValueError("nodes: at least one PolicyClient is needed")
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("rate_per_s: must be positive")
        self.scenario = scenario
        self.nodes = list(nodes)
        self.emitter = emitter
        self.seed = seed
        self.weights = weights
        self.fallback_threshold = fallback_threshold
        self.rate_per_s = rate_per_s
        self.publish_every = publish_every
        self.on_publish_point = on_publish_point
        self.truth = Truth(scenario)
        self._monotonic = monotonic
        self._sleep = sleep
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._interactions = 0
        self._figures = {key: SegmentFigures() for key in self.truth.keys}
        self._window_start = {key: SegmentFigures() for key in self.truth.keys}
        self._history: list[tuple[int, dict[str, SegmentFigures]]] = []

    def stop(self) -> None:
        """Ask `run` to return after the current request (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called."""
        return self._stop.is_set()

    def run(self, interactions: int) -> int:
        """Make `interactions` requests (fewer if stopped); return how many were made.

        Raises:
            FleetError: events could not be delivered at a publish point.
        """
        truth = self.truth
        requests = Requests(truth, self.seed)
        paced_from_s, paced_from_i = self._monotonic(), 0
        for i in range(interactions):
            if self._stop.is_set():
                return i
            while (drift := requests.pop_drift(i)) is not None:
                requests.apply(drift)
            request = requests.draw(i)
            s, key = request.segment, request.key
            node = self.nodes[i % len(self.nodes)]
            choice = node.choose(request.request_id, key, request.features)
            k = truth.arm_table.index(choice.threshold)
            if k is None:  # a policy over other arms than the scenario's: play the nearest
                k = nearest_arm(truth.arms, choice.threshold)
            self.emitter.emit(
                choice.decision(request.request_id, key, request.ts, request.features)
            )
            self.emitter.emit(requests.outcome(request, k))
            ref, em, tokens = truth.reference, requests.em, requests.tokens
            with self._lock:
                self._figures[key].add(em[s][k], tokens[s][k], em[s][ref], tokens[s][ref])
                self._interactions = i + 1
            if (i + 1) % self.publish_every == 0:
                self._publish_point(i + 1)
                paced_from_s, paced_from_i = self._monotonic(), i + 1
            elif self.rate_per_s is not None:
                self._keep_rate(paced_from_s, i + 1 - paced_from_i)
        return interactions

    def _publish_point(self, interactions: int) -> None:
        with self._lock:
            window = {k: f.minus(self._window_start[k]) for k, f in self._figures.items()}
            self._window_start = {k: replace(f) for k, f in self._figures.items()}
            self._history.append((interactions, window))
        if self.on_publish_point is None:
            return
        if not self.emitter.flush(timeout_s=60.0):
            raise FleetError("events not delivered within 60 s", interactions)
        stats = self.emitter.stats
        if stats.dropped or stats.failed:
            raise FleetError(f"{stats.dropped} events dropped, {stats.failed} failed", interactions)
        self.on_publish_point(interactions)

    def _keep_rate(self, since_s: float, made: int) -> None:
        assert self.rate_per_s is not None  # noqa: S101 - checked by the caller
        ahead_s = since_s + made / self.rate_per_s - self._monotonic()
        if ahead_s > _MIN_SLEEP_S:
            self._sleep(ahead_s)

    def progress(self) -> Progress:
        """A consistent copy of the figures, and what the first node holds now."""
        held = self.nodes[0].policies
        greedy: dict[str, float] = {}
        versions: dict[str, int] = {}
        for key in self.truth.keys:
            policy = held.get(key) or held.get(FALLBACK_SEGMENT)
            greedy[key] = policy.greedy if policy is not None else self.fallback_threshold
            versions[key] = policy.version if policy is not None else 0
        with self._lock:
            return Progress(
                interactions=self._interactions,
                segments={k: replace(f) for k, f in self._figures.items()},
                greedy=greedy,
                versions=versions,
                history=list(self._history),
            )

    def report(self) -> dict[str, Any]:
        """Figures of the run, computed as `stopbandit simulate` computes them.

        `final_policy` evaluates the greedy thresholds the first node holds on the
        scenario's truth (`controller.sim.simulate.evaluate_arms`); `online` sums the
        expected figures of the thresholds actually played.
        """
        progress = self.progress()
        final = evaluate_arms(self.truth, progress.greedy, self.weights, self.fallback_threshold)
        n = max(progress.interactions, 1)
        totals = SegmentFigures()
        for figures in progress.segments.values():
            totals.add(figures.em, figures.tokens, figures.reference_em, figures.reference_tokens)
        online = {
            "em": totals.em / n,
            "tokens": totals.tokens / n,
            "token_reduction": (
                1.0 - totals.tokens / totals.reference_tokens if totals.reference_tokens else 0.0
            ),
            "em_drop_pts": 100.0 * (totals.reference_em - totals.em) / n,
        }
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "interactions": progress.interactions,
            "final_policy": final,
            "online": online,
            "versions": progress.versions,
            "emitter": vars(self.emitter.stats).copy(),
        }
