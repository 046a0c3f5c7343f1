"""`stopbandit report` reads the events topic on real brokers (Apache Kafka and Tansu)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kafka import KafkaProducer

if TYPE_CHECKING:
    from brokers import Broker, Topics

pytestmark = pytest.mark.integration

STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")
INTERACTIONS = 3000
FRACTION = 0.1


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STOPBANDIT, *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated log with a 10 % control group."""
    path = tmp_path_factory.mktemp("report") / "events.jsonl.gz"
    result = _run(
        "simulate",
        "--interactions",
        INTERACTIONS,
        "--seed",
        3,
        "--control-fraction",
        FRACTION,
        "--log-events",
        path,
    )
    assert result.returncode == 0, result.stderr
    return path


def test_the_topic_reports_like_the_log_file(broker: Broker, topics: Topics, log: Path) -> None:
    """The log produced to a 4-partition topic (keyed by segment) gives the file's figures."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=20)
    try:
        for line in gzip.decompress(log.read_bytes()).splitlines():
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
    from_file = _run("report", log, "--control-fraction", FRACTION, "--json")
    from_topic = _run(
        "report",
        "--bootstrap",
        broker.bootstrap_servers,
        "--topic",
        topics.events,
        "--control-fraction",
        FRACTION,
        "--json",
    )
    assert from_file.returncode == 0, from_file.stderr
    assert from_topic.returncode == 0, from_topic.stderr
    file_document, topic_document = json.loads(from_file.stdout), json.loads(from_topic.stdout)
    assert topic_document["input"]["interactions"] == INTERACTIONS
    assert topic_document["fleet"]["requests"] == file_document["fleet"]["requests"]
    for figure in ("em_change_pts", "tokens_change", "token_reduction"):
        assert topic_document["fleet"][figure]["estimate"] == pytest.approx(
            file_document["fleet"][figure]["estimate"]
        )


def test_a_missing_topic_is_a_usage_error(broker: Broker) -> None:
    """A topic that does not exist: exit 2 naming it, no traceback."""
    result = _run("report", "--bootstrap", broker.bootstrap_servers, "--topic", "no.such.topic")
    assert result.returncode == 2
    assert "no.such.topic" in result.stderr
    assert "Traceback" not in result.stderr
