"""What one assigned partition starts from: its checkpoint, a fresh core, or a refusal.

Each partition is decided on its own (partitions.py restores the others
whatever happens to one). The cases, in order:

1. The store's newest valid copy (it falls back to the older one itself,
   and says so: `checkpoint.fallback`, `stopbandit_checkpoint_fallbacks_total`).
2. No valid copy remains (`corrupt`), the checkpoint was written for other
   arms (`arms`), or there is none while the group has committed offsets
   (`missing`: deleted or tombstoned, so a fresh start would silently lose
   what the partition learned): `checkpoint.on_corrupt` decides. `refuse`
   raises `Refusal` (the partition stays paused, retried slowly so that an
   operator's `stopbandit checkpoint reset` is picked up); `reset` starts a
   fresh core at the committed offset, with an error log and
   `stopbandit_checkpoint_resets_total`.
3. The offset to resume from is past the log's end (`offset_ahead`: the topic
   was recreated under it), or the topic's id is not the one the partition was
   last consumed under here (recreated, and refilled past the offset already):
   `checkpoint.on_offset_ahead` decides: `refuse`,
   or `reset_offsets` (keep the state, consume the partition from its
   beginning; the join's learned request_ids still skip any replayed ones).
4. The offset to resume from is below the log's beginning (retention removed
   events before they were consumed): they are gone, so the partition resumes
   at the beginning, but loudly: `events.lost_to_retention` (error) and
   `stopbandit_events_lost_to_retention_total` by how many offsets.

A checkpoint is read with at most `limits.max_segments` segments, the most
recently learned (checkpoint_bounded.py): one written under a larger limit, or
before there was one, restores in memory bounded by the limit, not by what it
holds. The others are evicted: `checkpoint.segments_evicted` (info) at the
restore, `stopbandit_segments_evicted_total` once the publisher forgets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog
from kafka import TopicPartition

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_format import CorruptCheckpointError

if TYPE_CHECKING:
    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.daemon.checkpoint_format import Checkpoint
    from stopbandit.controller.daemon.checkpoint_stores import CheckpointStore
    from stopbandit.controller.daemon.consumer import Consumer
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.daemon.offsets import LogOffsets

log = structlog.get_logger(__name__)

Reason = Literal["corrupt", "arms", "missing", "offset_ahead"]
REASONS: tuple[Reason, ...] = ("corrupt", "arms", "missing", "offset_ahead")
DOCS = "docs/operations.md, 'Corrupt, missing or foreign checkpoints'"


def fix_of(reason: Reason, partition: int) -> str:
    """The operator's way out of a refusal, for the log line."""
    if reason == "offset_ahead":
        return (
            "set checkpoint.on_offset_ahead: reset_offsets to consume the partition from its "
            f"beginning with the learned state, or run `stopbandit checkpoint reset {partition}` "
            f"(see {DOCS})"
        )
    return (
        f"run `stopbandit checkpoint inspect {partition}`, then "
        f"`stopbandit checkpoint reset {partition}` to start it fresh, or set "
        f"checkpoint.on_corrupt: reset (see {DOCS})"
    )


class Refusal(Exception):  # noqa: N818 - a verdict, not a failure of the code
    """The partition must not be consumed until an operator acts.

    Attributes:
        partition: the events partition.
        reason: the kind (a label of `stopbandit_checkpoint_refused`).
        detail: what was found.
        fix: what the operator can do.
    """

    def __init__(self, partition: int, reason: Reason, detail: str) -> None:
        super().__init__(f"partition {partition} refused ({reason}): {detail}")
        self.partition = partition
        self.reason: Reason = reason
        self.detail = detail
        self.fix = fix_of(reason, partition)


@dataclass(frozen=True)
class Plan:
    """How to start one partition.

    Attributes:
        core: the restored (or fresh) core.
        checkpoint: the checkpoint restored, None for a fresh core.
        seek_to: the offset to consume from; None: the consumer's own position.
    """

    core: ControllerCore
    checkpoint: Checkpoint | None
    seek_to: int | None


def arms_problem(config: StopbanditConfig, checkpoint: Checkpoint) -> str | None:
    """Why the checkpoint's arms do not fit the config, if they do not."""
    arms = [float(a) for a in checkpoint.state["learner"]["arms"]]
    if arms == list(config.arms):
        return None
    return (
        f"checkpoint written for arms {arms}, the config has {list(config.arms)}; "
        f"a checkpoint cannot change arms (see {DOCS}, 'Changing the arms')"
    )


def _restored(config: StopbanditConfig, checkpoint: Checkpoint) -> ControllerCore:
    core = ControllerCore(config)
    try:
        core.restore(checkpoint.state)
    except Exception as error:  # noqa: BLE001 - any failure deep in a restore is the same verdict
        reason = f"state does not restore ({type(error).__name__}: {error})"
        raise CorruptCheckpointError(checkpoint.topic, checkpoint.partition, reason) from None
    if core.learner.evictions:
        # Counted in stopbandit_segments_evicted_total when the publisher forgets them.
        log.info(
            "checkpoint.segments_evicted",
            partition=checkpoint.partition,
            kept=len(core.learner.stats),
            evicted=core.learner.evictions,
            max_segments=config.limits.max_segments,
            note="the checkpoint held more than limits.max_segments: the most recently "
            "learned kept, the others start again from a cold start",
        )
    return core


class Restorer:
    """Decides what each assigned partition starts from (module doc).

    Args:
        config: the whole configuration (events topic, arms, `checkpoint.on_*`).
        store: where checkpoints are read.
        consumer: the events consumer (its position, for a fresh partition).
        offsets: the log's ends and the group's commits (None: not checked).
        metrics: fallbacks, resets.
    """

    def __init__(
        self,
        config: StopbanditConfig,
        store: CheckpointStore,
        consumer: Consumer,
        offsets: LogOffsets | None,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self._store = store
        self._consumer = consumer
        self._offsets = offsets
        self._metrics = metrics
        # Per partition, the events topic's id it was last restored under in this process.
        self._topic_ids: dict[int, str] = {}

    def plan(self, partition: int) -> Plan:
        """What the partition starts from.

        Raises:
            Refusal: the partition must stay paused (`refuse` was configured for the case).
            CheckpointError: the store cannot be read now (retry).
            KafkaError: the broker cannot answer now (retry).
        """
        tp = TopicPartition(self._config.kafka.events_topic, partition)
        checkpoint, core, problem = self._load(tp)
        if problem is not None:
            reason, detail = problem
            if self._config.checkpoint.on_corrupt == "refuse":
                raise Refusal(partition, reason, detail)
            self._metrics.checkpoint_resets.labels(str(partition), reason).inc()
            log.error(
                "checkpoint.reset",
                partition=partition,
                reason=reason,
                detail=detail,
                note="checkpoint.on_corrupt is reset: started fresh, what it learned is lost",
            )
            checkpoint, core = None, None
        seek_to = checkpoint.offset if checkpoint is not None else None
        if self._offsets is not None:
            seek_to = self._check_end(tp, seek_to)
        return Plan(core or ControllerCore(self._config), checkpoint, seek_to)

    def _load(
        self, tp: TopicPartition
    ) -> tuple[Checkpoint | None, ControllerCore | None, tuple[Reason, str] | None]:
        try:
            # At most the segments this core keeps are read (checkpoint_bounded.py).
            checkpoint = self._store.load(
                tp.topic, tp.partition, max_segments=self._config.limits.max_segments
            )
        except CorruptCheckpointError as error:
            return None, None, ("corrupt", error.reason)
        if checkpoint is None:
            committed = None if self._offsets is None else self._offsets.committed(tp)
            if committed is None:
                return None, None, None
            detail = f"no checkpoint, but the group committed offset {committed} (deleted?)"
            return None, None, ("missing", detail)
        if checkpoint.fell_back:
            self._metrics.checkpoint_fallbacks.labels(str(tp.partition)).inc()
            log.warning(
                "checkpoint.fallback",
                partition=tp.partition,
                offset=checkpoint.offset,
                skipped=checkpoint.fell_back,
            )
        arms = arms_problem(self._config, checkpoint)
        if arms is not None:
            return checkpoint, None, ("arms", arms)
        try:
            return checkpoint, _restored(self._config, checkpoint), None
        except CorruptCheckpointError as error:
            return checkpoint, None, ("corrupt", error.reason)

    def _check_end(self, tp: TopicPartition, seek_to: int | None) -> int | None:
        assert self._offsets is not None  # noqa: S101 - the caller checked
        resume = seek_to if seek_to is not None else self._consumer.position(tp)
        topic_id = self._topic_id(tp)
        # Only a checkpoint's offset belongs to the topic it was consumed from.
        detail = self._recreated(tp, topic_id, resume) if seek_to is not None else None
        if detail is None:
            end = self._offsets.beyond_end(tp, resume)
            if end is None:
                self._remember(tp, topic_id)
                return self._check_beginning(tp, resume, seek_to)
            detail = f"offset {resume} to resume from is past the log end {end} (topic recreated?)"
        if self._config.checkpoint.on_offset_ahead == "refuse":
            raise Refusal(tp.partition, "offset_ahead", detail)
        self._remember(tp, topic_id)
        beginning = self._offsets.beginning(tp)
        self._metrics.checkpoint_resets.labels(str(tp.partition), "offset_ahead").inc()
        log.error(
            "checkpoint.offset_ahead",
            partition=tp.partition,
            detail=detail,
            seek_to=beginning,
            note="checkpoint.on_offset_ahead is reset_offsets: consumed from the beginning",
        )
        return beginning

    def _topic_id(self, tp: TopicPartition) -> str | None:
        # Stand-ins of LogOffsets without the method, and brokers before topic ids, cannot tell.
        read_id = getattr(self._offsets, "topic_id", None)
        return read_id(tp.topic) if read_id is not None else None

    def _remember(self, tp: TopicPartition, topic_id: str | None) -> None:
        if topic_id is not None:
            self._topic_ids[tp.partition] = topic_id

    def _recreated(self, tp: TopicPartition, topic_id: str | None, resume: int) -> str | None:
        previous = self._topic_ids.get(tp.partition)
        if topic_id is None or previous is None or previous == topic_id:
            return None
        return (
            f"the events topic was recreated (id {previous} -> {topic_id}) under the "
            f"checkpoint's offset {resume}; the events there now are others"
        )

    def _check_beginning(self, tp: TopicPartition, resume: int, seek_to: int | None) -> int | None:
        # Without this, the consumer's offset reset would skip the removed events silently.
        assert self._offsets is not None  # noqa: S101 - the caller checked
        beginning = self._offsets.beginning(tp)
        if resume >= beginning:
            return seek_to
        lost_to_retention(self._metrics, tp.partition, resume, beginning, "restore")
        return beginning


def lost_to_retention(
    metrics: Metrics, partition: int, offset: int, beginning: int, when: str
) -> None:
    """Count and log the events between `offset` and the log's `beginning`: removed, unread."""
    metrics.events_lost_to_retention.labels(str(partition)).inc(beginning - offset)
    log.error(
        "events.lost_to_retention",
        partition=partition,
        offset=offset,
        beginning=beginning,
        lost=beginning - offset,
        when=when,
        note="retention removed them before they were consumed; raise the events topic's "
        "retention.ms above the longest outage (docs/operations.md)",
    )
