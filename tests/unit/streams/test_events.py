"""The wire models themselves: the policy's rules, and what holds for events built in Python.

The decision and outcome rules are tested through `decode` in test_codec.py;
here the policy (which the controller writes and nodes parse) gets its own
table, and the models are checked as Python values (frozen, strict).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from stopbandit.streams.events import (
    FALLBACK_SEGMENT,
    Decision,
    Outcome,
    Policy,
    RewardWeights,
)

# SCHEMA.md's policy example, with its elided parts filled in.
POLICY_EXAMPLE = """{"v": 1, "segment": "math/gsm8k/r1-distill-qwen-7b", "version": 18,
 "issued_at": 1764489601.0, "model_id": "3b1f",
 "arms": [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0],
 "pmf":  [0.0, 0.0, 0.02, 0.05, 0.88, 0.05, 0.0],
 "greedy": 0.95,
 "reward": {"em_weight": 1.0, "token_cost_per_1k": 0.02},
 "estimates": {"em": [0.5, 0.6, 0.7, 0.8, 0.9, 0.91, 0.92],
               "tokens": [300, 500, 700, 800, 900, 1200, 1484], "n": [0, 0, 2, 5, 88, 5, 0]},
 "signature": "hmac-sha256:00"}"""
POLICY: dict[str, Any] = json.loads(POLICY_EXAMPLE)
MISSING = object()
NAN = float("nan")


def _policy(changes: dict[str, Any]) -> dict[str, Any]:
    document = dict(POLICY)
    for name, value in changes.items():
        if value is MISSING:
            document.pop(name, None)
        else:
            document[name] = value
    # Through JSON text, as a node receives it (NaN becomes the NaN literal and back).
    parsed: dict[str, Any] = json.loads(json.dumps(document))
    return parsed


def _field_of(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    if where:
        return where
    # Checks across fields name theirs at the start of the message.
    return str(first["msg"]).removeprefix("Value error, ").split(":", 1)[0]


# (case, changes to the example, field the error must name)
POLICY_REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("v 2", {"v": 2}, "v"),
    ("v true", {"v": True}, "v"),
    ("v 1.0", {"v": 1.0}, "v"),
    ("segment missing", {"segment": MISSING}, "segment"),
    ("segment empty", {"segment": ""}, "segment"),
    ("segment 257 chars", {"segment": "s" * 257}, "segment"),
    ("segment non-printable", {"segment": "a\nb"}, "segment"),
    ("version missing", {"version": MISSING}, "version"),
    ("version negative", {"version": -1}, "version"),
    ("version boolean", {"version": True}, "version"),
    ("version string", {"version": "18"}, "version"),
    ("version float", {"version": 18.0}, "version"),
    ("version past 64 bits", {"version": 2**63}, "version"),
    ("issued_at missing", {"issued_at": MISSING}, "issued_at"),
    ("issued_at NaN", {"issued_at": float("nan")}, "issued_at"),
    ("issued_at string", {"issued_at": "1764489601.0"}, "issued_at"),
    ("arms missing", {"arms": MISSING}, "arms"),
    ("arms empty", {"arms": [], "pmf": []}, "arms"),
    ("arms boolean entry", {"arms": [True, *POLICY["arms"][1:]]}, "arms"),
    ("arms Infinity", {"arms": [float("inf"), *POLICY["arms"][1:]]}, "arms"),
    ("pmf missing", {"pmf": MISSING}, "pmf"),
    ("pmf shorter than arms", {"pmf": [0.0, 0.0, 0.02, 0.05, 0.88, 0.05]}, "pmf"),
    ("pmf longer than arms", {"pmf": [*POLICY["pmf"], 0.0]}, "pmf"),
    ("pmf sums to 1 + 2e-6", {"pmf": [0.0, 0.0, 0.02, 0.05, 0.880002, 0.05, 0.0]}, "pmf"),
    ("pmf sums to 0.9", {"pmf": [0.0, 0.0, 0.02, 0.05, 0.78, 0.05, 0.0]}, "pmf"),
    ("pmf entry negative", {"pmf": [-0.1, 0.1, 0.02, 0.05, 0.88, 0.05, 0.0]}, "pmf"),
    ("pmf entry above 1", {"pmf": [1.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0]}, "pmf"),
    ("pmf NaN", {"pmf": [float("nan"), 0.0, 0.02, 0.05, 0.88, 0.05, 0.0]}, "pmf"),
    ("pmf boolean", {"pmf": [True, False, False, False, False, False, False]}, "pmf"),
    ("pmf string", {"pmf": ["0", "0", "0.02", "0.05", "0.88", "0.05", "0"]}, "pmf"),
    ("greedy missing", {"greedy": MISSING}, "greedy"),
    ("greedy not an arm", {"greedy": 0.96}, "greedy"),
    ("greedy boolean", {"greedy": True}, "greedy"),
    (
        "reward unknown field",
        {"reward": {"em_weight": 1, "token_cost_per_1k": 0, "x": 1}},
        "reward",
    ),
    ("reward boolean weight", {"reward": {"em_weight": True, "token_cost_per_1k": 0}}, "reward"),
    ("estimates NaN", {"estimates": {"em": [NAN], "tokens": [1.0], "n": [1.0]}}, "estimates"),
    ("signature number", {"signature": 5}, "signature"),
]


@pytest.mark.parametrize(
    ("changes", "field"), [pytest.param(c, f, id=name) for name, c, f in POLICY_REJECTIONS]
)
def test_policy_rule_is_enforced(changes: dict[str, Any], field: str) -> None:
    """Each policy rule rejects its violation, naming the field."""
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(_policy(changes))
    assert _field_of(caught.value).split(".")[0] == field


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="example"),
        pytest.param(
            {"reward": MISSING, "estimates": MISSING, "signature": MISSING, "model_id": MISSING},
            id="no optional fields",
        ),
        pytest.param({"v": MISSING}, id="v omitted means 1"),
        pytest.param({"version": 0}, id="version 0"),
        pytest.param({"issued_at": 1764489601}, id="integer issued_at"),
        pytest.param({"segment": FALLBACK_SEGMENT}, id="fallback segment"),
        pytest.param({"pmf": [0.0, 0.0, 0.02, 0.05, 0.8800005, 0.05, 0.0]}, id="pmf 1 + 5e-7"),
        pytest.param({"arms": [0, 1], "pmf": [0, 1], "greedy": 1}, id="integers"),
        pytest.param({"future_field": [1, 2]}, id="unknown field"),
    ],
)
def test_valid_policy_is_accepted(changes: dict[str, Any]) -> None:
    """Edges inside the contract parse, and dump back to a document that parses equal."""
    policy = Policy.model_validate(_policy(changes))
    assert Policy.model_validate(json.loads(policy.model_dump_json())) == policy


def test_policy_probability_of_arms_and_strangers() -> None:
    """probability_of reads the pmf by arm, with float tolerance, and 0 off the arms."""
    policy = Policy.model_validate(POLICY)
    assert policy.probability_of(0.95) == 0.88
    assert policy.probability_of(0.1 + 0.85) == 0.88  # 0.9499999999999998
    assert policy.probability_of(0.96) == 0.0


def test_events_are_frozen() -> None:
    """An event is a fact: assigning to a field fails."""
    outcome = Outcome(v=1, request_id="r", ts=1.0, segment="s", em=1.0, tokens=3)
    with pytest.raises(ValidationError):
        outcome.tokens = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        pytest.param(Outcome, {"v": True}, id="outcome v true"),
        pytest.param(Outcome, {"tokens": 3.0}, id="outcome tokens float"),
        pytest.param(Outcome, {"em": True}, id="outcome em boolean"),
        pytest.param(Decision, {"policy_version": True}, id="decision policy_version true"),
        pytest.param(Decision, {"context": {"k": False}}, id="decision context boolean"),
    ],
)
def test_models_are_strict_in_python_too(model: type[Outcome | Decision], fields: dict[str, Any]):
    """Built from Python values (the simulator, restore), the same strictness holds."""
    base: dict[str, Any] = {"v": 1, "request_id": "r", "ts": 1.0, "segment": "s"}
    if model is Outcome:
        base |= {"em": 1.0, "tokens": 3}
    else:
        base |= {"threshold": 0.9, "probability": 1.0, "policy_version": 0}
    model.model_validate(base)
    with pytest.raises(ValidationError):
        model.model_validate(base | fields)


def test_numpy_scalars_pass_as_the_builder_makes_them() -> None:
    """Policies built from numpy floats validate (np.float64 is a float)."""
    np = pytest.importorskip("numpy")
    policy = Policy(
        segment="s",
        version=1,
        issued_at=np.float64(2.0),
        arms=[np.float64(0.5), np.float64(1.0)],
        pmf=[np.float64(0.25), np.float64(0.75)],
        greedy=np.float64(1.0),
        reward=RewardWeights(em_weight=1.0, token_cost_per_1k=0.02),
    )
    assert policy.pmf == [0.25, 0.75]


BUDGETS = {
    "knob": "token_budget",
    "arms": [512, 1024, 2048, 4096, 8192, 32768],
    "pmf": [0.0, 0.05, 0.9, 0.05, 0.0, 0.0],
    "greedy": 2048,
    "estimates": MISSING,
}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({**BUDGETS, "arms": [0.5, 1024, 2048, 4096, 8192, 32768]}, "arms", id="0.5"),
        pytest.param(
            {**BUDGETS, "arms": [512, 1024.5, 2048, 4096, 8192, 32768]}, "arms", id="frac"
        ),
        pytest.param({**BUDGETS, "arms": [0, 1024, 2048, 4096, 8192, 32768]}, "arms", id="zero"),
        pytest.param({**BUDGETS, "arms": [1024, 512, 2048, 4096, 8192, 32768]}, "arms", id="order"),
        pytest.param({**BUDGETS, "knob": "temperature"}, "knob", id="unknown knob"),
        pytest.param({**BUDGETS, "knob": MISSING}, "arms", id="budgets without the knob"),
        pytest.param({"arms": [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.5]}, "arms", id="threshold 1.5"),
    ],
)
def test_policy_arms_follow_the_knob(changes: dict[str, Any], field: str) -> None:
    """A policy's arms obey its knob (SCHEMA 1.1): thresholds in [0, 1], budgets integers >= 1."""
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(_policy(changes))
    assert _field_of(caught.value).split(".")[0] == field


def test_a_budget_policy_round_trips_with_integer_budgets() -> None:
    """A token_budget policy parses, dumps budgets as JSON integers, and parses back equal."""
    policy = Policy.model_validate(_policy(BUDGETS))
    assert policy.knob == "token_budget"
    assert policy.probability_of(2048) == 0.9
    text = policy.model_dump_json(exclude_none=True)
    document = json.loads(text)
    assert document["knob"] == "token_budget"
    assert document["arms"] == [512, 1024, 2048, 4096, 8192, 32768]
    assert all(type(arm) is int for arm in document["arms"])
    assert type(document["greedy"]) is int
    assert Policy.model_validate_json(text) == policy


def test_a_confidence_policy_is_written_as_1_0_wrote_it() -> None:
    """Without a knob a policy means thresholds, and a threshold policy writes no knob."""
    policy = Policy.model_validate(POLICY)
    assert policy.knob == "confidence"
    assert "knob" not in json.loads(policy.model_dump_json())
    explicit = Policy.model_validate(_policy({"knob": "confidence"}))
    assert explicit == policy
    assert explicit.model_dump_json() == policy.model_dump_json()


def test_a_decision_may_carry_a_budget() -> None:
    """The decision's threshold is the chosen arm, a budget under the token_budget knob."""
    decision = Decision.model_validate(
        {
            "type": "decision",
            "v": 1,
            "request_id": "r-1",
            "ts": 1.0,
            "segment": "s",
            "threshold": 2048,
            "probability": 0.9,
            "policy_version": 3,
            "pmf": [[1024, 0.1], [2048, 0.9]],
        }
    )
    assert decision.threshold == 2048.0
