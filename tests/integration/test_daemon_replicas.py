"""Two daemon replicas in one group: partitions split; one dies; the other restores and goes on."""

from __future__ import annotations

import pytest
from brokers import create_topics
from daemon_helpers import (
    DaemonProcess,
    base_settings,
    config_of,
    learned_in_checkpoints,
    produce,
    segment_of,
    simulated_lines,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
# 8k interactions (16k events), half before and half after one replica dies.
INTERACTIONS = 8_000
TIMEOUT_S = 180.0


def test_survivor_takes_over_from_kafka_checkpoints_without_relearning(broker, tmp_path):
    """The partitions split; after a kill -9 the survivor restores them and learns each once."""
    topics = create_topics(broker.bootstrap_servers, events_partitions=PARTITIONS)
    lines = simulated_lines(INTERACTIONS, 31)
    half = len(lines) // 2
    settings = base_settings(
        broker, topics, tmp_path, checkpoint={"store": "kafka", "interval_s": 0.5}
    )
    config = config_of(settings)
    config_path = write_config(settings, tmp_path / "config.yaml")
    first = DaemonProcess(config_path, tmp_path / "first.log")
    second = DaemonProcess(config_path, tmp_path / "second.log")
    try:
        wait_for(
            lambda: (
                first.owned() and second.owned() and first.owned() | second.owned() == {0, 1, 2, 3}
            ),
            TIMEOUT_S,
            "both replicas to own partitions",
        )
        assert not first.owned() & second.owned()
        produce(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines[:half]])
        wait_for(
            lambda: learned_in_checkpoints(config, PARTITIONS) == (half // 2, 0),
            TIMEOUT_S,
            "the first half to be checkpointed",
        )
        victim = first.owned()

        first.kill()
        produce(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines[half:]])
        wait_for(
            lambda: learned_in_checkpoints(config, PARTITIONS) == (INTERACTIONS, 0),
            TIMEOUT_S,
            "the survivor to checkpoint every interaction",
        )
    finally:
        if first.process.poll() is None:
            first.kill()
        code = second.terminate()

    assert code == 0
    assert victim
    restores = [
        e for e in second.events() if e["event"] == "partition.restored" and e["from_checkpoint"]
    ]
    # The victim's partitions came back from its checkpoints, with what it had learned.
    assert victim <= {e["partition"] for e in restores}
    assert any(e["learned"] > 0 for e in restores if e["partition"] in victim)
    assert learned_in_checkpoints(config, PARTITIONS) == (INTERACTIONS, 0)
