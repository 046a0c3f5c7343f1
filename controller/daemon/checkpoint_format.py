"""The checkpoint document: its format as pydantic models, checked before anything is used.

A checkpoint is one JSON document, gzip-compressed (in several gzip members, which
any gzip reader concatenates back into the document):

    {"format": 1, "topic": "stopbandit.events", "partition": 3, "offset": 81724,
     "written_at": 1764489600.0, "watermark_s": 1764489599.5,
     "state": <ControllerCore.snapshot()>}

`offset` is the next offset to consume: every event before it is in `state`
(learned, pending in the join buffer, or dropped), none after it;
`watermark_s` is the partition's event-time clock (see controller/daemon/loop.py).
The learner's `recency` is written before its `stats` (older checkpoints have
it after them, or none): a daemon's restore reads at most `limits.max_segments`
segments of a checkpoint, as a stream, and that order tells it, as it meets
each one, whether it is kept (`decode`'s `max_segments`, checkpoint_bounded.py).

Whatever a store hands back is validated against `CheckpointDocument` (its
format version included) before the core sees it: bytes that do not
decompress, parse, or have the documented structure are a
`CorruptCheckpointError` naming the partition and the reason, never a
`KeyError` from deep inside a restore. The state's inner models (VW bytes,
join entries) are checked again by the core's own restore, whose errors
the restore also turns into a `CorruptCheckpointError` (restoring.py).
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stopbandit.controller.daemon.checkpoint_bounded import read_bounded

CHECKPOINT_FORMAT = 1
_MAX_REASONS = 3


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or written (I/O: worth retrying).

    Attributes:
        topic: the events topic of the partition.
        partition: the partition.
        reason: what went wrong, without the partition prefix.
    """

    def __init__(self, topic: str, partition: int, reason: str) -> None:
        super().__init__(f"checkpoint of {topic}[{partition}]: {reason}")
        self.topic = topic
        self.partition = partition
        self.reason = reason


class CorruptCheckpointError(CheckpointError):
    """A checkpoint exists but is unusable (unreadable, partial, foreign): retrying cannot help."""


class _Open(BaseModel):
    # Fields a later writer adds are kept; the ones a restore reads are required and typed.
    model_config = ConfigDict(extra="allow")


class LearnerState(_Open):
    """`OutcomeLearner.snapshot()`."""

    arms: list[float] = Field(min_length=2)
    em_model: str
    tokens_model: str
    stats: dict[str, Any]
    contexts: dict[str, Any]
    arm_counts: list[int]
    learned: int = Field(ge=0)


class JoinState(_Open):
    """`JoinBuffer.snapshot()` (older ones list `joined` request_ids instead of digests)."""

    decisions: list[list[Any]]
    outcomes: list[list[Any]]
    joined_digests: str | None = None
    joined: list[str] | None = None
    stats: dict[str, int]
    stale_decisions: list[dict[str, Any]] = []
    stale_outcomes: list[dict[str, Any]] = []

    @model_validator(mode="after")
    def _joined_ids_present(self) -> JoinState:
        if self.joined_digests is None and self.joined is None:
            raise ValueError("neither joined_digests nor joined")
        return self


class CoreState(_Open):
    """`ControllerCore.snapshot()`."""

    format: Literal[1]
    learner: LearnerState
    join: JoinState
    last_version: int
    policies: dict[str, dict[str, Any]]
    drifts: int = Field(ge=0)


class CheckpointDocument(BaseModel):
    """The whole document, version 1."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1]
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    written_at: float
    watermark_s: float
    state: CoreState


def validation_reason(error: ValidationError) -> str:
    """A pydantic error as one short line: the first few `field.path: message`."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
        for e in error.errors(include_url=False)[:_MAX_REASONS]
    ]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


@dataclass(frozen=True)
class Checkpoint:
    """The state of one partition and the offset it covers.

    `fell_back` is set by a store that returned an older copy: why the newer one was unusable.
    """

    topic: str
    partition: int
    offset: int
    written_at: float
    state: dict[str, Any]
    watermark_s: float
    fell_back: str | None = None

    def encode(self) -> bytes:
        """The gzip-compressed JSON document."""
        document = {
            "format": CHECKPOINT_FORMAT,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "written_at": self.written_at,
            "watermark_s": self.watermark_s,
            "state": _recency_first(self.state),
        }
        raw = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
        return _compress(raw)

    @classmethod
    def decode(
        cls, topic: str, partition: int, blob: bytes, *, max_segments: int | None = None
    ) -> Checkpoint:
        """Parse and validate what `encode` wrote.

        Args:
            topic: the events topic of the partition.
            partition: the partition.
            blob: the bytes a store read.
            max_segments: most segments to read (`limits.max_segments`). A checkpoint
                holding more is read in bounded memory (checkpoint_bounded.py): the
                statistics of those the learner's restore would evict are not read, and
                stand in `state` as None, so that it evicts them (listed, counted).
                None: every segment is read.

        Raises:
            CorruptCheckpointError: the bytes are not a valid checkpoint of this partition.
        """
        if not blob:
            raise CorruptCheckpointError(topic, partition, "empty")
        try:
            bounded = None if max_segments is None else read_bounded(blob, max_segments)
            document = json.loads(gzip.decompress(blob)) if bounded is None else bounded
        except (OSError, EOFError, ValueError, zlib.error, RecursionError) as error:
            # BadGzipFile (not gzip, CRC), EOFError (truncated), zlib.error (bit flips),
            # ValueError (JSON, UTF-8): each is the same verdict, with its own detail.
            reason = f"unreadable ({type(error).__name__}: {error})"
            raise CorruptCheckpointError(topic, partition, reason) from None
        try:
            model = CheckpointDocument.model_validate(document)
        except ValidationError as error:
            reason = f"not a checkpoint of format {CHECKPOINT_FORMAT} ({validation_reason(error)})"
            raise CorruptCheckpointError(topic, partition, reason) from None
        if model.topic != topic or model.partition != partition:
            reason = f"belongs to another partition ({model.topic}[{model.partition}])"
            raise CorruptCheckpointError(topic, partition, reason)
        return cls(
            topic=topic,
            partition=partition,
            offset=model.offset,
            written_at=model.written_at,
            state=document["state"],  # validated above; the core restores from plain data
            watermark_s=model.watermark_s,
        )


def _recency_first(state: dict[str, Any]) -> dict[str, Any]:
    # The learner's order before its statistics: a bounded read then knows, as it meets each
    # segment, whether it keeps it (one pass instead of two). JSON readers see the same data.
    learner = state.get("learner")
    if not isinstance(learner, dict) or "recency" not in learner:
        return state
    return {**state, "learner": {"recency": learner["recency"], **learner}}


# Long base64 strings (the join's id digests, VW models) are close to random: deflate's
# match search finds nothing in them and took 4/5 of a checkpoint's time. They go in gzip
# members of their own, Huffman-coded only (as small, 5x faster); `gzip.decompress`
# joins the members back into the one document.
_OPAQUE = re.compile(rb'"[A-Za-z0-9+/]{65536,}={0,2}"')


def _gzip_member(data: bytes, strategy: int) -> bytes:
    # wbits 31: a gzip member, with mtime 0, so the same state gives the same bytes.
    packer = zlib.compressobj(6, zlib.DEFLATED, 31, 8, strategy)
    return packer.compress(data) + packer.flush()


def _compress(raw: bytes) -> bytes:
    members: list[bytes] = []
    start = 0
    for run in _OPAQUE.finditer(raw):
        members.append(_gzip_member(raw[start : run.start()], zlib.Z_DEFAULT_STRATEGY))
        members.append(_gzip_member(run.group(), zlib.Z_HUFFMAN_ONLY))
        start = run.end()
    members.append(_gzip_member(raw[start:], zlib.Z_DEFAULT_STRATEGY))
    return b"".join(members)
