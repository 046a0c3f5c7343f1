"""The wire gate: every rule of docs/wire-contract.md for decisions and outcomes, rejected.

Strictness chosen for a contract that librdkafka and Java clients must meet
from SCHEMA.md alone (each choice has a test below):

- the value is UTF-8 JSON text (RFC 8259 8.1): no UTF-16/32, no byte order mark;
- `v` is the integer 1: `true` and `1.0` are not versions;
- a number is a JSON number: `true` is not 1 and `"0.95"` is not 0.95;
- an `int` field takes integers only (`917.0` is not a token count) and at most
  64 bits (a Java long), which is also what the learners can turn into a float;
- a `number` field takes integers too (`"ts": 1764489600` is a timestamp);
- `NaN` and `Infinity` literals, which Python's json reads, are rejected everywhere;
- `null` for an optional field means omitted (Jackson writes nulls by default);
- fields the contract does not name are ignored, so a producer may add its own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stopbandit.streams.codec import MAX_EVENT_BYTES, InvalidEventError, decode, encode, segment_key
from stopbandit.streams.events import Decision, Outcome

# SCHEMA.md's examples, verbatim.
DECISION_EXAMPLE = b"""{"type": "decision", "v": 1, "request_id": "9f2c-77", "ts": 1764489600.123,
 "segment": "math/gsm8k/r1-distill-qwen-7b",
 "context": {"task": "gsm8k", "model": "r1-distill-qwen-7b"},
 "threshold": 0.95, "probability": 0.82, "policy_version": 17,
 "pmf": [[0.9, 0.09], [0.95, 0.82], [0.99, 0.09]]}"""
OUTCOME_EXAMPLE = b"""{"type": "outcome", "v": 1, "request_id": "9f2c-77", "ts": 1764489603.9,
 "segment": "math/gsm8k/r1-distill-qwen-7b", "em": 1.0, "tokens": 917,
 "stopped_early": true, "latency_ms": 3712.5}"""
SEGMENT = "math/gsm8k/r1-distill-qwen-7b"
KEY = SEGMENT.encode()
DECISION: dict[str, Any] = json.loads(DECISION_EXAMPLE)
OUTCOME: dict[str, Any] = json.loads(OUTCOME_EXAMPLE)
MISSING = object()
INT64_MAX = 2**63 - 1


def _with(base: dict[str, Any], changes: dict[str, Any]) -> bytes:
    document = dict(base)
    for name, value in changes.items():
        if value is MISSING:
            document.pop(name, None)
        else:
            document[name] = value
    # json.dumps writes float('nan') as the NaN literal: the bytes a careless producer sends.
    return json.dumps(document).encode()


def _rejection(key: bytes | None, value: bytes | None) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as caught:
        decode(key, value)
    return caught.value


# (case, changes to the example, kind, field the reason must name)
DECISION_REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("request_id missing", {"request_id": MISSING}, "schema", "request_id"),
    ("request_id empty", {"request_id": ""}, "schema", "request_id"),
    ("request_id 129 chars", {"request_id": "a" * 129}, "schema", "request_id"),
    ("request_id space", {"request_id": "9f2c 77"}, "schema", "request_id"),
    ("request_id slash", {"request_id": "9f2c/77"}, "schema", "request_id"),
    ("request_id non-ASCII", {"request_id": "9f2c-é"}, "schema", "request_id"),
    ("request_id trailing newline", {"request_id": "9f2c-77\n"}, "schema", "request_id"),
    ("request_id number", {"request_id": 977}, "schema", "request_id"),
    ("ts missing", {"ts": MISSING}, "schema", "ts"),
    ("ts string", {"ts": "1764489600.123"}, "schema", "ts"),
    ("ts boolean", {"ts": True}, "schema", "ts"),
    ("ts NaN", {"ts": float("nan")}, "schema", "ts"),
    ("ts Infinity", {"ts": float("inf")}, "schema", "ts"),
    ("segment missing", {"segment": MISSING}, "schema", "segment"),
    ("segment empty", {"segment": ""}, "schema", "segment"),
    ("segment 257 chars", {"segment": "s" * 257}, "schema", "segment"),
    ("segment tab", {"segment": "math\tgsm8k"}, "schema", "segment"),
    ("segment newline", {"segment": "math/gsm8k\n"}, "schema", "segment"),
    ("segment NUL", {"segment": "math\x00"}, "schema", "segment"),
    ("segment zero-width space", {"segment": "math\u200b"}, "schema", "segment"),
    ("segment lone surrogate", {"segment": "math\ud800"}, "schema", "segment"),
    ("segment number", {"segment": 7}, "schema", "segment"),
    ("context not an object", {"context": ["task", "gsm8k"]}, "schema", "context"),
    ("context 65 entries", {"context": {f"k{i}": i for i in range(65)}}, "schema", "context"),
    ("context key uppercase", {"context": {"Task": "gsm8k"}}, "schema", "context"),
    ("context key dash", {"context": {"task-name": "gsm8k"}}, "schema", "context"),
    ("context key empty", {"context": {"": "gsm8k"}}, "schema", "context"),
    ("context key 65 chars", {"context": {"k" * 65: "gsm8k"}}, "schema", "context"),
    ("context string 129 chars", {"context": {"task": "x" * 129}}, "schema", "context"),
    ("context NaN", {"context": {"temp": float("nan")}}, "schema", "context"),
    ("context Infinity", {"context": {"temp": float("inf")}}, "schema", "context"),
    ("context -Infinity", {"context": {"temp": float("-inf")}}, "schema", "context"),
    ("context nested object", {"context": {"model": {"name": "x"}}}, "schema", "context"),
    ("context list value", {"context": {"tags": ["a"]}}, "schema", "context"),
    ("context null value", {"context": {"task": None}}, "schema", "context"),
    ("context boolean value", {"context": {"cot": True}}, "schema", "context"),
    ("context integer past 64 bits", {"context": {"n": 2**63}}, "schema", "context"),
    ("context lone surrogate", {"context": {"task": "\udc80"}}, "schema", "context"),
    ("threshold missing", {"threshold": MISSING}, "schema", "threshold"),
    ("threshold string", {"threshold": "0.95"}, "schema", "threshold"),
    ("threshold boolean", {"threshold": True}, "schema", "threshold"),
    ("threshold NaN", {"threshold": float("nan")}, "schema", "threshold"),
    ("probability missing", {"probability": MISSING}, "schema", "probability"),
    ("probability 0", {"probability": 0}, "schema", "probability"),
    ("probability negative", {"probability": -0.1}, "schema", "probability"),
    ("probability above 1", {"probability": 1.0000001}, "schema", "probability"),
    ("probability boolean", {"probability": True}, "schema", "probability"),
    ("probability NaN", {"probability": float("nan")}, "schema", "probability"),
    ("probability Infinity", {"probability": float("inf")}, "schema", "probability"),
    ("policy_version missing", {"policy_version": MISSING}, "schema", "policy_version"),
    ("policy_version negative", {"policy_version": -1}, "schema", "policy_version"),
    ("policy_version float", {"policy_version": 17.0}, "schema", "policy_version"),
    ("policy_version boolean", {"policy_version": True}, "schema", "policy_version"),
    ("policy_version string", {"policy_version": "17"}, "schema", "policy_version"),
    ("policy_version past 64 bits", {"policy_version": 2**63}, "schema", "policy_version"),
    ("pmf not a list", {"pmf": {"0.95": 1.0}}, "schema", "pmf"),
    ("pmf empty", {"pmf": []}, "schema", "pmf"),
    ("pmf pair of three", {"pmf": [[0.95, 1.0, 0.0]]}, "schema", "pmf"),
    ("pmf pair of one", {"pmf": [[0.95]]}, "schema", "pmf"),
    ("pmf entry negative", {"pmf": [[0.9, -0.1], [0.95, 1.1]]}, "schema", "pmf"),
    ("pmf entry above 1", {"pmf": [[0.95, 1.5], [0.99, -0.5]]}, "schema", "pmf"),
    ("pmf sums to 1 + 2e-6", {"pmf": [[0.9, 0.18], [0.95, 0.820002]]}, "schema", "pmf"),
    ("pmf sums to 1 - 2e-6", {"pmf": [[0.9, 0.18], [0.95, 0.819998]]}, "schema", "pmf"),
    ("pmf without the threshold", {"pmf": [[0.9, 0.18], [0.99, 0.82]]}, "schema", "pmf"),
    ("pmf NaN", {"pmf": [[0.95, float("nan")]]}, "schema", "pmf"),
    ("pmf Infinity threshold", {"pmf": [[float("inf"), 1.0]]}, "schema", "pmf"),
    ("pmf boolean", {"pmf": [[0.95, True]]}, "schema", "pmf"),
]

OUTCOME_REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("request_id missing", {"request_id": MISSING}, "schema", "request_id"),
    ("request_id 129 chars", {"request_id": "7" * 129}, "schema", "request_id"),
    ("request_id bad character", {"request_id": "9f2c#77"}, "schema", "request_id"),
    ("ts missing", {"ts": MISSING}, "schema", "ts"),
    ("ts -Infinity", {"ts": float("-inf")}, "schema", "ts"),
    ("segment 257 chars", {"segment": "s" * 257}, "schema", "segment"),
    ("segment non-printable", {"segment": "a\x7fb"}, "schema", "segment"),
    ("em missing", {"em": MISSING}, "schema", "em"),
    ("em negative", {"em": -0.01}, "schema", "em"),
    ("em above 1", {"em": 1.01}, "schema", "em"),
    ("em boolean", {"em": True}, "schema", "em"),
    ("em string", {"em": "1"}, "schema", "em"),
    ("em NaN", {"em": float("nan")}, "schema", "em"),
    ("tokens missing", {"tokens": MISSING}, "schema", "tokens"),
    ("tokens negative", {"tokens": -1}, "schema", "tokens"),
    ("tokens float", {"tokens": 917.0}, "schema", "tokens"),
    ("tokens fractional", {"tokens": 917.5}, "schema", "tokens"),
    ("tokens boolean", {"tokens": True}, "schema", "tokens"),
    ("tokens string", {"tokens": "917"}, "schema", "tokens"),
    ("tokens past 64 bits", {"tokens": 2**63}, "schema", "tokens"),
    ("stopped_early number", {"stopped_early": 1}, "schema", "stopped_early"),
    ("stopped_early string", {"stopped_early": "true"}, "schema", "stopped_early"),
    ("latency_ms negative", {"latency_ms": -0.5}, "schema", "latency_ms"),
    ("latency_ms NaN", {"latency_ms": float("nan")}, "schema", "latency_ms"),
    ("latency_ms Infinity", {"latency_ms": float("inf")}, "schema", "latency_ms"),
    ("latency_ms boolean", {"latency_ms": False}, "schema", "latency_ms"),
]

# Rules that sit before the schema: the envelope of either event.
ENVELOPE_REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("v missing", {"v": MISSING}, "version", "v"),
    ("v 2", {"v": 2}, "version", "v"),
    ("v 0", {"v": 0}, "version", "v"),
    ("v string", {"v": "1"}, "version", "v"),
    ("v true", {"v": True}, "version", "v"),
    ("v 1.0", {"v": 1.0}, "version", "v"),
    ("type missing", {"type": MISSING}, "type", "type"),
    ("type unknown", {"type": "policy"}, "type", "type"),
    ("type capitalised", {"type": "Decision"}, "type", "type"),
    ("type number", {"type": 1}, "type", "type"),
    ("type null", {"type": None}, "type", "type"),
]


@pytest.mark.parametrize(
    ("changes", "kind", "field"),
    [pytest.param(c, k, f, id=name) for name, c, k, f in DECISION_REJECTIONS],
)
def test_decision_rule_is_enforced(changes: dict[str, Any], kind: str, field: str) -> None:
    """Each decision rule rejects its violation with a reason naming the field."""
    error = _rejection(None, _with(DECISION, changes))
    assert error.kind == kind
    assert error.reason.startswith(f"decision.{field}"), error.reason


@pytest.mark.parametrize(
    ("changes", "kind", "field"),
    [pytest.param(c, k, f, id=name) for name, c, k, f in OUTCOME_REJECTIONS],
)
def test_outcome_rule_is_enforced(changes: dict[str, Any], kind: str, field: str) -> None:
    """Each outcome rule rejects its violation with a reason naming the field."""
    error = _rejection(None, _with(OUTCOME, changes))
    assert error.kind == kind
    assert error.reason.startswith(f"outcome.{field}"), error.reason


@pytest.mark.parametrize("base", [DECISION, OUTCOME], ids=["decision", "outcome"])
@pytest.mark.parametrize(
    ("changes", "kind", "field"),
    [pytest.param(c, k, f, id=name) for name, c, k, f in ENVELOPE_REJECTIONS],
)
def test_envelope_rule_is_enforced(
    base: dict[str, Any], changes: dict[str, Any], kind: str, field: str
) -> None:
    """A wrong type or version is rejected before the schema, naming the field."""
    error = _rejection(None, _with(base, changes))
    assert error.kind == kind
    assert field in error.reason.split(":", 1)[0], error.reason


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity"], ids=["NaN", "Infinity", "-Infinity"]
)
@pytest.mark.parametrize(
    ("example", "field"),
    [
        (DECISION_EXAMPLE, b'"probability": 0.82'),
        (DECISION_EXAMPLE, b'"ts": 1764489600.123'),
        (OUTCOME_EXAMPLE, b'"em": 1.0'),
        (OUTCOME_EXAMPLE, b'"latency_ms": 3712.5'),
    ],
    ids=["probability", "decision.ts", "em", "latency_ms"],
)
def test_non_finite_literals_are_rejected(example: bytes, field: bytes, literal: bytes) -> None:
    """The NaN and Infinity literals Python's json reads are not numbers of the contract."""
    name = field.split(b":")[0]
    raw = example.replace(field, name + b": " + literal)
    assert raw != example
    error = _rejection(None, raw)
    assert error.kind == "schema"
    assert name.strip(b'"').decode() in error.reason.split(":")[0]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        pytest.param(None, "empty", id="tombstone"),
        pytest.param(b"", "json", id="empty bytes"),
        pytest.param(b"{", "json", id="truncated"),
        pytest.param(b"[]", "json", id="array"),
        pytest.param(b'"decision"', "json", id="string"),
        pytest.param(b"17", "json", id="number"),
        pytest.param(b"null", "json", id="null"),
        pytest.param(b"\xff\xfe{}", "json", id="invalid UTF-8"),
        pytest.param(DECISION_EXAMPLE.replace(b"9f2c-77", b"9f2c-\xc3"), "json", id="cut UTF-8"),
        pytest.param(DECISION_EXAMPLE.decode().encode("utf-16"), "json", id="UTF-16"),
        pytest.param(DECISION_EXAMPLE.decode().encode("utf-32"), "json", id="UTF-32"),
        pytest.param(b"\xef\xbb\xbf" + DECISION_EXAMPLE, "json", id="byte order mark"),
        pytest.param(DECISION_EXAMPLE.replace(b"gsm8k", b"\xed\xa0\x80"), "json", id="surrogate"),
        pytest.param(b'{"tokens": ' + b"9" * 5000 + b"}", "json", id="5000-digit integer"),
        pytest.param(b"[" * 50_000, "json", id="deep nesting"),
    ],
)
def test_undecodable_value_is_rejected(value: bytes | None, kind: str) -> None:
    """Bytes that are not one UTF-8 JSON object never reach the schema."""
    error = _rejection(KEY, value)
    assert error.kind == kind
    assert error.reason.startswith("value:")


def test_value_over_64_kib_is_rejected() -> None:
    """One byte past MAX_EVENT_BYTES is rejected by size, before it is parsed."""
    document = dict(DECISION, padding="")
    filler = MAX_EVENT_BYTES - len(json.dumps(document).encode())
    at_limit = json.dumps(dict(document, padding="x" * filler)).encode()
    assert len(at_limit) == MAX_EVENT_BYTES == 64 * 1024
    assert decode(KEY, at_limit).request_id == "9f2c-77"
    error = _rejection(KEY, at_limit.replace(b'"padding": "', b'"padding": "y'))
    assert (error.kind, error.reason.split(":")[0]) == ("size", "value")


@pytest.mark.parametrize(
    ("value", "duplicated"),
    [
        pytest.param(
            DECISION_EXAMPLE.replace(b'"threshold": 0.95', b'"threshold": 0.5, "threshold": 0.95'),
            "threshold",
            id="decision field",
        ),
        pytest.param(
            OUTCOME_EXAMPLE.replace(b'"em": 1.0', b'"em": 0.0, "em": 1.0'), "em", id="outcome field"
        ),
        pytest.param(
            DECISION_EXAMPLE.replace(b'"task": "gsm8k"', b'"task": "gsm8k", "task": "aime"'),
            "task",
            id="context key",
        ),
        pytest.param(
            OUTCOME_EXAMPLE.replace(b'"type": "outcome"', b'"type": "decision", "type": "outcome"'),
            "type",
            id="type",
        ),
    ],
)
def test_duplicated_keys_are_rejected(value: bytes, duplicated: str) -> None:
    """A key twice means one thing to Python (the last) and another to first-wins parsers."""
    error = _rejection(KEY, value)
    assert error.kind == "json"
    assert error.reason == f"value: duplicate key {duplicated!r}"


def test_the_same_key_in_sibling_objects_is_not_a_duplicate() -> None:
    """Keys repeat across objects (each counterfactual entry, context and envelope): allowed."""
    value = OUTCOME_EXAMPLE.replace(b'"tokens": 917', b'"tokens": 917, "context": {"tokens": 1}')
    assert decode(KEY, value).request_id == "9f2c-77"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(b"math/gsm8k/other-model", id="other segment"),
        pytest.param(b"", id="empty"),
        pytest.param(KEY + b" ", id="trailing space"),
        pytest.param(KEY.upper(), id="case"),
        pytest.param(b"\xff", id="invalid UTF-8"),
    ],
)
@pytest.mark.parametrize(
    "example", [DECISION_EXAMPLE, OUTCOME_EXAMPLE], ids=["decision", "outcome"]
)
def test_key_must_equal_the_segment(example: bytes, key: bytes) -> None:
    """An event produced under another key would land in another partition's join."""
    error = _rejection(key, example)
    assert error.kind == "key"
    assert error.reason.split(":")[0].endswith(".segment")


def test_schema_examples_are_accepted_verbatim() -> None:
    """SCHEMA.md's decision and outcome examples decode as written."""
    decision = decode(KEY, DECISION_EXAMPLE)
    outcome = decode(KEY, OUTCOME_EXAMPLE)
    assert isinstance(decision, Decision)
    assert decision.pmf == [(0.9, 0.09), (0.95, 0.82), (0.99, 0.09)]
    assert (decision.threshold, decision.probability, decision.policy_version) == (0.95, 0.82, 17)
    assert decision.context == {"task": "gsm8k", "model": "r1-distill-qwen-7b"}
    assert isinstance(outcome, Outcome)
    assert (outcome.em, outcome.tokens, outcome.stopped_early) == (1.0, 917, True)
    assert outcome.latency_ms == 3712.5


def test_missing_key_is_accepted() -> None:
    """Event logs replay without keys: None skips the key check, it does not fail it."""
    assert decode(None, DECISION_EXAMPLE).segment == SEGMENT


@pytest.mark.parametrize(
    ("base", "changes"),
    [
        pytest.param(DECISION, {"ts": 1764489600}, id="integer ts"),
        pytest.param(DECISION, {"threshold": 1, "pmf": [[1, 1]], "probability": 1}, id="ints"),
        pytest.param(DECISION, {"context": MISSING, "pmf": MISSING}, id="no optional fields"),
        pytest.param(DECISION, {"context": None, "pmf": None}, id="null optional fields"),
        pytest.param(DECISION, {"context": {}}, id="empty context"),
        pytest.param(DECISION, {"probability": 1.0, "pmf": [[0.95, 1.0]]}, id="probability 1"),
        pytest.param(DECISION, {"policy_version": 0, "pmf": MISSING}, id="policy_version 0"),
        pytest.param(DECISION, {"policy_version": INT64_MAX}, id="policy_version int64 max"),
        pytest.param(DECISION, {"request_id": "AZaz09._:-"}, id="every request_id character"),
        pytest.param(DECISION, {"request_id": "r" * 128}, id="request_id 128 chars"),
        pytest.param(DECISION, {"request_id": "7"}, id="request_id 1 char"),
        pytest.param(DECISION, {"segment": "s" * 256}, id="segment 256 chars"),
        pytest.param(DECISION, {"segment": "é"}, id="segment 1 non-ASCII char"),
        pytest.param(DECISION, {"segment": "a b"}, id="segment with a space"),
        pytest.param(DECISION, {"context": {f"k{i}": i for i in range(64)}}, id="64 entries"),
        pytest.param(DECISION, {"context": {"k" * 64: "x" * 128}}, id="longest key and value"),
        pytest.param(DECISION, {"context": {"t": -1.5, "n": -(2**63)}}, id="numbers"),
        pytest.param(DECISION, {"pmf": [[0.9, 0.18], [0.95, 0.8200005]]}, id="pmf 1 + 5e-7"),
        pytest.param(DECISION, {"pmf": [[0.9, 0.0], [0.95, 1.0]]}, id="pmf zero entry"),
        pytest.param(DECISION, {"producer": "java-1.2", "extra": {"a": [1]}}, id="unknown fields"),
        pytest.param(OUTCOME, {"stopped_early": MISSING, "latency_ms": MISSING}, id="no optional"),
        pytest.param(OUTCOME, {"stopped_early": None, "latency_ms": None}, id="null optional"),
        pytest.param(OUTCOME, {"em": 0, "tokens": 0, "latency_ms": 0}, id="zeros"),
        pytest.param(OUTCOME, {"em": 0.37}, id="graded em"),
        pytest.param(OUTCOME, {"tokens": INT64_MAX}, id="tokens int64 max"),
    ],
)
def test_valid_variant_is_accepted(base: dict[str, Any], changes: dict[str, Any]) -> None:
    """Edges that are inside the contract decode, and encode back to the same event."""
    event = decode(KEY if "segment" not in changes else None, _with(base, changes))
    assert decode(segment_key(event), encode(event)) == event


def test_integer_numbers_become_floats() -> None:
    """`"ts": 1764489600` is the float 1764489600.0 once decoded, so encode is stable."""
    event = decode(KEY, _with(DECISION, {"ts": 1764489600, "probability": 1, "pmf": MISSING}))
    assert isinstance(event.ts, float)
    assert isinstance(event, Decision)
    assert isinstance(event.probability, float)


def test_integer_context_values_stay_integers() -> None:
    """A context value keeps its JSON type: 3 and 3.0 are different features of the wire."""
    event = decode(KEY, _with(DECISION, {"context": {"n": 3, "t": 3.0}}))
    assert isinstance(event, Decision)
    assert type(event.context["n"]) is int
    assert type(event.context["t"]) is float


def test_encode_is_compact_json_without_nulls() -> None:
    """The encoded form is one line with no optional field written as null."""
    event = decode(KEY, _with(OUTCOME, {"stopped_early": MISSING, "latency_ms": MISSING}))
    raw = encode(event)
    assert b"\n" not in raw
    assert b" " not in raw
    assert b"null" not in raw
    assert json.loads(raw)["type"] == "outcome"


def test_reason_of_a_strange_type_stays_short() -> None:
    """A huge value in `type` is cut in the reason, which goes into a metric-adjacent log."""
    error = _rejection(None, _with(DECISION, {"type": "x" * 10_000}))
    assert error.kind == "type"
    assert len(error.reason) < 120


def test_error_is_a_value_error_with_fields() -> None:
    """Callers that catch ValueError still catch it; kind and reason are attributes."""
    error = _rejection(None, b"[]")
    assert isinstance(error, ValueError)
    assert str(error) == error.reason
