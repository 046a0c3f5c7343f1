"""Target mode over two replicas: λ travels through the stats topic, the same everywhere."""

from __future__ import annotations

import pytest
from brokers import create_topics, fold_latest, read_to_end
from daemon_helpers import (
    DaemonProcess,
    base_settings,
    folded_policies,
    produce,
    segment_of,
    simulated_lines,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

PARTITIONS = 2
INTERACTIONS = 4_000
TIMEOUT_S = 180.0
START_COST = 0.02


def test_partition_zero_steps_lambda_and_both_replicas_build_with_it(broker, tmp_path):
    """The owner of partition 0 alone steps λ, and every policy ends up carrying it.

    Both replicas send their sums; both replicas' policies, `*` included, end up
    with one tuned λ, which is not the configured token cost.
    """
    topics = create_topics(broker.bootstrap_servers, events_partitions=PARTITIONS)
    stats_topic = f"{topics.events}.stats"
    settings = base_settings(
        broker,
        topics,
        tmp_path,
        checkpoint={"store": "kafka", "interval_s": 1.0},
        target={
            "token_reduction": 0.45,
            "interval_s": 0.5,
            "min_interactions": 50,
            "stats_topic": stats_topic,
        },
    )
    settings["reward"] = {**settings["reward"], "token_cost_per_1k": START_COST}
    config_path = write_config(settings, tmp_path / "config.yaml")
    first = DaemonProcess(config_path, tmp_path / "first.log")
    second = DaemonProcess(config_path, tmp_path / "second.log")
    try:
        wait_for(
            lambda: first.owned() and second.owned() and first.owned() | second.owned() == {0, 1},
            TIMEOUT_S,
            "both replicas to own a partition",
        )
        lines = simulated_lines(INTERACTIONS, 7)
        produce(broker.bootstrap_servers, topics.events, [(segment_of(x), x) for x in lines])

        def settled() -> bool:
            stats = fold_latest(read_to_end(broker.bootstrap_servers, stats_topic))
            if set(stats) != {b"0", b"1", b"*"}:
                return False
            costs = {p["reward"]["token_cost_per_1k"] for p in policies().values()}
            return len(costs) == 1 and costs != {START_COST}

        def policies() -> dict:
            return folded_policies(broker.bootstrap_servers, topics.policies)

        wait_for(settled, TIMEOUT_S, "every policy to carry one tuned λ")
        # Read before stopping: on the way down partition 0, and λ, move to the survivor.
        leader, follower = (first, second) if 0 in first.owned() else (second, first)
        steps = [e for e in leader.events() if e["event"] == "target.stepped"]
        follower_steps = [e for e in follower.events() if e["event"] == "target.stepped"]
        assert "*" in policies()
    finally:
        first.terminate()
        second.terminate()
    assert steps
    assert any(e["partitions"] == PARTITIONS for e in steps)  # the other replica's sums counted
    assert not follower_steps
