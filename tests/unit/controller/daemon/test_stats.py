"""Target mode across replicas: sums on the stats topic, λ stepped by partition 0's owner."""

from __future__ import annotations

import json

import pytest
from daemon_fakes import (
    FakeClock,
    FakeConsumer,
    FakeProducer,
    FakeStore,
    Journal,
    config,
    interaction,
)
from structlog.testing import capture_logs

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.loop import Daemon
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.partitions import PartitionState
from stopbandit.controller.daemon.stats import LAMBDA_KEY, FleetStats, stats_value
from stopbandit.controller.targets import Totals
from stopbandit.streams.kafka import Outbox

TARGET = {"token_reduction": 0.3, "interval_s": 1.0, "min_interactions": 10}
STATS = "stopbandit.stats"


class ScriptedReader:
    """A stats reader returning scripted records, then nothing."""

    def __init__(self, *rounds: list[tuple[bytes | None, bytes | None]]) -> None:
        self.rounds = list(rounds)
        self.closed = False

    def read(self):
        """The next scripted round."""
        return self.rounds.pop(0) if self.rounds else []

    def close(self):
        """Remember the close."""
        self.closed = True


def state(partition: int) -> PartitionState:
    """A partition in target mode with a fresh core."""
    return PartitionState(
        partition=partition,
        core=ControllerCore(config(target=TARGET)),
        offset=0,
        watermark_s=0.0,
        checkpointed_offset=None,
        checkpointed_at_s=0.0,
    )


def fleet(reader: ScriptedReader) -> tuple[FleetStats, FakeProducer, Metrics]:
    """FleetStats over a fake producer."""
    producer = FakeProducer(Journal())
    metrics = Metrics()
    return FleetStats(config(target=TARGET), Outbox(producer), reader, metrics), producer, metrics


def sent(producer: FakeProducer) -> list[tuple[bytes | None, dict]]:
    """What went to the stats topic, as (key, document)."""
    producer.flush()
    return [(k, json.loads(v)) for t, k, v in producer.sent if t == STATS and v is not None]


def served(totals_n: float, reduction_pts: float) -> Totals:
    """Sums of requests that saved `reduction_pts` of the reference's tokens."""
    return Totals(
        n=totals_n, tokens=totals_n * (100 - reduction_pts), reference_tokens=totals_n * 100
    )


def test_partition_zero_steps_lambda_on_every_partitions_sums() -> None:
    """The leader adds the other replica's partition 1 to its own and steps λ on the fleet."""
    own = state(0)
    reader = ScriptedReader(
        [(b"1", stats_value(1, served(0, 0), 0.0))],
        [(b"1", stats_value(1, served(1000, 50), 5.0))],
    )
    stats, producer, metrics = fleet(reader)
    stats.exchange([own], 0.0)
    own.core.target.tally.totals = served(1000, 10)  # type: ignore[union-attr]
    stats.exchange([own], 5.0)
    controller = own.core.target.controller  # type: ignore[union-attr]
    assert controller.achieved == pytest.approx(30.0)  # (10 + 50) / 2: equal traffic
    records = sent(producer)
    assert [k for k, _ in records] == [b"0", LAMBDA_KEY, b"0", LAMBDA_KEY]
    assert records[-1][1]["lambda"] == controller.lambda_
    assert records[2][1]["totals"]["n"] == 1000
    assert own.core.weights.token_cost_per_1k == pytest.approx(controller.lambda_, rel=1e-5)
    assert metrics.target_achieved._value.get() == pytest.approx(30.0)
    assert metrics.target_value._value.get() == pytest.approx(30.0)


def test_other_replicas_take_lambda_from_star() -> None:
    """A replica without partition 0 sends its sums and builds with the leader's λ."""
    own = state(1)
    reader = ScriptedReader([(LAMBDA_KEY, json.dumps({"lambda": 0.07, "achieved": 28.0}).encode())])
    stats, producer, metrics = fleet(reader)
    stats.exchange([own], 0.0)
    assert own.core.weights.token_cost_per_1k == 0.07
    assert own.core.target is not None
    assert not own.core.target.local
    assert [k for k, _ in sent(producer)] == [b"1"]
    assert metrics.target_lambda._value.get() == 0.07
    policies = own.core.build_policies(1.0)
    assert all(p.reward.token_cost_per_1k == 0.07 for p in policies)


def test_before_any_star_a_replica_keeps_its_lambda() -> None:
    """Nothing from the leader yet: the restored (or configured) λ stays."""
    own = state(2)
    stats, _, _ = fleet(ScriptedReader())
    start = own.core.weights.token_cost_per_1k
    stats.exchange([own], 0.0)
    assert own.core.weights.token_cost_per_1k == start


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (LAMBDA_KEY, b"{not json"),
        (LAMBDA_KEY, json.dumps({"lambda": -1}).encode()),
        (b"x", json.dumps({"partition": 0}).encode()),
        (b"3", json.dumps({"partition": 4, "totals": Totals().to_dict()}).encode()),
        (b"3", json.dumps({"partition": 3, "totals": {"n": 1}}).encode()),
    ],
)
def test_foreign_records_are_skipped_with_a_warning(key: bytes, value: bytes) -> None:
    """Bytes the topic should not hold never stop the round."""
    own = state(1)
    stats, _, _ = fleet(ScriptedReader([(key, value), (b"5", stats_value(5, served(1, 1), 0))]))
    with capture_logs() as logs:
        stats.exchange([own], 0.0)
    assert [e["event"] for e in logs] == ["target.stats_skipped"]
    assert 5 in stats.latest
    assert stats.fleet_lambda is None


class Ticking:
    """A clock that moves 5 s each time it is read: every publish round is a step of λ."""

    def __init__(self) -> None:
        self.now_s = 1_800_000_000.0

    def __call__(self) -> float:
        """The time, then move on."""
        self.now_s += 5.0
        return self.now_s


def target_daemon(journal: Journal, store: FakeStore, batches: list) -> Daemon:
    """A target-mode daemon over fakes, owning partition 0; both clocks tick."""
    return Daemon(
        config(target=TARGET),
        consumer_factory=lambda: FakeConsumer(journal, batches, (0,)),
        producer=FakeProducer(journal),
        store=store,
        monotonic=Ticking(),
        wall=Ticking(),
        check_topics=False,
        stats_reader=ScriptedReader,
    )


def test_tuned_lambda_survives_a_restart() -> None:
    """λ and its step state come back from partition 0's checkpoint in a new process.

    The checkpoint holds λ with the sums it was stepped from; a step taken after
    the last checkpoint (no new events) is taken again after a restart, from the
    same interval.
    """
    store = FakeStore(Journal())
    batches = [{0: [m for i in range(k, k + 20) for m in interaction(i)]} for k in (0, 20, 40)]
    first = target_daemon(Journal(), store, batches)
    first.run(max_events=120)
    saved = store.saved[0].state["target"]["controller"]
    assert saved["updates"] >= 1
    assert saved["lambda"] > 0.02  # served at the reference: no saving, tokens get dearer
    second = target_daemon(Journal(), store, [])
    second.run(idle_timeout_s=0.0)
    report = second.target_report()
    assert report is not None
    assert report["lambda"] >= saved["lambda"]  # restored, then maybe stepped once more
    assert report["updates"] in {saved["updates"], saved["updates"] + 1}


def test_daemon_in_target_mode_sends_sums_and_builds_with_lambda() -> None:
    """The loop's publish round runs the exchange: sums and λ on the topic, λ in the policies."""
    journal = Journal()
    batches = [{0: [m for i in range(20) for m in interaction(i)]}]
    daemon = Daemon(
        config(target=TARGET),
        consumer_factory=lambda: FakeConsumer(journal, batches, (0,)),
        producer=FakeProducer(journal),
        store=FakeStore(journal),
        monotonic=FakeClock(),
        wall=lambda: 1_800_000_000.0,
        check_topics=False,
        stats_reader=ScriptedReader,
    )
    daemon.run(max_events=40)
    producer = daemon._connected.producer  # type: ignore[union-attr]
    keys = [k for t, k, _ in producer.sent if t == STATS]
    assert b"0" in keys
    assert LAMBDA_KEY in keys
    policies = [json.loads(v) for t, _, v in producer.sent if t == "policies"]
    assert policies
    state0 = daemon._connected.partitions.owned[0]  # type: ignore[union-attr]
    assert policies[-1]["reward"]["token_cost_per_1k"] == state0.core.weights.token_cost_per_1k
