"""Counterfactual traces from probes and budget answers: the guide's examples, rules, properties."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stopbandit.policies.counterfactual import BudgetAnswer, Probe, budget_trace, confidence_trace
from stopbandit.streams.codec import decode, encode
from stopbandit.streams.events import Outcome, counterfactual_entries

CONFIDENCE_ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
BUDGET_ARMS = [512, 1024, 2048, 4096, 8192]
# docs/counterfactual-traces.md's DEER-style run: stopped at 0.95 by the fourth probe.
DEER_PROBES = [(300, 0.42, 0.0), (520, 0.74, 0.0), (700, 0.86, 1.0), (880, 0.96, 1.0)]


def outcome(em: float, tokens: int, entries: Any) -> Outcome:
    """The outcome a node would send, validated as the controller reads it off the wire."""
    sent = Outcome(
        v=1, request_id="r-1", ts=1.0, segment="s", em=em, tokens=tokens, counterfactual=entries
    )
    received = decode(b"s", encode(sent))
    assert isinstance(received, Outcome)
    return received


def test_the_guides_deer_example() -> None:
    """Each lower threshold stops at the first probe reaching it; tokens include the answer."""
    entries = confidence_trace(
        CONFIDENCE_ARMS, 0.95, DEER_PROBES, em=1.0, tokens=917, answer_tokens=37
    )
    assert entries == ((0.5, 0.0, 557), (0.7, 0.0, 557), (0.8, 1.0, 737), (0.9, 1.0, 917))
    assert outcome(1.0, 917, entries).counterfactual == entries


def test_an_arm_no_probe_reached_is_the_run_itself() -> None:
    """At the reference arm a run that ended naturally gives its own outcome to unreached arms."""
    probes = DEER_PROBES[:3]  # the highest confidence is 0.86; the run ends at 1210 tokens
    entries = confidence_trace(CONFIDENCE_ARMS, 1.0, probes, em=1.0, tokens=1210, answer_tokens=37)
    assert entries == (
        (0.5, 0.0, 557),
        (0.7, 0.0, 557),
        (0.8, 1.0, 737),
        (0.9, 1.0, 1210),
        (0.95, 1.0, 1210),
        (0.99, 1.0, 1210),
    )


def test_no_probes_at_all_give_every_lower_arm_the_outcome() -> None:
    """A run that never probed (it ended before the first probe) was every lower arm's run."""
    entries = confidence_trace(CONFIDENCE_ARMS, 0.8, [], em=0.0, tokens=90)
    assert entries == ((0.5, 0.0, 90), (0.7, 0.0, 90))


def test_the_lowest_arm_has_no_trace() -> None:
    """Nothing is below the lowest arm."""
    assert confidence_trace(CONFIDENCE_ARMS, 0.5, DEER_PROBES[:2], em=0.0, tokens=557) == ()
    assert budget_trace(BUDGET_ARMS, 512, [], em=0.0, tokens=600, reasoning_tokens=512) == ()


def test_answer_lengths_from_the_probe_or_a_function() -> None:
    """A probe's own answer length wins; otherwise the function's, called with the probe."""
    probes = [Probe(300, 0.6, 1.0, answer_tokens=12), Probe(500, 0.85, 1.0)]
    entries = confidence_trace(
        CONFIDENCE_ARMS, 0.9, probes, em=1.0, tokens=900, answer_tokens=lambda p: p.tokens // 10
    )
    assert entries == ((0.5, 1.0, 312), (0.7, 1.0, 550), (0.8, 1.0, 550))
    with pytest.raises(ValueError, match="carries no answer_tokens"):
        confidence_trace(CONFIDENCE_ARMS, 0.9, [Probe(300, 0.6, 1.0)], em=1.0, tokens=900)


def test_long_answers_are_capped_to_keep_tokens_monotone() -> None:
    """An early stop with a long answer never comes out above a later one, or the run."""
    probes = [Probe(400, 0.6, 1.0, answer_tokens=100), Probe(450, 0.75, 1.0, answer_tokens=20)]
    entries = confidence_trace(CONFIDENCE_ARMS, 0.8, probes, em=1.0, tokens=480)
    assert entries == ((0.5, 1.0, 470), (0.7, 1.0, 470))
    probes = [Probe(470, 0.85, 0.0, answer_tokens=50)]
    entries = confidence_trace(CONFIDENCE_ARMS, 1.0, probes, em=1.0, tokens=490)
    assert [spent for _, _, spent in entries] == [490, 490, 490, 490, 490, 490]


def test_the_guides_budget_example() -> None:
    """Budgets the reasoning passed give their answers; those it never reached, the outcome."""
    answers = [(512, 0.0, 572), (1024, 0.0, 1104), BudgetAnswer(2048, 1.0, 2143)]
    entries = budget_trace(BUDGET_ARMS, 4096, answers, em=1.0, tokens=3120, reasoning_tokens=3000)
    assert entries == ((512.0, 0.0, 572), (1024.0, 0.0, 1104), (2048.0, 1.0, 2143))
    entries = budget_trace(BUDGET_ARMS, 8192, answers, em=1.0, tokens=3120, reasoning_tokens=3000)
    assert entries[-1] == (4096.0, 1.0, 3120)
    assert outcome(1.0, 3120, entries).counterfactual == entries


def test_a_budget_the_node_did_not_ask_at_is_left_out() -> None:
    """Not observed, not sent; the answer at the played budget (the outcome) is ignored."""
    answers = [(2048, 1.0, 2150), (1024, 0.0, 1100), (4096, 1.0, 4200)]
    entries = budget_trace(BUDGET_ARMS, 4096, answers, em=1.0, tokens=4200, reasoning_tokens=4096)
    assert entries == ((1024.0, 0.0, 1100), (2048.0, 1.0, 2150))


CONFIDENCE_ERRORS = [
    ({"arms": []}, "must not be empty"),
    ({"arms": [0.5, 0.5, 1.0]}, "strictly ascending"),
    ({"arms": [0.5, math.nan]}, "finite number"),
    ({"arms": [0.5, 2.0]}, r"in \[0, 1\]"),
    ({"played": 0.6}, "not one of the arms"),
    ({"em": 1.5}, r"em: must be a number in \[0, 1\]"),
    ({"tokens": -1}, "tokens: must be an integer >= 0"),
    ({"tokens": True}, "tokens: must be an integer >= 0"),
    ({"probes": [(100, 1.2, 1.0)]}, r"confidence: must be in \[0, 1\]"),
    ({"probes": [(100, 0.5, -0.1)]}, r"probes\[0\].em"),
    ({"probes": [(100.5, 0.5, 1.0)]}, r"probes\[0\].tokens"),
    ({"probes": [(200, 0.5, 1.0), (100, 0.6, 1.0)]}, "in the order taken"),
    ({"probes": [(1000, 0.5, 1.0)]}, "after the run ended"),
    ({"probes": [(100, 0.97, 1.0), (200, 0.98, 1.0)]}, "yet the run went on"),
    ({"answer_tokens": -3}, "answer_tokens: must be an integer >= 0"),
]


@pytest.mark.parametrize(("change", "message"), CONFIDENCE_ERRORS)
def test_confidence_input_that_breaks_the_contract_is_refused(
    change: dict[str, Any], message: str
) -> None:
    """Bad arms, outcome or probes raise a ValueError saying what is wrong."""
    arguments: dict[str, Any] = {
        "arms": CONFIDENCE_ARMS,
        "played": 0.95,
        "probes": DEER_PROBES[:2],
        "em": 1.0,
        "tokens": 917,
        "answer_tokens": 37,
    } | change
    with pytest.raises(ValueError, match=message):
        confidence_trace(
            arguments.pop("arms"), arguments.pop("played"), arguments.pop("probes"), **arguments
        )


BUDGET_ERRORS = [
    ({"arms": [512, 1024.5]}, "integer >= 1"),
    ({"arms": [0, 512]}, "integer >= 1"),
    ({"played": 3000}, "not one of the arms"),
    ({"reasoning_tokens": 5000}, "reasoning_tokens: 5000 is more than"),
    ({"reasoning_tokens": 3200}, "reasoning_tokens: 3200 is more than"),
    ({"answers": [(700, 1.0, 800)]}, r"answers\[0\].budget: 700 is not one of the arms"),
    ({"answers": [(8192, 1.0, 800)]}, "above the played"),
    ({"answers": [(512, 2.0, 600)]}, r"answers\[0\].em"),
    ({"answers": [(512, 1.0, -1)]}, r"answers\[0\].tokens"),
    ({"answers": [(512, 1.0, 600), (512.0, 0.0, 600)]}, "a second answer at budget 512"),
    ({"answers": [(2048, 1.0, 2100)], "reasoning_tokens": 1500}, "never reached it"),
]


@pytest.mark.parametrize(("change", "message"), BUDGET_ERRORS)
def test_budget_input_that_breaks_the_contract_is_refused(
    change: dict[str, Any], message: str
) -> None:
    """Bad arms, outcome or answers raise a ValueError saying what is wrong."""
    arguments: dict[str, Any] = {
        "arms": BUDGET_ARMS,
        "played": 4096,
        "answers": [(512, 0.0, 572)],
        "em": 1.0,
        "tokens": 3120,
        "reasoning_tokens": 3000,
    } | change
    with pytest.raises(ValueError, match=message):
        budget_trace(
            arguments.pop("arms"), arguments.pop("played"), arguments.pop("answers"), **arguments
        )


def assert_valid_trace(
    entries: tuple[tuple[float, float, int], ...],
    arms: list[float],
    played: float,
    em: float,
    tokens: int,
) -> None:
    """Every rule of the contract: alone, in an Outcome off the wire, and against the decision."""
    raw = [list(entry) for entry in entries]
    assert counterfactual_entries(raw, tokens) == entries
    received = outcome(em, tokens, raw)
    assert received.counterfactual_dropped is None
    assert received.counterfactual == entries
    for arm, _, _ in entries:
        assert arm in arms
        assert arm < played


EM = st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0)


@st.composite
def confidence_runs(draw: st.DrawFn) -> dict[str, Any]:
    """A run at a drawn threshold: probes until one reaches it (or the run ends), its outcome."""
    arms = sorted(draw(st.sets(st.integers(0, 100), min_size=1, max_size=8)))
    thresholds = [a / 100 for a in arms]
    played = draw(st.sampled_from(thresholds))
    answer_tokens = draw(st.integers(0, 200))
    probes: list[tuple[int, float, float]] = []
    spent = 0
    stopped = False
    for gap, confidence, em in draw(st.lists(st.tuples(st.integers(0, 500), st.floats(0, 1), EM))):
        spent += gap
        probes.append((spent, confidence, em))
        if confidence >= played and played != thresholds[-1]:
            stopped = True  # the node's own rule: the run at `played` stops here
            break
    if stopped:
        tokens, em = spent + answer_tokens, probes[-1][2]
    else:
        tokens, em = spent + draw(st.integers(0, 1000)), draw(EM)
    return {
        "arms": thresholds,
        "played": played,
        "probes": probes,
        "em": em,
        "tokens": tokens,
        "answer_tokens": answer_tokens,
    }


@settings(max_examples=300)
@given(confidence_runs())
def test_any_confidence_trace_keeps_every_rule(run: dict[str, Any]) -> None:
    """Whatever the probes, the trace passes the contract's checks and covers every lower arm."""
    entries = confidence_trace(
        run["arms"],
        run["played"],
        run["probes"],
        em=run["em"],
        tokens=run["tokens"],
        answer_tokens=run["answer_tokens"],
    )
    assert_valid_trace(entries, run["arms"], run["played"], run["em"], run["tokens"])
    lower = [a for a in run["arms"] if a < run["played"]]
    assert [arm for arm, _, _ in entries] == lower
    for arm, em, _ in entries:
        stop = next((p for p in run["probes"] if p[1] >= arm), None)
        assert em == (run["em"] if stop is None else stop[2])


@st.composite
def budget_runs(draw: st.DrawFn) -> dict[str, Any]:
    """A run at a drawn budget, its reasoning length, and answers at some budgets it reached."""
    arms = sorted(draw(st.sets(st.integers(1, 10_000), min_size=1, max_size=8)))
    played = draw(st.sampled_from(arms))
    reasoning_tokens = draw(st.integers(0, played))
    tokens = reasoning_tokens + draw(st.integers(0, 300))
    reached = [b for b in arms if b <= reasoning_tokens]
    asked = draw(st.lists(st.sampled_from(reached), unique=True)) if reached else []
    answers = [(float(b), draw(EM), b + draw(st.integers(0, 300))) for b in asked]
    return {
        "arms": [float(a) for a in arms],
        "played": played,
        "answers": answers,
        "em": draw(EM),
        "tokens": tokens,
        "reasoning_tokens": reasoning_tokens,
    }


@settings(max_examples=300)
@given(budget_runs())
def test_any_budget_trace_keeps_every_rule(run: dict[str, Any]) -> None:
    """Whatever the answers, the trace passes the contract's checks; unobserved arms stay out."""
    entries = budget_trace(
        run["arms"],
        run["played"],
        run["answers"],
        em=run["em"],
        tokens=run["tokens"],
        reasoning_tokens=run["reasoning_tokens"],
    )
    assert_valid_trace(entries, run["arms"], run["played"], run["em"], run["tokens"])
    asked = {b: em for b, em, _ in run["answers"] if b < run["played"]}
    for arm, em, spent in entries:
        if arm in asked:
            assert em == asked[arm]
        else:
            assert arm >= run["reasoning_tokens"]
            assert (em, spent) == (run["em"], run["tokens"])
    missing = {a for a in run["arms"] if run["reasoning_tokens"] <= a < run["played"]}
    assert missing <= {arm for arm, _, _ in entries}
