"""`replay` reads a range of the events topic on real brokers (Apache Kafka and Tansu)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kafka import KafkaProducer

from stopbandit.controller.config import load_config
from stopbandit.controller.replay.feed import RawEvent, replay
from stopbandit.controller.replay.sources import RangeBound, read_topic_range

if TYPE_CHECKING:
    from brokers import Broker, Topics

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data"
CONFIG = load_config(DATA / "replay-golden.yaml")
STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")
EVENTS = 1_000  # the first 500 requests of the golden log


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    """The events, as the serving nodes would have produced them."""
    return gzip.decompress((DATA / "replay-golden.jsonl.gz").read_bytes()).splitlines()[:EVENTS]


@pytest.fixture
def produced(broker: Broker, topics: Topics, lines: list[bytes]) -> Topics:
    """The events produced to a fresh 4-partition topic, keyed by segment, stamped with ts."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=20)
    try:
        for line in lines:
            event = json.loads(line)
            producer.send(
                topics.events,
                key=event["segment"].encode(),
                value=line,
                timestamp_ms=round(event["ts"] * 1000),
            )
        producer.flush()
    finally:
        producer.close()
    return topics


def test_a_whole_topic_replays_like_the_log_file(
    broker: Broker, produced: Topics, lines: list[bytes]
) -> None:
    """Read to the high-water marks, merged by timestamp: the same policy as from the file."""
    topic_range = read_topic_range([broker.bootstrap_servers], produced.events, None, None)
    assert len(topic_range.events) == EVENTS
    assert sum(topic_range.next_offsets.values()) == EVENTS
    from_topic = replay(topic_range.events, CONFIG, publish_every=100)
    from_file = replay(
        [RawEvent("log", i, None, line) for i, line in enumerate(lines)], CONFIG, publish_every=100
    )
    assert from_topic.core is not None
    assert from_file.core is not None
    assert from_topic.stats.invalid == {}
    assert {s: p.pmf for s, p in from_topic.core.policies.items()} == {
        s: p.pmf for s, p in from_file.core.policies.items()
    }
    assert set(topic_range.partition_of) == set(from_file.segments)


def test_an_offset_range_reads_those_offsets_of_every_partition(
    broker: Broker, produced: Topics
) -> None:
    """--from 10 --to 30: offsets 10 to 29 of each partition (fewer where it is shorter)."""
    whole = read_topic_range([broker.bootstrap_servers], produced.events, None, None)
    part = read_topic_range(
        [broker.bootstrap_servers], produced.events, RangeBound(offset=10), RangeBound(offset=30)
    )
    expected = sum(max(0, min(30, end) - 10) for end in whole.next_offsets.values())
    assert len(part.events) == expected
    assert all(10 <= e.position < 30 for e in part.events)
    assert part.next_offsets == {p: min(30, end) for p, end in whole.next_offsets.items()}


def test_a_time_range_reads_the_events_stamped_within_it(
    broker: Broker, produced: Topics, lines: list[bytes]
) -> None:
    """--from and --to as ISO times select by record timestamp (offsets_for_times)."""
    stamps = [json.loads(line)["ts"] for line in lines]
    start, end = stamps[200], stamps[600]

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat()

    part = read_topic_range(
        [broker.bootstrap_servers],
        produced.events,
        RangeBound.parse(iso(start)),
        RangeBound.parse(iso(end)),
    )
    expected = sum(start <= ts < end for ts in stamps)
    assert len(part.events) == expected


def test_the_cli_replays_a_topic_and_exports_checkpoints_at_its_end(
    broker: Broker, produced: Topics, tmp_path: Path
) -> None:
    """`replay --bootstrap --topic --json --export-checkpoint`: checkpoints cover the range."""
    result = subprocess.run(
        [
            STOPBANDIT, "replay", "--bootstrap", broker.bootstrap_servers,
            "--topic", produced.events, "--config", str(DATA / "replay-golden.yaml"),
            "--publish-every", "100", "--json", "--export-checkpoint", str(tmp_path),
        ],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["input"]["interactions"] == EVENTS // 2
    offsets = {}
    for path in sorted(tmp_path.glob("*.json.gz")):
        checkpoint = json.loads(gzip.decompress(path.read_bytes()))
        assert checkpoint["topic"] == produced.events
        offsets[checkpoint["partition"]] = checkpoint["offset"]
    assert len(offsets) == 4
    assert sum(offsets.values()) == EVENTS
