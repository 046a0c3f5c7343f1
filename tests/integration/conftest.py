"""Fixtures for tests against real brokers, each started once per session.

`broker` is parametrized over Apache Kafka and Tansu, so every test that uses
it runs against both (ids `kafka` and `tansu`). Select one with `-k kafka`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from brokers import (
    Broker,
    KafkaBroker,
    KafkaJarsMissingError,
    TansuBroker,
    Topics,
    create_topics,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session", params=["kafka", "tansu"], ids=["kafka", "tansu"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    """A running broker of each kind, shared by the session's tests."""
    started: KafkaBroker | TansuBroker
    if request.param == "kafka":
        missing: str | None = None
        try:
            started = KafkaBroker(tmp_path_factory.mktemp("kafka"))
        except KafkaJarsMissingError as error:
            missing = str(error)
        if missing is not None:
            # Fail, not skip: a missing broker must not turn into a green run.
            pytest.fail(missing, pytrace=False)
    else:
        started = TansuBroker()
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def topics(broker: Broker) -> Topics:
    """Fresh events (4 partitions), policies (compacted) and dlq topics for one test."""
    return create_topics(broker.bootstrap_servers)
