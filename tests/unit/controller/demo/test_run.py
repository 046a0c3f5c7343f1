"""The demo's daemon config: the embedded broker's topics are asked for with one copy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stopbandit.controller.demo.run import DemoSettings, demo_config
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO

if TYPE_CHECKING:
    from pathlib import Path


def test_the_embedded_broker_gets_one_copy_and_a_given_one_the_default(tmp_path: Path) -> None:
    """One embedded broker: replication 1, stated, so no under-replication warning on day 1."""
    embedded = DemoSettings(scenario_path=DEFAULT_SCENARIO, interactions=10, seed=1)
    config = demo_config(embedded, "127.0.0.1:9092", tmp_path)
    assert config.kafka.replication_factor == 1
    given = DemoSettings(
        scenario_path=DEFAULT_SCENARIO, interactions=10, seed=1, bootstrap_servers="kafka:9092"
    )
    assert demo_config(given, "kafka:9092", tmp_path).kafka.replication_factor is None
