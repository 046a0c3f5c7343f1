r"""Dead-letter records: a rejected message, its reason and where it came from (the wire contract).

The record is JSON with exactly the contract's fields: reason, topic,
partition, offset, key, value. Key and value are the original bytes as text
(UTF-8; bytes that are not UTF-8 are kept as `\xNN` escapes so nothing is
lost), each cut at `MAX_DEAD_LETTER_VALUE_BYTES` of the original.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_DEAD_LETTER_VALUE_BYTES = 64 * 1024


def _as_text(raw: bytes | None, limit_bytes: int | None = None) -> str | None:
    if raw is None:
        return None
    if limit_bytes is not None:
        raw = raw[:limit_bytes]
    return raw.decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected message of a topic.

    Attributes:
        reason: why it was rejected, naming the field at fault.
        kind: the short metric label of the reason (not part of the record).
        topic: the topic it was read from.
        partition: its partition.
        offset: its offset.
        key: the original key bytes, or None.
        value: the original value bytes, or None.
    """

    reason: str
    kind: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def record(self) -> bytes:
        """The dead-letter topic's value: the contract's JSON document."""
        document = {
            "reason": self.reason,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _as_text(self.key, MAX_DEAD_LETTER_VALUE_BYTES),
            "value": _as_text(self.value, MAX_DEAD_LETTER_VALUE_BYTES),
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
