"""Partition checkpoints: the core's state plus the offset it covers, written atomically.

A checkpoint is one JSON document, gzip-compressed (in several gzip members, which
any gzip reader concatenates back into the document):

    {"format": 1, "topic": "stopbandit.events", "partition": 3, "offset": 81724,
     "written_at": 1764489600.0, "watermark_s": 1764489599.5,
     "state": <ControllerCore.snapshot()>}

`offset` is the next offset to consume: every event before it is in `state`
(learned, pending in the join buffer, or dropped), none after it;
`watermark_s` is the partition's event-time clock (see controller/daemon/loop.py). Restoring
means loading `state` and seeking to `offset`, so a checkpoint is always
self-consistent whichever replica wrote it and however old it is.

Two stores:

- `DirCheckpointStore`: `<dir>/<topic>-<partition>.json.gz`, written to a
  temporary file, fsynced, then `os.replace`d (and the directory fsynced).
- `KafkaCheckpointStore`: a compacted topic keyed by `<group>/<topic>/<partition>`.
  The compressed document is cut into chunks of at most `CHUNK_BYTES` (the
  default 1 MiB message limit holds whatever the state's size) under keys
  `<base>/<slot>/<i>`, and a small manifest under `<base>` names the slot,
  generation, chunk count and SHA-256. Slots alternate (A/B), so writing a
  new checkpoint never overwrites the chunks the current manifest points to:
  a crash mid-write leaves the previous checkpoint intact. Restore reads the
  topic and folds it (last value per key wins), which is what compaction
  keeps, so it works on brokers that never compact (Tansu).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from kafka.errors import KafkaError

from stopbandit.streams.kafka import Message, Outbox, read_topic

if TYPE_CHECKING:
    from stopbandit.controller.config import CheckpointConfig
    from stopbandit.streams.kafka_config import KafkaConfig

log = structlog.get_logger(__name__)

CHECKPOINT_FORMAT = 1
CHUNK_BYTES = 512 * 1024
_SLOTS = 2


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or written.

    Attributes:
        topic: the events topic of the partition.
        partition: the partition.
    """

    def __init__(self, topic: str, partition: int, reason: str) -> None:
        super().__init__(f"checkpoint of {topic}[{partition}]: {reason}")
        self.topic = topic
        self.partition = partition


@dataclass(frozen=True)
class Checkpoint:
    """The state of one partition and the offset it covers."""

    topic: str
    partition: int
    offset: int
    written_at: float
    state: dict[str, Any]
    watermark_s: float

    def encode(self) -> bytes:
        """The gzip-compressed JSON document."""
        document = {
            "format": CHECKPOINT_FORMAT,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "written_at": self.written_at,
            "watermark_s": self.watermark_s,
            "state": self.state,
        }
        raw = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
        return _compress(raw)

    @classmethod
    def decode(cls, topic: str, partition: int, blob: bytes) -> Checkpoint:
        """Parse what `encode` wrote.

        Raises:
            CheckpointError: the bytes are not a checkpoint of this partition.
        """
        try:
            document = json.loads(gzip.decompress(blob))
        except (OSError, EOFError, ValueError) as error:
            raise CheckpointError(topic, partition, f"unreadable ({error})") from None
        if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(topic, partition, "not a checkpoint of format 1")
        if document.get("topic") != topic or document.get("partition") != partition:
            raise CheckpointError(topic, partition, "belongs to another partition")
        return cls(
            topic=topic,
            partition=partition,
            offset=int(document["offset"]),
            written_at=float(document["written_at"]),
            state=document["state"],
            watermark_s=float(document["watermark_s"]),
        )


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


class CheckpointStore(Protocol):
    """Where checkpoints live."""

    def save(self, checkpoint: Checkpoint) -> None:
        """Write durably and atomically; when this returns, `load` sees it.

        Raises:
            CheckpointError: it could not be written (the previous one is intact).
        """

    def load(self, topic: str, partition: int) -> Checkpoint | None:
        """The latest checkpoint of the partition, or None if there is none.

        Raises:
            CheckpointError: one exists but cannot be read.
        """

    def close(self) -> None:
        """Release resources."""


class DirCheckpointStore:
    """One file per partition in a directory (a volume shared by replicas, or local)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, topic: str, partition: int) -> Path:
        """The file of one partition's checkpoint."""
        return self.directory / f"{topic}-{partition}.json.gz"

    def save(self, checkpoint: Checkpoint) -> None:
        """Write to a temporary file, fsync, rename over the old one, fsync the directory."""
        target = self.path(checkpoint.topic, checkpoint.partition)
        blob = checkpoint.encode()
        try:
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".ckpt-")
            try:
                with os.fdopen(descriptor, "wb") as stream:
                    stream.write(blob)
                    stream.flush()
                    os.fsync(stream.fileno())
                Path(temporary).replace(target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    Path(temporary).unlink()
                raise
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            raise CheckpointError(checkpoint.topic, checkpoint.partition, str(error)) from None

    def load(self, topic: str, partition: int) -> Checkpoint | None:
        """Read the partition's file, if any."""
        try:
            blob = self.path(topic, partition).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise CheckpointError(topic, partition, str(error)) from None
        return Checkpoint.decode(topic, partition, blob)

    def close(self) -> None:
        """Nothing to release."""


class KafkaCheckpointStore:
    """Checkpoints in a compacted topic, chunked under alternating slots (see the module doc)."""

    def __init__(
        self,
        config: KafkaConfig,
        outbox: Outbox,
        topic: str,
        *,
        flush_timeout_s: float = 30.0,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._config = config
        self._outbox = outbox
        self.topic = topic
        self._prefix = f"{config.group_id}/"
        self._flush_timeout_s = flush_timeout_s
        self._chunk_bytes = chunk_bytes
        # The fold so far (our group's keys only) and where reading stopped.
        self._latest: dict[str, bytes] = {}
        self._positions: dict[int, int] = {}
        self._generations: dict[str, int] = {}

    def _base(self, topic: str, partition: int) -> str:
        return f"{self._config.group_id}/{topic}/{partition}"

    def save(self, checkpoint: Checkpoint) -> None:
        """Chunks to the free slot, flush, then the manifest pointing at them, flush."""
        base = self._base(checkpoint.topic, checkpoint.partition)
        if base not in self._generations:
            self._refresh()
            self._generations[base] = self._manifest_of(base).get("generation", 0)
        generation = self._generations[base] + 1
        slot = generation % _SLOTS
        blob = checkpoint.encode()
        chunks = [
            blob[i : i + self._chunk_bytes] for i in range(0, len(blob), self._chunk_bytes)
        ] or [b""]
        header = b"%d\n" % generation
        try:
            for index, chunk in enumerate(chunks):
                key = f"{base}/{slot}/{index}".encode()
                self._outbox.send(Message(self.topic, key, header + chunk))
            self._outbox.flush(self._flush_timeout_s)
            manifest = {
                "format": CHECKPOINT_FORMAT,
                "generation": generation,
                "slot": slot,
                "chunks": len(chunks),
                "sha256": hashlib.sha256(blob).hexdigest(),
                "offset": checkpoint.offset,
            }
            self._outbox.send(Message(self.topic, base.encode(), json.dumps(manifest).encode()))
            self._outbox.flush(self._flush_timeout_s)
        except KafkaError as error:
            raise CheckpointError(checkpoint.topic, checkpoint.partition, repr(error)) from None
        self._generations[base] = generation

    def load(self, topic: str, partition: int) -> Checkpoint | None:
        """Fold the topic up to its end and assemble the partition's latest checkpoint."""
        base = self._base(topic, partition)
        try:
            self._refresh()
        except (KafkaError, TimeoutError) as error:
            raise CheckpointError(topic, partition, f"reading {self.topic}: {error!r}") from None
        manifest = self._manifest_of(base)
        if not manifest:
            return None
        parts: list[bytes] = []
        for index in range(int(manifest["chunks"])):
            value = self._latest.get(f"{base}/{manifest['slot']}/{index}")
            if value is None:
                raise CheckpointError(topic, partition, f"chunk {index} missing")
            header, _, chunk = value.partition(b"\n")
            if int(header) != manifest["generation"]:
                raise CheckpointError(topic, partition, f"chunk {index} of another generation")
            parts.append(chunk)
        blob = b"".join(parts)
        if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
            raise CheckpointError(topic, partition, "SHA-256 mismatch")
        self._generations[base] = int(manifest["generation"])
        return Checkpoint.decode(topic, partition, blob)

    def _manifest_of(self, base: str) -> dict[str, Any]:
        value = self._latest.get(base)
        if value is None:
            return {}
        manifest: dict[str, Any] = json.loads(value)
        return manifest

    def _refresh(self) -> None:
        records, self._positions = read_topic(
            self._config, self.topic, start=self._positions or None
        )
        for record in records:
            key = record.key.decode() if record.key is not None else ""
            if not key.startswith(self._prefix):
                continue
            if record.value is None:
                self._latest.pop(key, None)
            else:
                self._latest[key] = record.value

    def close(self) -> None:
        """Nothing to release: the producer belongs to the daemon."""


def open_store(config: CheckpointConfig, kafka: KafkaConfig, outbox: Outbox) -> CheckpointStore:
    """The store `checkpoint.store` names: a directory, or a topic written through `outbox`."""
    if config.store == "dir":
        return DirCheckpointStore(config.dir)
    return KafkaCheckpointStore(kafka, outbox, config.topic)
