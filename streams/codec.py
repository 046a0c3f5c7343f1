"""Bytes to validated events and back.

`decode` is the one gate between the wire and the rest of the system: what it
returns is valid by the contract; what it rejects raises `InvalidEventError`
with a reason short enough to read in a dead-letter record and stable enough
to count in a metric label (`kind`).

One meaning per message: an object with a key twice is rejected (`json`),
since Python reads the last of the two and many parsers the first, so other
consumers of the topic would read another event than the controller learns.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from stopbandit.streams.events import Decision, Event, Outcome

MAX_EVENT_BYTES = 64 * 1024
_MAX_SHOWN_CHARS = 40


class InvalidEventError(ValueError):
    """A message that is not a valid v1 event.

    Attributes:
        kind: a short, low-cardinality label for metrics (e.g. `json`, `schema`).
        reason: a human-readable explanation, naming the field at fault.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _first_error(event_type: str, error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if not where and ":" in message:
        # Checks across fields (the pmf rules) name their field at the start of the message.
        where, message = (part.strip() for part in message.split(":", 1))
    return f"{event_type}.{where or 'value'}: {message}"


def _short(value: object) -> str:
    # Whatever a producer sent, a reason stays one short line.
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 3] + "..."


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidEventError("json", f"value: duplicate key {_short(key)}")
            seen.add(key)
    return document


def _may_repeat_a_key(value: bytes) -> bool:
    """Whether some object in `value` might hold a key twice; False is certain.

    Without a backslash no string holds a quote, so splitting at quotes puts
    every string of the text, keys among them, at the odd places: if no string
    repeats, no key does. A text with escapes or a repeated string goes the
    exact way, json.loads with a hook that sees each object's pairs.
    """
    if b"\\" in value:
        return True
    strings = value.split(b'"')[1::2]
    return len(set(strings)) != len(strings)


def _parse(value: bytes) -> dict[str, Any]:
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidEventError("size", f"value: {len(value)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        # Strict UTF-8 (RFC 8259 8.1): json.loads(bytes) would also take UTF-16/32 and
        # UTF-8-encoded surrogates, which other consumers of the topic cannot read.
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEventError("json", f"value: not UTF-8 ({error.reason})") from None
    try:
        document: Any = json.loads(text, object_pairs_hook=_unique_object)
    except InvalidEventError:
        raise
    except json.JSONDecodeError as error:
        raise InvalidEventError("json", f"value: not JSON ({error})") from None
    except (ValueError, RecursionError) as error:
        # An integer of thousands of digits or arrays nested past the recursion limit.
        raise InvalidEventError("json", f"value: JSON too large to read ({error})") from None
    if not isinstance(document, dict):
        raise InvalidEventError("json", "value: must be a JSON object")
    return document


_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(
    Annotated[Decision | Outcome, Field(discriminator="type")]
)


def decode(key: bytes | None, value: bytes | None) -> Event:
    """Parse and validate one message of the events topic.

    Args:
        key: the message key (the segment, UTF-8), or None if the producer sent none.
        value: the message value (a JSON decision or outcome).

    Returns:
        The validated decision or outcome.

    Raises:
        InvalidEventError: the message breaks the contract; the reason says how.
    """
    if value is None:
        raise InvalidEventError("empty", "value: missing (tombstone)")
    fast = _fast_decode(value)
    if fast is not None:
        _check_key(key, fast)
        return fast
    document = _parse(value)
    event_type = document.get("type")
    model: type[Decision | Outcome]
    if event_type == "decision":
        model = Decision
    elif event_type == "outcome":
        model = Outcome
    else:
        raise InvalidEventError(
            "type", f"type: must be 'decision' or 'outcome', got {_short(event_type)}"
        )
    version = document.get("v")
    if type(version) is not int or version != 1:
        raise InvalidEventError("version", f"{event_type}.v: unsupported version {_short(version)}")
    try:
        event = model.model_validate(document)
    except ValidationError as error:
        raise InvalidEventError("schema", _first_error(event_type, error)) from None
    _check_key(key, event)
    return event


def _fast_decode(value: bytes) -> Event | None:
    """The event, in one pass of pydantic's own JSON parser; None if it refuses.

    About twice as fast as json.loads plus validation. Whatever it refuses
    takes the slow path, which finds the exact kind and reason; a valid
    event is valid on both. Pydantic's parser keeps the last of a repeated
    key, so a text that might repeat one takes the slow path too.
    """
    if len(value) > MAX_EVENT_BYTES or _may_repeat_a_key(value):
        return None
    try:
        return _EVENT_ADAPTER.validate_json(value)
    except ValidationError:
        return None


def _check_key(key: bytes | None, event: Event) -> None:
    if key is not None and key != event.segment.encode():
        raise InvalidEventError("key", f"{event.type}.segment: does not match the message key")


def encode(event: Event) -> bytes:
    """Serialise an event as compact JSON, the form `decode` reads back."""
    return event.model_dump_json(exclude_none=True).encode()


def segment_key(event: Event) -> bytes:
    """The message key an event is produced with: its segment, UTF-8."""
    return event.segment.encode()
