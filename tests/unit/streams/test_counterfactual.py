"""Counterfactual traces on outcomes (SCHEMA 1.1): kept when valid, else dropped by reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stopbandit.streams.codec import decode, encode
from stopbandit.streams.events import Outcome


def outcome_bytes(counterfactual: object, tokens: int = 900) -> bytes:
    """An outcome message with the given `counterfactual` value."""
    document = {
        "type": "outcome",
        "v": 1,
        "request_id": "r-1",
        "ts": 1.0,
        "segment": "s",
        "em": 1.0,
        "tokens": tokens,
        "counterfactual": counterfactual,
    }
    return json.dumps(document).encode()


def test_a_valid_trace_is_kept_as_triples_and_written_back() -> None:
    """Ascending arms, em in [0, 1], rising tokens: kept, and encode writes it back."""
    event = decode(b"s", outcome_bytes([[0.8, 0, 402], [0.9, 1.0, 655]]))
    assert isinstance(event, Outcome)
    assert event.counterfactual == ((0.8, 0.0, 402), (0.9, 1.0, 655))
    assert event.counterfactual_dropped is None
    assert decode(b"s", encode(event)) == event


@pytest.mark.parametrize(
    ("trace", "reason"),
    [
        ("not a list", "shape"),
        ([[0.8, 1.0]], "shape"),
        ([0.8], "shape"),
        ([[None, 1.0, 10]], "arm"),
        ([[True, 1.0, 10]], "arm"),
        ([[0.8, 1.5, 10]], "em"),
        ([[0.8, -0.1, 10]], "em"),
        ([[0.8, "1", 10]], "em"),
        ([[0.8, 1.0, -1]], "tokens"),
        ([[0.8, 1.0, 10.5]], "tokens"),
        ([[0.8, 1.0, 2**63]], "tokens"),
        ([[0.9, 1.0, 10], [0.8, 1.0, 20]], "order"),
        ([[0.8, 1.0, 10], [0.8, 1.0, 20]], "order"),
        ([[0.8, 1.0, 30], [0.9, 1.0, 20]], "monotone"),
        ([[0.8, 1.0, 901]], "monotone"),
    ],
)
def test_a_trace_that_breaks_a_rule_is_dropped_and_the_outcome_kept(trace, reason) -> None:
    """The outcome still decodes with its em and tokens; the trace is gone, with its reason."""
    event = decode(b"s", outcome_bytes(trace))
    assert isinstance(event, Outcome)
    assert (event.em, event.tokens) == (1.0, 900)
    assert event.counterfactual is None
    assert event.counterfactual_dropped == reason


def test_a_producer_cannot_set_the_drop_reason() -> None:
    """`counterfactual_dropped` is the controller's, never read from the wire."""
    raw = json.loads(outcome_bytes(None))
    raw["counterfactual_dropped"] = "forged"
    event = decode(b"s", json.dumps(raw).encode())
    assert event.counterfactual_dropped is None  # type: ignore[union-attr]
    assert b"dropped" not in encode(event)


@given(st.lists(st.tuples(st.floats(), st.floats(), st.integers()), max_size=6))
def test_any_trace_never_makes_a_valid_outcome_invalid(trace) -> None:
    """Whatever the trace holds, the outcome decodes; a kept trace keeps every rule."""
    event = decode(b"s", outcome_bytes([list(t) for t in trace], tokens=10**6))
    assert isinstance(event, Outcome)
    if event.counterfactual is not None:
        arms = [a for a, _, _ in event.counterfactual]
        assert arms == sorted(set(arms))
        assert all(0.0 <= em <= 1.0 for _, em, _ in event.counterfactual)
