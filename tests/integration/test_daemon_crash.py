"""The daemon as a process: kill -9 mid-stream, broker restart; every interaction learned once."""

from __future__ import annotations

import random
import threading
import time

import pytest
from brokers import create_topics, read_to_end
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

# 50k interactions (100k events) over 2 partitions, produced at ~6k events/s (about 17 s),
# so the three kills land while the stream is flowing.
CRASH_INTERACTIONS = 50_000
CRASH_RATE_PER_S = 6_000.0
KILLS = 3
SEED = 20261130
# Bounds against hanging, not speed targets: generous on a shared 2-core machine.
CATCH_UP_TIMEOUT_S = 180.0


def test_kill_9_three_times_learns_every_interaction_exactly_once(broker, tmp_path):
    """Three SIGKILLs at random points, restarts: learned == unique interactions, none pending."""
    topics = create_topics(broker.bootstrap_servers, events_partitions=2)
    lines = simulated_lines(CRASH_INTERACTIONS, 21)
    settings = base_settings(broker, topics, tmp_path, checkpoint={"interval_s": 0.5})
    config_path = write_config(settings, tmp_path / "config.yaml")
    producer = threading.Thread(
        target=produce,
        args=(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines]),
        kwargs={"rate_per_s": CRASH_RATE_PER_S},
    )
    rng = random.Random(SEED)

    producer.start()
    daemon = DaemonProcess(config_path, tmp_path / "daemon-0.log")
    started = [daemon]
    try:
        for number in range(1, KILLS + 1):
            # A random point once the daemon is consuming (killing it while Python
            # starts up would exercise nothing).
            wait_for(daemon.restored, CATCH_UP_TIMEOUT_S, "the daemon to consume")
            time.sleep(rng.uniform(0.3, 2.0))
            daemon.kill()
            daemon = DaemonProcess(config_path, tmp_path / f"daemon-{number}.log")
            started.append(daemon)
        producer.join()
        config = config_of(settings)
        wait_for(
            lambda: learned_in_checkpoints(config, 2) == (CRASH_INTERACTIONS, 0),
            CATCH_UP_TIMEOUT_S,
            "the checkpoints to cover every interaction",
        )
    finally:
        code = daemon.terminate()

    assert code == 0
    assert learned_in_checkpoints(config, 2) == (CRASH_INTERACTIONS, 0)
    assert read_to_end(broker.bootstrap_servers, topics.dlq) == []
    restored = [
        e["learned"]
        for process in started[1:]
        for e in process.events()
        if e["event"] == "partition.restored" and e["from_checkpoint"]
    ]
    # Killed mid-stream: some restore resumed from a partial checkpoint.
    assert any(0 < learned < CRASH_INTERACTIONS // 2 for learned in restored), restored
    assert daemon.events()[-1]["event"] == "daemon.stopped"


def test_broker_restart_loses_no_committed_work(broker, tmp_path):
    """Kafka restarts mid-stream; the daemon stays up, reconnects and learns everything once."""
    if broker.kind != "kafka":
        pytest.skip("Tansu keeps topics and offsets in memory only; a restart loses them")
    topics = create_topics(broker.bootstrap_servers, events_partitions=2)
    lines = simulated_lines(6_000, 22)
    half = len(lines) // 2
    settings = base_settings(broker, topics, tmp_path, checkpoint={"interval_s": 0.5})
    config = config_of(settings)
    daemon = DaemonProcess(write_config(settings, tmp_path / "config.yaml"), tmp_path / "d.log")
    try:
        produce(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines[:half]])
        wait_for(
            lambda: learned_in_checkpoints(config, 2)[0] == half // 2,
            CATCH_UP_TIMEOUT_S,
            "the first half to be checkpointed",
        )

        broker.restart()

        assert daemon.process.poll() is None
        produce(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines[half:]])
        wait_for(
            lambda: learned_in_checkpoints(config, 2) == (len(lines) // 2, 0),
            CATCH_UP_TIMEOUT_S,
            "the second half to be checkpointed",
        )
    finally:
        code = daemon.terminate()

    assert code == 0
    assert learned_in_checkpoints(config, 2) == (len(lines) // 2, 0)
    kinds = [e["event"] for e in daemon.events()]
    assert "daemon.stopped" in kinds
