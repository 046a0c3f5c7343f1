"""A serving node with a confidence-threshold rule (DEER or Dynasor style) and its traces.

The policy's arms are thresholds on the node's confidence signal (`knob:
confidence`): DEER's confidence in the trial answer it induces at each
reasoning transition ("Wait", "Alternatively"), Dynasor's certaindex over
the answers it probes every k tokens. Per request the node:

1. draws the threshold from `PolicyClient`;
2. runs the model and, at each probe, applies the threshold: the first probe
   whose confidence is >= the threshold stops the reasoning and its trial
   answer is the answer (`ConfidenceNode.serve`, the one line marked
   "the threshold is applied here"). The reference threshold, 1.0, never
   stops early; a probe in the warm-up (`min_tokens`) never stops either;
3. keeps every probe it took, instead of throwing them away;
4. when the reference answer is known, grades the answer and every probed
   answer the same way, and logs the outcome with its `counterfactual`:
   what each lower threshold would have returned on this very run
   (`stopbandit.policies.counterfactual.confidence_trace`,
   docs/counterfactual-traces.md).

The model is anything with `probes()` and `final()` (`ModelRun`); a real
node wraps its engine's probing loop. `python examples/deer_confidence_node.py`
runs one request against a made-up trace and prints the two events.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from stopbandit.policies.client import Choice, PolicyClient
from stopbandit.policies.counterfactual import Probe, confidence_trace
from stopbandit.streams.codec import encode
from stopbandit.streams.events import FALLBACK_SEGMENT, Outcome

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from stopbandit.streams.events import ContextValue, Event

REFERENCE_THRESHOLD = 1.0  # the contract's reference arm for the confidence knob


@dataclass(frozen=True)
class TrialAnswer:
    """What the model gives at one probe: a trial answer and the confidence in it.

    Attributes:
        tokens: reasoning tokens generated when the probe was taken.
        answer: the trial answer (DEER induces it; Dynasor asks for it).
        answer_tokens: tokens of that answer (what stopping here adds to `tokens`).
        confidence: the node's confidence signal at this probe, in [0, 1].
    """

    tokens: int
    answer: str
    answer_tokens: int
    confidence: float


class ModelRun(Protocol):
    """One request's generation, as the node's probing loop sees it."""

    def probes(self) -> Iterable[TrialAnswer]:
        """The probes in the order taken, while the reasoning goes on."""
        ...

    def final(self) -> tuple[str, int]:
        """Run to the natural end: the answer and the request's tokens (reasoning + answer)."""
        ...


@dataclass(frozen=True)
class Answered:
    """A request answered at its threshold, waiting for its grade."""

    request_id: str
    segment: str
    arms: tuple[float, ...]
    threshold: float
    answer: str
    tokens: int
    stopped_early: bool
    probes: tuple[TrialAnswer, ...]


class ConfidenceNode:
    """Applies the drawn threshold to the model's probes and logs decisions and outcomes.

    Args:
        client: the policies the node holds.
        emit: where events go (`EventEmitter.emit`).
        arms: the thresholds the controller is configured with, used for the
            trace before any policy arrived (a policy's own arms win).
        fallback_threshold: the threshold without a (confidence) policy.
        min_tokens: the warm-up: probes before it may not stop the run, so they are
            not part of the rule and not of the trace either.
    """

    def __init__(
        self,
        client: PolicyClient,
        emit: Callable[[Event], object],
        *,
        arms: Sequence[float],
        fallback_threshold: float = REFERENCE_THRESHOLD,
        min_tokens: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.emit = emit
        self.arms = tuple(float(arm) for arm in arms)
        if float(fallback_threshold) not in self.arms:
            raise ValueError(f"fallback_threshold: {fallback_threshold} is not one of {self.arms}")
        self.fallback = Choice(float(fallback_threshold), 1.0, 0, None)
        self.min_tokens = min_tokens
        self.clock = clock
        self.pending: dict[str, Answered] = {}

    def choose(
        self, request_id: str, segment: str, context: Mapping[str, ContextValue] | None
    ) -> tuple[Choice, tuple[float, ...]]:
        """The drawn threshold and the arms it was drawn among."""
        choice = self.client.choose(request_id, segment, context)
        held = self.client.policies
        policy = held.get(segment) or held.get(FALLBACK_SEGMENT)
        if choice.policy_version == 0:
            return choice, self.arms
        if policy is None or policy.knob != "confidence" or policy.version != choice.policy_version:
            # A budget policy is no threshold (and a swap in between is rare): the fallback.
            return self.fallback, self.arms
        return choice, tuple(policy.arms)

    def serve(
        self,
        request_id: str,
        segment: str,
        run: ModelRun,
        context: Mapping[str, ContextValue] | None = None,
    ) -> Answered:
        """Run one request at its drawn threshold and log the decision."""
        chosen_s = self.clock()
        choice, arms = self.choose(request_id, segment, context)
        threshold = choice.threshold
        taken: list[TrialAnswer] = []
        stop: TrialAnswer | None = None
        for probe in run.probes():
            if probe.tokens < self.min_tokens:
                continue
            taken.append(probe)
            # The threshold is applied here: the first probe confident enough stops the run.
            if threshold < REFERENCE_THRESHOLD and probe.confidence >= threshold:
                stop = probe
                break
        if stop is not None:
            answer, tokens = stop.answer, stop.tokens + stop.answer_tokens
        else:
            answer, tokens = run.final()
        answered = Answered(
            request_id=request_id,
            segment=segment,
            arms=arms,
            threshold=threshold,
            answer=answer,
            tokens=tokens,
            stopped_early=stop is not None,
            probes=tuple(taken),
        )
        self.emit(choice.decision(request_id, segment, ts=chosen_s, context=context))
        self.pending[request_id] = answered
        return answered

    def grade(self, request_id: str, grader: Callable[[str], float]) -> Outcome | None:
        """Grade the answer and every probed answer alike; log the outcome and its trace.

        Returns:
            The outcome logged, or None for a request this node does not hold.
        """
        answered = self.pending.pop(request_id, None)
        if answered is None:
            return None
        em = grader(answered.answer)
        probes = [
            Probe(p.tokens, p.confidence, grader(p.answer), answer_tokens=p.answer_tokens)
            for p in answered.probes
        ]
        trace = confidence_trace(
            answered.arms, answered.threshold, probes, em=em, tokens=answered.tokens
        )
        outcome = Outcome(
            v=1,
            request_id=request_id,
            ts=self.clock(),
            segment=answered.segment,
            em=em,
            tokens=answered.tokens,
            stopped_early=answered.stopped_early,
            counterfactual=trace or None,  # the lowest arm has nothing below it
        )
        self.emit(outcome)
        return outcome


@dataclass(frozen=True)
class RecordedRun:
    """A model run replayed from a recorded trace (tests, and this script's demo)."""

    trial_answers: tuple[TrialAnswer, ...]
    answer: str
    tokens: int

    def probes(self) -> Iterable[TrialAnswer]:
        """The recorded probes, in order."""
        return iter(self.trial_answers)

    def final(self) -> tuple[str, int]:
        """The recorded natural end."""
        return self.answer, self.tokens


DEMO_RUN = RecordedRun(
    trial_answers=(
        TrialAnswer(tokens=180, answer="41", answer_tokens=9, confidence=0.55),
        TrialAnswer(tokens=420, answer="42", answer_tokens=9, confidence=0.83),
        TrialAnswer(tokens=610, answer="42", answer_tokens=9, confidence=0.96),
    ),
    answer="42",
    tokens=905,
)


def main(argv: list[str] | None = None) -> int:
    """Serve one request on the demo trace at a fixed threshold; print its two events."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.9, help="the node's fallback")
    parser.add_argument(
        "--arms", default="0.5,0.7,0.8,0.9,0.95,1.0", help="the controller's thresholds"
    )
    args = parser.parse_args(argv)
    # The SDK's logs go to stderr; stdout carries the events.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    arms = [float(arm) for arm in args.arms.split(",")]
    events: list[Event] = []
    client = PolicyClient(fallback_threshold=args.threshold)
    node = ConfidenceNode(client, events.append, arms=arms, fallback_threshold=args.threshold)
    node.serve("demo-1", "math/gsm8k", DEMO_RUN)
    node.grade("demo-1", lambda answer: float(answer.strip() == "42"))
    for event in events:
        print(encode(event).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
