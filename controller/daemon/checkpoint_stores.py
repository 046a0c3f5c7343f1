"""Partition checkpoints (checkpoint_format.py), written atomically with one good copy kept back.

Restoring means loading the state and seeking to its offset, so a checkpoint
is self-consistent whichever replica wrote it and however old it is: an older
copy is a safe fallback (its events are consumed again, and learned once).

Two stores, each keeping two copies and loading the newest valid one:

- `DirCheckpointStore`: `<dir>/<topic>-<partition>.json.gz`, written to a
  temporary `.ckpt-*` file, fsynced, the current file moved to
  `<topic>-<partition>.prev.json.gz`, the new one renamed in, the directory
  fsynced. After a restore from the previous file (the newest was corrupt)
  the previous file is kept and only the broken one replaced. Temporary files
  a crash left behind are removed at start (`clean_temporaries`).
- `KafkaCheckpointStore`: a compacted topic keyed by `<group>/<topic>/<partition>`.
  The compressed document is cut into chunks of at most `CHUNK_BYTES` (the
  default 1 MiB message limit holds whatever the state's size) under keys
  `<base>/<slot>/<i>`, each prefixed by its generation, and a small manifest
  per slot under `<base>/<slot>` names the generation, chunk count and
  SHA-256. Slots alternate (A/B), and a new checkpoint never goes to the slot
  of the last good one: a crash mid-write, or a corrupt slot, leaves the other
  intact. Restore reads the topic and folds it (last value per key wins), which
  is what compaction keeps, so it works on brokers that never compact (Tansu).
  (Manifests written before per-slot manifests sit under `<base>` and are read too.)

`load` raises `CorruptCheckpointError` only when no copy is valid, with every
copy's reason; it returns None only when there is no copy at all (never written,
or deleted), and then the caller decides whether that is plausible (restoring.py).
It decodes the copies newest first and stops at the first valid one, reading at
most `max_segments` segments of it (`Checkpoint.decode`): a restore holds one
copy, bounded, however large the stored ones are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import structlog
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stopbandit.controller.daemon.checkpoint_format import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointError,
    CorruptCheckpointError,
    validation_reason,
)
from stopbandit.streams.kafka import Message, Outbox, read_topic

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from stopbandit.controller.config import CheckpointConfig
    from stopbandit.streams.kafka_config import KafkaConfig

__all__ = [
    "CHUNK_BYTES",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "Copy",
    "CorruptCheckpointError",
    "DirCheckpointStore",
    "KafkaCheckpointStore",
    "open_store",
]

log = structlog.get_logger(__name__)

CHUNK_BYTES = 512 * 1024
_SLOTS = 2
TEMPORARY_PREFIX = ".ckpt-"


@dataclass(frozen=True)
class Copy:
    """One stored copy of a partition's checkpoint, newest first in `copies`.

    Attributes:
        name: where it is (a file name, or a slot).
        checkpoint: the checkpoint, if the copy is valid.
        error: why it is not (None when valid).
    """

    name: str
    checkpoint: Checkpoint | None
    error: str | None


class CheckpointStore(Protocol):
    """Where checkpoints live."""

    def save(self, checkpoint: Checkpoint) -> None:
        """Write durably and atomically; when this returns, `load` sees it.

        Raises:
            CheckpointError: it could not be written (the previous one is intact).
        """

    def load(
        self, topic: str, partition: int, *, max_segments: int | None = None
    ) -> Checkpoint | None:
        """The newest valid checkpoint of the partition, or None if there is none at all.

        `max_segments`: read at most that many segments (`Checkpoint.decode`).

        Raises:
            CorruptCheckpointError: copies exist but none is valid.
            CheckpointError: the store cannot be read now (worth retrying).
        """

    def close(self) -> None:
        """Release resources."""


def through_first_valid(copies: Iterable[Copy]) -> list[Copy]:
    """The copies, newest first, up to the first valid one: older ones are not even decoded."""
    read: list[Copy] = []
    for copy in copies:
        read.append(copy)
        if copy.checkpoint is not None:
            break
    return read


def newest_valid(topic: str, partition: int, copies: Sequence[Copy]) -> Checkpoint | None:
    """The first valid copy, noting why newer ones were skipped; None if there are none.

    Raises:
        CorruptCheckpointError: there are copies, none valid (every reason listed).
    """
    skipped: list[str] = []
    for copy in copies:
        if copy.checkpoint is not None:
            if not skipped:
                return copy.checkpoint
            return replace(copy.checkpoint, fell_back="; ".join(skipped))
        skipped.append(f"{copy.name}: {copy.error}")
    if not skipped:
        return None
    raise CorruptCheckpointError(topic, partition, "no valid copy (" + "; ".join(skipped) + ")")


class DirCheckpointStore:
    """Two files per partition in a directory (a volume shared by replicas, or local)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # Partitions whose newest file was unusable at the last load: keep their previous file.
        self._keep_previous: set[tuple[str, int]] = set()

    def path(self, topic: str, partition: int) -> Path:
        """The file of one partition's newest checkpoint."""
        return self.directory / f"{topic}-{partition}.json.gz"

    def previous_path(self, topic: str, partition: int) -> Path:
        """The file of the copy kept back."""
        return self.directory / f"{topic}-{partition}.prev.json.gz"

    def clean_temporaries(self) -> int:
        """Remove temporary files a crash mid-write left behind; how many there were.

        Only at start: with one writer per directory (operations.md), none is in flight then.
        """
        removed = 0
        for temporary in self.directory.glob(f"{TEMPORARY_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
                removed += 1
        if removed:
            log.warning("checkpoint.temporaries_removed", directory=str(self.directory), n=removed)
        return removed

    def save(self, checkpoint: Checkpoint) -> None:
        """Write a temporary file, fsync, keep the current one back, rename, fsync the directory."""
        topic, partition = checkpoint.topic, checkpoint.partition
        target = self.path(topic, partition)
        blob = checkpoint.encode()
        try:
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=TEMPORARY_PREFIX)
            try:
                with os.fdopen(descriptor, "wb") as stream:
                    stream.write(blob)
                    stream.flush()
                    os.fsync(stream.fileno())
                # A crash between the two renames leaves only the previous file: load uses it.
                if (topic, partition) not in self._keep_previous and target.exists():
                    target.replace(self.previous_path(topic, partition))
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
            raise CheckpointError(topic, partition, str(error)) from None
        self._keep_previous.discard((topic, partition))

    def copies(self, topic: str, partition: int, *, max_segments: int | None = None) -> list[Copy]:
        """The newest file and the previous one, valid or with their reasons (absent: left out).

        Raises:
            CheckpointError: a file exists but cannot be read (I/O).
        """
        return list(self._copies(topic, partition, max_segments))

    def _copies(self, topic: str, partition: int, max_segments: int | None) -> Iterator[Copy]:
        for path in (self.path(topic, partition), self.previous_path(topic, partition)):
            try:
                blob = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as error:
                raise CheckpointError(topic, partition, f"{path.name}: {error}") from None
            try:
                copy = Copy(
                    path.name,
                    Checkpoint.decode(topic, partition, blob, max_segments=max_segments),
                    None,
                )
            except CorruptCheckpointError as error:
                copy = Copy(path.name, None, error.reason)
            yield copy

    def load(
        self, topic: str, partition: int, *, max_segments: int | None = None
    ) -> Checkpoint | None:
        """The newest valid file (the previous one if the newest is missing or corrupt)."""
        copies = through_first_valid(self._copies(topic, partition, max_segments))
        checkpoint = newest_valid(topic, partition, copies)
        newest = self.path(topic, partition).name
        if checkpoint is not None and (checkpoint.fell_back or copies[0].name != newest):
            # The newest is broken or gone: the next save replaces it, not the good one.
            self._keep_previous.add((topic, partition))
            if checkpoint.fell_back is None:
                checkpoint = replace(checkpoint, fell_back=f"{newest}: missing")
        return checkpoint

    def close(self) -> None:
        """Nothing to release."""


class Manifest(BaseModel):
    """What a slot's manifest says about its chunks."""

    model_config = ConfigDict(extra="ignore")

    format: Literal[1]
    generation: int = Field(ge=1)
    slot: int = Field(ge=0, lt=_SLOTS)
    chunks: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    offset: int = Field(ge=0)


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
        # The fold so far (our group's keys only; None: a tombstone) and where reading stopped.
        self._latest: dict[str, bytes | None] = {}
        self._positions: dict[int, int] = {}
        # Per base: the highest generation seen, and the slot of the last good checkpoint.
        self._generations: dict[str, int] = {}
        self._good_slot: dict[str, int] = {}
        self.foreign_keys = 0

    def _base(self, topic: str, partition: int) -> str:
        return f"{self._config.group_id}/{topic}/{partition}"

    def save(self, checkpoint: Checkpoint) -> None:
        """Chunks to the slot not holding the last good checkpoint, flush, its manifest, flush."""
        topic, partition = checkpoint.topic, checkpoint.partition
        base = self._base(topic, partition)
        if base not in self._generations:
            try:
                self._refresh()
            except (KafkaError, TimeoutError) as error:
                raise CheckpointError(
                    topic, partition, f"reading {self.topic}: {error!r}"
                ) from None
            self._note(base, self._manifests(base))
        generation = self._generations.get(base, 0) + 1
        good = self._good_slot.get(base)
        slot = generation % _SLOTS if good is None else (good + 1) % _SLOTS
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
            key = f"{base}/{slot}".encode()
            self._outbox.send(Message(self.topic, key, json.dumps(manifest).encode()))
            self._outbox.flush(self._flush_timeout_s)
        except KafkaError as error:
            raise CheckpointError(topic, partition, repr(error)) from None
        self._generations[base] = generation
        self._good_slot[base] = slot

    def copies(self, topic: str, partition: int, *, max_segments: int | None = None) -> list[Copy]:
        """Every manifest of the partition, newest generation first, valid or with its reason.

        Unreadable manifests (no generation to order them by) come first; deleted
        (tombstoned) ones are listed with that reason.

        Raises:
            CheckpointError: the topic cannot be read now.
        """
        return list(self._copies(topic, partition, max_segments))

    def _copies(self, topic: str, partition: int, max_segments: int | None) -> Iterator[Copy]:
        base = self._base(topic, partition)
        try:
            self._refresh()
        except (KafkaError, TimeoutError) as error:
            raise CheckpointError(topic, partition, f"reading {self.topic}: {error!r}") from None
        manifests = self._manifests(base)
        self._note(base, manifests)
        for name, reason in manifests:
            if isinstance(reason, str):
                yield Copy(name, None, reason)
        valid = sorted(
            ((name, m) for name, m in manifests if isinstance(m, Manifest)),
            key=lambda item: -item[1].generation,
        )
        for name, m in valid:
            yield self._assemble(topic, partition, base, name, m, max_segments=max_segments)

    def load(
        self, topic: str, partition: int, *, max_segments: int | None = None
    ) -> Checkpoint | None:
        """The newest valid slot; None when no manifest exists or every one was deleted."""
        copies = through_first_valid(self._copies(topic, partition, max_segments))
        if all(c.error == "deleted (tombstone)" for c in copies):
            return None
        checkpoint = newest_valid(topic, partition, copies)
        first_valid = next((c for c in copies if c.checkpoint is not None), None)
        if first_valid is not None:  # named "generation G slot S" by _assemble
            self._good_slot[self._base(topic, partition)] = int(first_valid.name.rsplit(" ", 1)[-1])
        return checkpoint

    def _manifests(self, base: str) -> list[tuple[str, Manifest | str]]:
        found: list[tuple[str, Manifest | str]] = []
        for key in [f"{base}/{slot}" for slot in range(_SLOTS)] + [base]:
            if key not in self._latest:
                continue
            name = f"manifest {key}"
            value = self._latest[key]
            if value is None:
                found.append((name, "deleted (tombstone)"))
                continue
            try:
                found.append((name, Manifest.model_validate_json(value)))
            except ValidationError as error:
                found.append((name, f"manifest invalid ({validation_reason(error)})"))
        return found

    def _note(self, base: str, manifests: list[tuple[str, Manifest | str]]) -> None:
        # Generations only grow, whatever was found valid, so a new manifest is the newest.
        generations = [m.generation for _, m in manifests if isinstance(m, Manifest)]
        if generations:
            self._generations[base] = max(self._generations.get(base, 0), *generations)
        else:
            self._generations.setdefault(base, 0)

    def _assemble(
        self,
        topic: str,
        partition: int,
        base: str,
        name: str,
        m: Manifest,
        *,
        max_segments: int | None,
    ) -> Copy:
        label = f"generation {m.generation} slot {m.slot}"
        parts: list[bytes] = []
        for index in range(m.chunks):
            value = self._latest.get(f"{base}/{m.slot}/{index}")
            if value is None:
                return Copy(label, None, f"chunk {index} missing ({name})")
            header, newline, chunk = value.partition(b"\n")
            if not newline or not header.isdigit():
                return Copy(label, None, f"chunk {index} has no generation header")
            if int(header) != m.generation:
                return Copy(label, None, f"chunk {index} is of generation {int(header)}")
            parts.append(chunk)
        blob = b"".join(parts)
        if hashlib.sha256(blob).hexdigest() != m.sha256:
            return Copy(label, None, "SHA-256 mismatch")
        try:
            checkpoint = Checkpoint.decode(topic, partition, blob, max_segments=max_segments)
            return Copy(label, checkpoint, None)
        except CorruptCheckpointError as error:
            return Copy(label, None, error.reason)

    def _refresh(self) -> None:
        records, self._positions = read_topic(
            self._config, self.topic, start=self._positions or None
        )
        foreign = 0
        for record in records:
            try:
                key = record.key.decode() if record.key is not None else ""
            except UnicodeDecodeError:
                foreign += 1  # not a key this store writes: someone else's message
                continue
            if key.startswith(self._prefix):
                self._latest[key] = record.value
        if foreign:
            self.foreign_keys += foreign
            log.warning("checkpoint.foreign_keys", topic=self.topic, skipped=foreign)

    def close(self) -> None:
        """Nothing to release: the producer belongs to the daemon."""


def open_store(config: CheckpointConfig, kafka: KafkaConfig, outbox: Outbox) -> CheckpointStore:
    """The store `checkpoint.store` names: a directory, or a topic written through `outbox`."""
    if config.store == "dir":
        store = DirCheckpointStore(config.dir)
        store.clean_temporaries()
        return store
    return KafkaCheckpointStore(kafka, outbox, config.topic)
