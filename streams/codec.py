"""Bytes to validated events and back.

`decode` is the one gate between the wire and the rest of the system: what it
returns is valid by the contract; what it rejects raises `InvalidEventError`
with a reason short enough to read in a dead-letter record and stable enough
to count in a metric label (`kind`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from streams.events import Decision, Event, Outcome

MAX_EVENT_BYTES = 64 * 1024


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
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{event_type}.{where}: {first['msg']}"


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
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidEventError("size", f"value: {len(value)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        document: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidEventError("json", f"value: not UTF-8 JSON ({error})") from None
    if not isinstance(document, dict):
        raise InvalidEventError("json", "value: must be a JSON object")
    event_type = document.get("type")
    model: type[Decision | Outcome]
    if event_type == "decision":
        model = Decision
    elif event_type == "outcome":
        model = Outcome
    else:
        raise InvalidEventError(
            "type", f"type: must be 'decision' or 'outcome', got {event_type!r}"
        )
    if document.get("v") != 1:
        raise InvalidEventError(
            "version", f"{event_type}.v: unsupported version {document.get('v')!r}"
        )
    try:
        event = model.model_validate(document)
    except ValidationError as error:
        raise InvalidEventError("schema", _first_error(event_type, error)) from None
    if key is not None and key != event.segment.encode():
        raise InvalidEventError("key", f"{event_type}.segment: does not match the message key")
    return event


def encode(event: Event) -> bytes:
    """Serialise an event as compact JSON, the form `decode` reads back."""
    return event.model_dump_json(exclude_none=True).encode()


def segment_key(event: Event) -> bytes:
    """The message key an event is produced with: its segment, UTF-8."""
    return event.segment.encode()
