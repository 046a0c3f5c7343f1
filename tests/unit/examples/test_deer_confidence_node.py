"""examples/deer_confidence_node.py against a fake model trace: where it stops, what it traces.

The trace is made up and the expected events are computed by hand from the
contract's rules (docs/counterfactual-traces.md): each lower threshold stops
at the first probe whose confidence reaches it, costing that probe's tokens
plus its answer's.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from example_scripts import EXAMPLES, load_example

from stopbandit.policies.client import PolicyClient
from stopbandit.streams.codec import decode, encode
from stopbandit.streams.events import Decision, Outcome, Policy

deer = load_example("deer_confidence_node")
ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 1.0]
SEGMENT = "math/gsm8k"
# Probes at 200, 400 and 600 reasoning tokens (answers of 10 tokens); the natural end at 900.
RUN = deer.RecordedRun(
    trial_answers=(
        deer.TrialAnswer(tokens=200, answer="41", answer_tokens=10, confidence=0.6),
        deer.TrialAnswer(tokens=400, answer="42", answer_tokens=10, confidence=0.85),
        deer.TrialAnswer(tokens=600, answer="42", answer_tokens=10, confidence=0.97),
    ),
    answer="42",
    tokens=900,
)


def grade(answer: str) -> float:
    """The checker for the probes and the answer alike: exact match with 42."""
    return float(answer == "42")


def at_threshold(threshold: float, version: int = 7) -> tuple[object, list[object]]:
    """A node holding a point-mass confidence policy on `threshold`, and its event list."""
    client = PolicyClient(fallback_threshold=1.0)
    pmf = [1.0 if arm == threshold else 0.0 for arm in ARMS]
    client.apply(
        Policy(
            segment=SEGMENT, version=version, issued_at=0.0, arms=ARMS, pmf=pmf, greedy=threshold
        )
    )
    events: list[object] = []
    return deer.ConfidenceNode(client, events.append, arms=ARMS), events


def served(threshold: float) -> tuple[Decision, Outcome]:
    """The decision and outcome of RUN served at `threshold`."""
    node, events = at_threshold(threshold)
    node.serve("r-1", SEGMENT, RUN)
    node.grade("r-1", grade)
    decision, outcome = events
    assert isinstance(decision, Decision)
    assert isinstance(outcome, Outcome)
    return decision, outcome


def test_the_threshold_stops_at_the_first_confident_probe():
    """At 0.9 the probe at 600 (0.97) stops the run: its answer, 600 + 10 tokens."""
    decision, outcome = served(0.9)
    assert (decision.threshold, decision.probability, decision.policy_version) == (0.9, 1.0, 7)
    assert (outcome.em, outcome.tokens, outcome.stopped_early) == (1.0, 610, True)
    # 0.5 stops at 200 (wrong answer), 0.7 and 0.8 at 400 (right).
    assert outcome.counterfactual == ((0.5, 0.0, 210), (0.7, 1.0, 410), (0.8, 1.0, 410))


def test_the_reference_threshold_runs_to_the_end_and_traces_every_lower_arm():
    """At 1.0 nothing stops the run; 0.95 would have stopped at 600."""
    _, outcome = served(1.0)
    assert (outcome.em, outcome.tokens, outcome.stopped_early) == (1.0, 900, False)
    assert outcome.counterfactual == (
        (0.5, 0.0, 210),
        (0.7, 1.0, 410),
        (0.8, 1.0, 410),
        (0.9, 1.0, 610),
        (0.95, 1.0, 610),
    )


def test_the_lowest_threshold_stops_first_and_has_nothing_below():
    """At 0.5 the first probe stops the run with its wrong answer; no counterfactual."""
    _, outcome = served(0.5)
    assert (outcome.em, outcome.tokens, outcome.stopped_early) == (0.0, 210, True)
    assert outcome.counterfactual is None


def test_a_lower_arm_no_probe_reached_gets_the_runs_own_outcome():
    """Probes never above 0.85: at 1.0, 0.9 and 0.95 would have run to the end, as this run."""
    run = deer.RecordedRun(trial_answers=RUN.trial_answers[:2], answer="42", tokens=900)
    node, _ = at_threshold(1.0)
    node.serve("r-2", SEGMENT, run)
    outcome = node.grade("r-2", grade)
    assert outcome.counterfactual == (
        (0.5, 0.0, 210),
        (0.7, 1.0, 410),
        (0.8, 1.0, 410),
        (0.9, 1.0, 900),
        (0.95, 1.0, 900),
    )


def test_the_warm_up_neither_stops_nor_traces():
    """With min_tokens 300 the probe at 200 is not part of the rule: 0.5 stops at 400."""
    client = PolicyClient(fallback_threshold=0.5)
    events: list[object] = []
    node = deer.ConfidenceNode(
        client, events.append, arms=ARMS, fallback_threshold=0.5, min_tokens=300
    )
    answered = node.serve("r-3", SEGMENT, RUN)
    assert (answered.answer, answered.tokens) == ("42", 410)
    outcome = node.grade("r-3", grade)
    assert (outcome.em, outcome.counterfactual) == (1.0, None)
    decision = events[0]
    assert (decision.threshold, decision.policy_version) == (0.5, 0)  # the fallback


def test_events_pass_the_contract_off_the_wire():
    """The outcome's trace survives encoding and the decoder's checks unchanged."""
    decision, outcome = served(0.95)
    for event in (decision, outcome):
        assert decode(SEGMENT.encode(), encode(event)) == event
    assert decode(SEGMENT.encode(), encode(outcome)).counterfactual_dropped is None


def test_a_budget_policy_is_not_read_as_a_threshold():
    """A token-budget policy on this node: the fallback threshold, logged as version 0."""
    client = PolicyClient(fallback_threshold=1.0)
    client.apply(
        Policy(
            segment=SEGMENT,
            version=3,
            issued_at=0.0,
            knob="token_budget",
            arms=[512.0, 1024.0],
            pmf=[1.0, 0.0],
            greedy=512.0,
        )
    )
    events: list[object] = []
    node = deer.ConfidenceNode(client, events.append, arms=ARMS)
    node.serve("r-4", SEGMENT, RUN)
    assert (events[0].threshold, events[0].policy_version) == (1.0, 0)


def test_grading_twice_or_unknown_logs_nothing():
    """A grade for a request the node does not hold is ignored."""
    node, events = at_threshold(0.9)
    assert node.grade("never-served", grade) is None
    node.serve("r-5", SEGMENT, RUN)
    node.grade("r-5", grade)
    assert node.grade("r-5", grade) is None
    assert len(events) == 2


def test_a_fallback_outside_the_arms_is_refused():
    """The fallback threshold must be one of the arms, or its trace could not be built."""
    with pytest.raises(ValueError, match="fallback_threshold"):
        deer.ConfidenceNode(
            PolicyClient(fallback_threshold=0.9), print, arms=ARMS, fallback_threshold=0.85
        )


def test_the_script_prints_its_two_events():
    """`python examples/deer_confidence_node.py` prints a decision and an outcome with a trace."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "deer_confidence_node.py"), "--threshold", "0.9"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    decision, outcome = (
        decode(SEGMENT.encode(), line.encode()) for line in result.stdout.splitlines()
    )
    assert isinstance(decision, Decision)
    assert isinstance(outcome, Outcome)
    assert decision.threshold == 0.9
    assert outcome.counterfactual == ((0.5, 0.0, 189), (0.7, 1.0, 429), (0.8, 1.0, 429))
