"""Dead-letter records: the contract's fields, the original bytes kept, values cut at 64 KiB."""

from __future__ import annotations

import json

from stopbandit.streams.dlq import MAX_DEAD_LETTER_VALUE_BYTES, DeadLetter


def letter(key: bytes | None, value: bytes | None) -> dict:
    """The parsed record of a dead letter with these key and value."""
    record = DeadLetter(
        reason="outcome.tokens: must be >= 0",
        kind="schema",
        topic="stopbandit.events",
        partition=3,
        offset=81723,
        key=key,
        value=value,
    ).record()
    return json.loads(record)


def test_record_has_exactly_the_contract_fields():
    """reason, topic, partition, offset, key, value; the metric kind is not part of it."""
    document = letter(b"math/gsm8k", b'{"type": "outcome", "tokens": -1}')
    assert document == {
        "reason": "outcome.tokens: must be >= 0",
        "topic": "stopbandit.events",
        "partition": 3,
        "offset": 81723,
        "key": "math/gsm8k",
        "value": '{"type": "outcome", "tokens": -1}',
    }


def test_value_is_cut_at_64_kib():
    """An oversized value keeps its first 64 KiB."""
    document = letter(b"k", b"a" * (MAX_DEAD_LETTER_VALUE_BYTES + 5000))
    assert len(document["value"]) == MAX_DEAD_LETTER_VALUE_BYTES


def test_binary_bytes_survive_as_escapes():
    """Bytes that are not UTF-8 are kept as backslash escapes, not replaced."""
    document = letter(b"\xff", b"ok \xfe\x00")
    assert document["key"] == "\\xff"
    assert document["value"] == "ok \\xfe\x00"


def test_missing_key_and_tombstone_are_null():
    """No key and no value are JSON null."""
    document = letter(None, None)
    assert document["key"] is None
    assert document["value"] is None
