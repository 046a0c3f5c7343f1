"""The Kafka section reads the forms operators write."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stopbandit.streams.kafka_config import KafkaConfig


@pytest.mark.parametrize(
    ("given", "servers"),
    [
        ("kafka:9092", ["kafka:9092"]),
        ("k1:9092, k2:9092,k3:9093", ["k1:9092", "k2:9092", "k3:9093"]),
        (["k1:9092", "k2:9092"], ["k1:9092", "k2:9092"]),
    ],
)
def test_bootstrap_servers_take_a_list_or_a_comma_separated_string(
    given: str | list[str], servers: list[str]
) -> None:
    """A YAML string works as in kafka-python and librdkafka."""
    assert KafkaConfig(bootstrap_servers=given).bootstrap_servers == servers  # type: ignore[arg-type]


@pytest.mark.parametrize("given", ["", " , ", []])
def test_no_bootstrap_server_is_refused(given: str | list[str]) -> None:
    """An empty server list is an error, not a hang."""
    with pytest.raises(ValidationError, match="bootstrap_servers"):
        KafkaConfig(bootstrap_servers=given)  # type: ignore[arg-type]
