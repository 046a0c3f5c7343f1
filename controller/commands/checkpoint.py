"""`stopbandit checkpoint inspect|reset PARTITION`: the way out of a refused partition.

`inspect` lists every stored copy of the partition's checkpoint (the newest
file and the one kept back, or each Kafka slot), valid or with its reason,
and whether the daemon would restore it under this config (arms). `reset`
writes a valid empty checkpoint for the partition at a chosen offset, so
the daemon starts it fresh there: a partition the daemon refused is retried
within a minute and picks it up. Resetting a partition a running daemon
owns has no effect (its next checkpoint replaces the reset): stop the daemon
first. See docs/operations.md, "Corrupt, missing or foreign checkpoints".
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stopbandit.controller.commands import UsageError
from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import (
    Checkpoint,
    CheckpointError,
    Copy,
    DirCheckpointStore,
    KafkaCheckpointStore,
)
from stopbandit.controller.daemon.restoring import arms_problem
from stopbandit.controller.logs import configure_logging
from stopbandit.streams.kafka import Outbox, client_settings, open_producer

if TYPE_CHECKING:
    import argparse

    from stopbandit.controller.config import StopbanditConfig

EXIT_UNUSABLE = 1
_TIMEOUT_MS = 10_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `checkpoint` subcommand and its actions."""
    parser = subparsers.add_parser(
        "checkpoint",
        help="inspect or reset one partition's checkpoint",
        description=(
            "Inspect the stored copies of a partition's checkpoint, or reset the partition "
            "to a fresh state at an offset (the way out when the daemon refuses a partition)."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    inspect = actions.add_parser("inspect", help="list the partition's checkpoint copies")
    reset = actions.add_parser("reset", help="write a fresh checkpoint for the partition")
    for action in (inspect, reset):
        action.add_argument("partition", type=int, help="the events topic's partition")
        action.add_argument("--config", type=Path, help="the daemon's config YAML")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of lines")
    inspect.set_defaults(handler=run_inspect)
    reset.add_argument(
        "--offset",
        default="committed",
        help=(
            "where the fresh partition starts: committed (the group's committed offset; "
            "earliest if none or past the log end), earliest, latest, or an offset number"
        ),
    )
    reset.add_argument(
        "--yes", action="store_true", help="really write it (without: only say what it would do)"
    )
    reset.set_defaults(handler=run_reset)


def _reader(config: StopbanditConfig) -> DirCheckpointStore | KafkaCheckpointStore:
    # Reading needs no producer: the Kafka store only writes through its outbox.
    if config.checkpoint.store == "dir":
        return DirCheckpointStore(config.checkpoint.dir)
    return KafkaCheckpointStore(config.kafka, Outbox(None), config.checkpoint.topic)


def describe(config: StopbanditConfig, copy: Copy) -> dict[str, Any]:
    """One copy as plain data: where, valid or why not, and what it holds."""
    checkpoint = copy.checkpoint
    if checkpoint is None:
        return {"copy": copy.name, "valid": False, "error": copy.error}
    learner = checkpoint.state["learner"]
    arms = arms_problem(config, checkpoint)
    return {
        "copy": copy.name,
        "valid": arms is None,
        "error": arms,
        "offset": checkpoint.offset,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(checkpoint.written_at)),
        "learned": learner["learned"],
        "segments": len(learner["stats"]),
        "arms": learner["arms"],
    }


def run_inspect(args: argparse.Namespace) -> int:
    """Print every copy; exit 0 when the newest one the daemon would pick is usable, else 1."""
    config = load_config(args.config)
    configure_logging(config.log.format, "warning")
    topic = config.kafka.events_topic
    try:
        copies = _reader(config).copies(topic, args.partition)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    described = [describe(config, copy) for copy in copies]
    if args.json:
        print(json.dumps({"partition": args.partition, "copies": described}, indent=2))  # noqa: T201
    elif not described:
        print(f"{topic}[{args.partition}]: no checkpoint")  # noqa: T201
    for entry in [] if args.json else described:
        if entry["valid"]:
            line = (
                f"valid: offset {entry['offset']}, written {entry['written_at']}, "
                f"{entry['learned']} learned, {entry['segments']} segments"
            )
        elif "offset" in entry:
            line = f"unusable: {entry['error']}"
        else:
            line = f"corrupt: {entry['error']}"
        print(f"{topic}[{args.partition}] {entry['copy']}: {line}")  # noqa: T201
    first_readable = next((e for e in described if "offset" in e), None)
    usable = not described or (first_readable is not None and first_readable["valid"])
    return 0 if usable else EXIT_UNUSABLE


def start_offset(config: StopbanditConfig, partition: int, choice: str) -> tuple[int, str]:
    """The offset `--offset` names, and how it was found.

    Raises:
        UsageError: not a choice, or the broker cannot tell.
    """
    if choice.isdigit():
        return int(choice), "given"
    if choice not in {"committed", "earliest", "latest"}:
        raise UsageError(f"--offset: {choice!r} is not committed, earliest, latest or a number")
    tp = TopicPartition(config.kafka.events_topic, partition)
    group = config.kafka.group_id if choice == "committed" else None
    consumer = KafkaConsumer(
        **client_settings(config.kafka), group_id=group, enable_auto_commit=False
    )
    try:
        beginning = int(consumer.beginning_offsets([tp], timeout_ms=_TIMEOUT_MS)[tp])
        end = int(consumer.end_offsets([tp], timeout_ms=_TIMEOUT_MS)[tp])
        if choice == "earliest":
            return beginning, "earliest"
        if choice == "latest":
            return end, "latest"
        committed = consumer.committed(tp, timeout_ms=_TIMEOUT_MS)
    except KafkaError as error:
        raise UsageError(f"kafka: cannot read the offsets of {tp}: {error!r}") from None
    finally:
        consumer.close(autocommit=False)
    if committed is None:
        return beginning, "earliest (the group never committed)"
    if committed > end:
        return beginning, f"earliest (the committed offset {committed} is past the log end {end})"
    return int(committed), "the group's committed offset"


def run_reset(args: argparse.Namespace) -> int:
    """Write a fresh checkpoint for the partition (with --yes), keeping what was there aside."""
    config = load_config(args.config)
    configure_logging(config.log.format, "warning")
    topic = config.kafka.events_topic
    offset, how = start_offset(config, args.partition, args.offset)
    what = f"{topic}[{args.partition}]: a fresh checkpoint at offset {offset} ({how})"
    if not args.yes:
        print(f"would write {what}; everything the partition learned is dropped. Add --yes.")  # noqa: T201
        return 0
    checkpoint = Checkpoint(
        topic=topic,
        partition=args.partition,
        offset=offset,
        written_at=time.time(),
        state=ControllerCore(config).snapshot(),
        watermark_s=0.0,
    )
    if config.checkpoint.store == "dir":
        store = DirCheckpointStore(config.checkpoint.dir)
        kept = _set_aside(store, topic, args.partition)
        _save(store, checkpoint)
    else:
        producer = open_producer(config.kafka)
        try:
            outbox = Outbox(producer)
            kafka_store = KafkaCheckpointStore(config.kafka, outbox, config.checkpoint.topic)
            # Read first, so the fresh one goes to the slot not holding the last good copy.
            with contextlib.suppress(CheckpointError):  # nothing valid: either slot will do
                kafka_store.load(topic, args.partition)
            _save(kafka_store, checkpoint)
        finally:
            producer.close()
        kept = []
    print(f"wrote {what}")  # noqa: T201
    for path in kept:
        print(f"kept the previous files as {path}")  # noqa: T201
    return 0


def _set_aside(store: DirCheckpointStore, topic: str, partition: int) -> list[Path]:
    # Both files are renamed out of the store's names (so neither is read again), not deleted.
    suffix = f".reset-{int(time.time())}"
    kept = []
    for path in (store.path(topic, partition), store.previous_path(topic, partition)):
        if path.exists():
            target = path.with_name(path.name + suffix)
            path.replace(target)
            kept.append(target)
    return kept


def _save(store: DirCheckpointStore | KafkaCheckpointStore, checkpoint: Checkpoint) -> None:
    try:
        store.save(checkpoint)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
