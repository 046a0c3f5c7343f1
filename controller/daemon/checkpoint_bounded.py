"""Reading a checkpoint that holds more segments than `limits.max_segments`, in bounded memory.

A checkpoint written under a larger limit, or before there was one, can hold
far more segments than the restoring daemon keeps. `json.loads` builds every
segment's statistics as Python objects (most of a restore's peak) before the
learner evicts all but the most recent. Here the gzip stream is parsed
incrementally (ijson's events; never the whole text at once) and the document
is built as `json.loads` builds it, except in the maps keyed by segment
(`STATS` and `SEGMENT_MAPS`): there only the kept segments' entries are built;
the others are skipped at the parser's speed, and stand in the statistics as
None. The whole stream is read, so its gzip CRC and its JSON syntax are
checked as before.

The segments kept are the ones `OutcomeLearner.restore` keeps: the
`max_segments` learned most recently by the learner's `recency` (positions in
its statistics), or the last ones first seen when it has no usable order. A
first look reads that order (ijson's own loop, building nothing else), which
`Checkpoint.encode` writes before the statistics, so the look stops at the
stream's head; checkpoints written before that layout have it after them,
and those from before the limit have none, so their statistics are counted
(the same loop). The pass that builds the document then knows, as it meets
each segment, whether it keeps it.
"""

from __future__ import annotations

import gzip
import io
from collections import deque
from functools import partial
from itertools import chain, takewhile
from operator import ne
from typing import TYPE_CHECKING, Any

import ijson

if TYPE_CHECKING:
    from collections.abc import Iterator

# ijson's events: (prefix, event, value); a prefix is the dotted path of keys (`item` in arrays).
Event = tuple[str, str, Any]

STATS = "state.learner.stats"
RECENCY = "state.learner.recency"
LEARNER = "state.learner"
# The other maps keyed by segment: only the kept segments' entries are built.
SEGMENT_MAPS = frozenset({"state.learner.contexts", "state.policies", "state.target.tally.pending"})
# The maps walked key by key on the way to those; every other value is built whole.
_PATHS = frozenset({"", "state", LEARNER, "state.target", "state.target.tally"})
_CLOSING = {"start_map": "end_map", "start_array": "end_array"}


class MalformedJSONError(ValueError):
    """The stream is not one JSON document (ijson's verdict, its first line)."""


class _Recount(Exception):  # noqa: N818 - control flow, never raised out of this module
    """The statistics are not as many as the order says: the order is not theirs."""


def read_bounded(blob: bytes, max_segments: int) -> dict[str, Any] | None:
    """The document of a gzip-compressed checkpoint, its statistics kept to `max_segments`.

    The others stay in their place in the learner's statistics, as None: the
    learner's restore evicts them (`OutcomeLearner.restore`: listed, counted)
    as it evicts any segment past its limit, and reads nothing of them.

    Returns:
        None when it holds no more than `max_segments`: the caller parses it whole,
        as fast as the plain parser goes.

    Raises:
        MalformedJSONError, OSError, EOFError, ValueError: the bytes are not gzip-compressed
            JSON (gzip's own errors as `gzip.decompress` raises them).
    """
    try:
        return _read(blob, max_segments)
    except ijson.JSONError as error:
        text = error.args[0] if error.args else type(error).__name__
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        raise MalformedJSONError(str(text).strip().splitlines()[0]) from None


def _read(blob: bytes, max_segments: int) -> dict[str, Any] | None:
    # use_float: numbers as floats, not Decimals, which took half of a look's time.
    order = _order_of(next(ijson.items(_stream(blob), RECENCY, use_float=True), None))
    count = len(order) if order is not None else _count(blob)
    if count > max_segments:
        try:
            return _Build(blob, max_segments, list(range(count)) if order is None else order).run()
        except _Recount:
            # Not an order of these statistics: as the learner then does, first seen first out.
            count = _count(blob)
            if count > max_segments:
                return _Build(blob, max_segments, list(range(count))).run()
    return None


def _stream(blob: bytes) -> gzip.GzipFile:
    return gzip.GzipFile(fileobj=io.BytesIO(blob))


def _order_of(recency: object) -> list[int] | None:
    """The learner's `recency` if it is an order (each position once), as the learner requires."""
    if not isinstance(recency, list) or not all(type(i) is int for i in recency):
        return None
    return recency if sorted(recency) == list(range(len(recency))) else None


def _count(blob: bytes) -> int:
    """How many statistics the learner has (ijson builds each, in C, and drops it)."""
    return sum(1 for _ in ijson.kvitems(_stream(blob), STATS, use_float=True))


class _Walker:
    """One pass over the stream: its events, and the ways to consume one value."""

    def __init__(self, blob: bytes) -> None:
        self.events: Iterator[Event] = ijson.parse(_stream(blob), use_float=True)

    def next(self) -> Event:
        event = next(self.events, None)
        if event is None:  # the parser raises on a cut document first: never trust it silently
            raise EOFError("the document ends inside a value")
        return event

    def pairs(self) -> Iterator[tuple[str, Event]]:
        """(key, first event of its value) of the map just opened; each value is the caller's."""
        while True:
            _, event, key = self.next()
            if event == "end_map":
                return
            yield key, self.next()

    def skip(self, first: Event) -> None:
        """Consume the value `first` opens, building nothing (at the parser's speed)."""
        closing = _CLOSING.get(first[1])
        if closing is not None:
            # The value's own closing event is the first with its prefix: nested ones are longer.
            deque(takewhile(partial(ne, (first[0], closing, None)), self.events), maxlen=0)

    def build(self, first: Event) -> object:
        """The value `first` opens, built by ijson's own builder."""
        closing = _CLOSING.get(first[1])
        if closing is None:
            return first[2]
        end = (first[0], closing, None)
        value = chain((first,), takewhile(partial(ne, end), self.events), (end,))
        return next(ijson.items(value, first[0]))

    def finish(self) -> None:
        """Read the rest of the stream: trailing garbage and the gzip CRC are checked there."""
        deque(self.events, maxlen=0)


def _child(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class _Build:
    """The pass that builds the document, with the statistics at `order[-max_segments:]`.

    `order`: positions in the statistics, least recently learned first.
    """

    def __init__(self, blob: bytes, max_segments: int, order: list[int]) -> None:
        self._walker = _Walker(blob)
        self._order = order
        self._kept = set(order[max(0, len(order) - max_segments) :])
        self._kept_names: set[str] | None = None
        self._stats: dict[str, Any] = {}
        # Maps keyed by segment met before the statistics (not `encode`'s layout): trimmed after.
        self._early: list[dict[str, Any]] = []

    def run(self) -> dict[str, Any]:
        """The document.

        Raises:
            _Recount: the statistics are not as many as the order says.
        """
        document = self._value("", self._walker.next())
        self._walker.finish()
        if not isinstance(document, dict) or self._kept_names is None:
            raise _Recount  # no statistics after all: not the document the order came from
        for segments in self._early:
            for segment in [s for s in segments if self._evicted(s)]:
                del segments[segment]
        return document

    def _evicted(self, segment: str) -> bool:
        # Only segments of the statistics: the `*` fallback's policy, say, is no segment's.
        return segment in self._stats and segment not in (self._kept_names or ())

    def _value(self, prefix: str, first: Event) -> object:
        if first[1] == "start_map":
            if prefix == STATS:
                return self._statistics()
            if prefix in SEGMENT_MAPS:
                return self._of_kept()
            if prefix in _PATHS:
                pairs = self._walker.pairs()
                return {key: self._value(_child(prefix, key), v) for key, v in pairs}
        return self._walker.build(first)

    def _statistics(self) -> dict[str, Any]:
        if self._kept_names is not None:
            # json.loads would keep the last; no writer writes two: unreadable, not guessed at.
            raise ValueError("two learner statistics maps")
        stats: dict[str, Any] = {}
        kept: set[str] = set()
        for position, (segment, first) in enumerate(self._walker.pairs()):
            if segment in stats:  # json.loads would merge them, and the positions with them
                raise ValueError(f"segment {segment!r} twice in the learner statistics")
            if position in self._kept:
                stats[segment] = self._walker.build(first)
                kept.add(segment)
            else:
                self._walker.skip(first)
                stats[segment] = None  # in its place: the learner's restore evicts it
        if len(stats) != len(self._order):
            raise _Recount
        self._stats, self._kept_names = stats, kept
        return stats

    def _of_kept(self) -> dict[str, Any]:
        if self._kept_names is None:
            # Before the statistics, whom to keep is not known yet: built, then trimmed.
            early = {key: self._walker.build(first) for key, first in self._walker.pairs()}
            self._early.append(early)
            return early
        entries: dict[str, Any] = {}
        for segment, first in self._walker.pairs():
            if self._evicted(segment):
                self._walker.skip(first)
            else:
                entries[segment] = self._walker.build(first)
        return entries
