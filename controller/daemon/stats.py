"""Target mode across replicas: every partition's running sums on a compacted stats topic.

λ (controller.targets) is fleet-wide while the partitions are spread over
replicas, so the figures it is stepped from travel through Kafka, not a
coordinator of our own. At every publish round each replica:

1. sends the target `Totals` of every partition it owns to `target.stats_topic`,
   key = the partition number (compacted: the latest per partition is what
   any reader ends up with, however long the topic has run);
2. reads what every replica sent (its own reader of the topic, outside the
   consumer group, from the beginning);
3. if it owns partition 0, the one writer of the `*` policy, steps λ on the
   fleet's totals (the latest of every partition, its own from memory) with
   partition 0's controller and sends key `*` = {lambda, achieved, target}.
   The controller's state lives in partition 0's core, so it is checkpointed
   with that partition and moves with it on a rebalance;
4. sets on every core it owns the λ of the latest `*`, so that every replica
   builds its policies with the same weights (a replica that has not seen a
   `*` yet keeps the λ its checkpoint restored).

Partition 0's checkpoint holds λ with the sums it was stepped from; a step
taken after its last checkpoint (a round with no new events) is taken again
after a restart, from the same interval.

The sum over partitions adds cumulative sums, so it needs no clock agreement;
a partition whose sums go backwards (restored from an older checkpoint)
restarts the controller's interval instead of stepping on a negative one.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from kafka import KafkaConsumer, TopicPartition

from stopbandit.controller.targets import Totals
from stopbandit.streams.kafka import Message, client_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.daemon.partitions import PartitionState
    from stopbandit.streams.kafka import Outbox

log = structlog.get_logger(__name__)

LAMBDA_KEY = b"*"


class StatsReader(Protocol):
    """What the daemon needs of the stats topic's reader (kafka-python's or a test's)."""

    def read(self) -> list[tuple[bytes | None, bytes | None]]:
        """The (key, value) of every record since the last call, in topic order."""

    def close(self) -> None:
        """Release the connection."""


class KafkaStatsReader:
    """Reads the stats topic from the beginning, outside any consumer group."""

    def __init__(self, config: StopbanditConfig) -> None:
        self._consumer = KafkaConsumer(
            **client_settings(config.kafka), enable_auto_commit=False, group_id=None
        )
        partition = TopicPartition(config.target.stats_topic, 0)
        self._consumer.assign([partition])
        self._consumer.seek_to_beginning(partition)

    def read(self) -> list[tuple[bytes | None, bytes | None]]:
        """Whatever arrived since the last read (does not wait)."""
        batches = self._consumer.poll(timeout_ms=0)
        return [(r.key, r.value) for batch in batches.values() for r in batch]

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close(autocommit=False)


def stats_value(partition: int, totals: Totals, at_s: float) -> bytes:
    """One partition's record on the stats topic."""
    document = {"partition": partition, "totals": totals.to_dict(), "at_s": at_s}
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


class FleetStats:
    """The replica's side of the stats topic (see the module doc).

    Args:
        config: the whole configuration (target section, stats topic).
        outbox: where records go (flushed with the round's policies).
        reader: the stats topic's reader.
        metrics: λ, the achieved value and the target.
    """

    def __init__(
        self, config: StopbanditConfig, outbox: Outbox, reader: StatsReader, metrics: Metrics
    ) -> None:
        self._topic = config.target.stats_topic
        self._outbox = outbox
        self._reader = reader
        self._metrics = metrics
        self.latest: dict[int, Totals] = {}
        if config.control.fraction == 0.0:
            # The target is measured against the reference arm, which the policies stop
            # playing once λ moves them off it (docs/operations.md, target mode).
            log.warning(
                "target.no_control_group",
                reference_share=config.target.reference_share,
                fix="set control.fraction (0.15 holds the target within 1-2 points): a random "
                "draw measures the reference arm, not only what target.reference_share keeps",
            )
        self.fleet_lambda: float | None = None
        self.fleet_achieved: float | None = None

    def exchange(self, states: Sequence[PartitionState], wall_s: float) -> None:
        """One round: send own totals, read everyone's, step λ if partition 0 is here, set λ."""
        cores = {s.partition: s.core for s in states if s.core.target is not None}
        for partition, core in cores.items():
            assert core.target is not None  # noqa: S101 - filtered above
            core.target.local = False  # λ is the fleet's: stepped here, not per core
            totals = core.target.tally.totals
            self._outbox.send(
                Message(
                    self._topic, str(partition).encode(), stats_value(partition, totals, wall_s)
                )
            )
        self._read()
        for partition, core in cores.items():
            assert core.target is not None  # noqa: S101 - filtered above
            self.latest[partition] = core.target.tally.totals
        leader = cores.get(0)
        if leader is not None and leader.target is not None:
            controller = leader.target.controller
            fleet = sum(self.latest.values(), Totals())
            if controller.update(fleet, wall_s):
                log.info(
                    "target.stepped",
                    metric=controller.metric,
                    target=controller.target,
                    achieved=round(controller.achieved or 0.0, 3),
                    token_cost_per_1k=controller.lambda_,
                    partitions=len(self.latest),
                )
            self.fleet_lambda, self.fleet_achieved = controller.lambda_, controller.achieved
            self._outbox.send(Message(self._topic, LAMBDA_KEY, self._lambda_value(leader, wall_s)))
        if self.fleet_lambda is not None:
            for core in cores.values():
                core.set_lambda(self.fleet_lambda)
        self._report(cores)

    def _lambda_value(self, leader: Any, wall_s: float) -> bytes:  # noqa: ANN401 - a core
        controller = leader.target.controller
        document = {
            "lambda": controller.lambda_,
            "achieved": controller.achieved,
            "target": controller.target,
            "metric": controller.metric,
            "at_s": wall_s,
        }
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()

    def _read(self) -> None:
        for key, value in self._reader.read():
            try:
                self._take(key, value)
            except (ValueError, TypeError, KeyError) as error:
                # Someone else's bytes on our topic must not stop the loop: skip, say so.
                log.warning("target.stats_skipped", key=repr(key)[:40], error=str(error)[:200])

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        if value is None or key is None:
            return  # a tombstone
        document = json.loads(value)
        if key == LAMBDA_KEY:
            value_lambda = float(document["lambda"])
            if not math.isfinite(value_lambda) or value_lambda <= 0:
                raise ValueError(f"lambda {value_lambda} is not finite and > 0")
            self.fleet_lambda = value_lambda
            achieved = document.get("achieved")
            self.fleet_achieved = None if achieved is None else float(achieved)
            return
        partition = int(key.decode())
        if partition < 0 or int(document["partition"]) != partition:
            raise ValueError(f"key {partition} and partition {document['partition']} differ")
        self.latest[partition] = Totals.from_dict(document["totals"])

    def _report(self, cores: dict[int, Any]) -> None:
        if self.fleet_lambda is not None:
            self._metrics.target_lambda.set(self.fleet_lambda)
        if self.fleet_achieved is not None:
            self._metrics.target_achieved.set(self.fleet_achieved)
        target = next((c.target for c in cores.values()), None)
        if target is not None:
            self._metrics.target_value.set(target.controller.target)

    def close(self) -> None:
        """Close the reader."""
        self._reader.close()
