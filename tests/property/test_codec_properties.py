"""Codec properties: valid events survive the wire; any bytes give an event or InvalidEventError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stopbandit.streams.codec import InvalidEventError, decode, encode, segment_key
from stopbandit.streams.events import Decision, Event, Outcome

INT64 = st.integers(-(2**63), 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
request_ids = st.from_regex(r"[A-Za-z0-9._:\-]{1,128}", fullmatch=True)
# str.isprintable: no control, format, surrogate, private or unassigned characters and no
# separators but the ASCII space.
segments = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))
    | st.just(" "),
    min_size=1,
    max_size=256,
)
contexts = st.dictionaries(
    st.from_regex(r"[a-z0-9_]{1,64}", fullmatch=True),
    st.text(max_size=128) | finite | INT64,
    max_size=8,
)


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    """Valid decisions, with a consistent pmf half of the time."""
    threshold = draw(finite)
    pmf: list[tuple[float, float]] | None = None
    probability = draw(st.floats(0.0, 1.0, exclude_min=True))
    if draw(st.booleans()):
        others = draw(st.lists(finite.filter(lambda t: t != threshold), max_size=5))
        weights = draw(st.lists(st.integers(1, 1000), min_size=len(others) + 1))
        total = sum(weights[: len(others) + 1])
        pmf = [(t, w / total) for t, w in zip([threshold, *others], weights, strict=False)]
        probability = pmf[0][1]
    return Decision(
        v=1,
        request_id=draw(request_ids),
        ts=draw(finite),
        segment=draw(segments),
        context=draw(contexts),
        threshold=threshold,
        probability=probability,
        policy_version=draw(st.integers(0, 2**63 - 1)),
        pmf=pmf,
    )


outcomes = st.builds(
    Outcome,
    v=st.just(1),
    request_id=request_ids,
    ts=finite,
    segment=segments,
    em=st.floats(0.0, 1.0),
    tokens=st.integers(0, 2**63 - 1),
    stopped_early=st.none() | st.booleans(),
    latency_ms=st.none() | st.floats(0.0, allow_infinity=False),
)
events = decisions() | outcomes
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def assert_decodes_or_rejects(key: bytes | None, value: bytes) -> None:
    """Decode `value`: a rejection must be a well-formed InvalidEventError, anything else fails."""
    rejection: InvalidEventError | None = None
    try:
        event = decode(key, value)
    except InvalidEventError as error:
        rejection = error
    if rejection is not None:
        assert rejection.kind in {"empty", "size", "json", "type", "version", "schema", "key"}
        assert rejection.reason
        assert "\n" not in rejection.reason
        return
    # Whatever decodes is a valid event that survives another trip.
    assert decode(segment_key(event), encode(event)) == event


@given(event=events)
def test_encode_then_decode_is_the_identity(event: Event) -> None:
    """decode(key, encode(event)) == event for every valid event."""
    assert decode(segment_key(event), encode(event)) == event
    assert decode(None, encode(event)) == event


@settings(max_examples=300)
@given(key=st.none() | st.binary(max_size=16), value=st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_else(key: bytes | None, value: bytes) -> None:
    """Random bytes are an event or an InvalidEventError, never another exception."""
    assert_decodes_or_rejects(key, value)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=events,
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]),
            st.integers(0),
            st.binary(min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_valid_bytes_never_raise_anything_else(
    event: Event, edits: list[tuple[str, int, bytes]]
) -> None:
    """Valid JSON with bytes flipped, inserted or deleted: an event or InvalidEventError."""
    raw = bytearray(encode(event))
    for action, where, data in edits:
        at = where % (len(raw) + 1)
        if action == "insert":
            raw[at:at] = data
        elif action == "set":
            raw[at : at + len(data)] = data
        else:
            del raw[at : at + len(data)]
    assert_decodes_or_rejects(segment_key(event), bytes(raw))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, data=st.data(), replacement=json_values, drop=st.booleans())
def test_mutated_valid_documents_never_raise_anything_else(
    event: Event, data: st.DataObject, replacement: Any, drop: bool
) -> None:
    """Valid JSON with one field replaced by any JSON value (NaN included), or dropped."""
    document = json.loads(encode(event))
    name = data.draw(st.sampled_from(sorted(document)) | st.text(max_size=8), label="field")
    if drop:
        document.pop(name, None)
    else:
        document[name] = replacement
    assert_decodes_or_rejects(segment_key(event), json.dumps(document).encode())


@given(event=events, data=st.data(), ensure_ascii=st.booleans(), spaced=st.booleans())
def test_a_repeated_key_is_always_rejected(
    event: Event, data: st.DataObject, ensure_ascii: bool, spaced: bool
) -> None:
    """Any field of a valid event written twice (any value first) is rejected as json."""
    document: dict[str, Any] = json.loads(encode(event))
    field = data.draw(st.sampled_from(sorted(document)))
    first = data.draw(json_values)
    separators = (", ", ": ") if spaced else (",", ":")
    rest = json.dumps(document, ensure_ascii=ensure_ascii, separators=separators)
    head = json.dumps({field: first}, ensure_ascii=ensure_ascii, separators=separators)
    value = (head[:-1] + separators[0] + rest[1:]).encode()
    with pytest.raises(InvalidEventError, match=r"^value: duplicate key") as caught:
        decode(segment_key(event), value)
    assert caught.value.kind == "json"
