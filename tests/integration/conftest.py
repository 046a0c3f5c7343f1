"""Fixtures for tests against real brokers, each started once per session.

`broker` is parametrized over Apache Kafka and Tansu, so every test that uses
it runs against both (ids `kafka` and `tansu`). Select one with `-k kafka`.
"""

from __future__ import annotations

import gc
from pathlib import Path
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


# Rarely, under load, a closed kafka-python client leaves a connected socket to
# the garbage collector; with warnings as errors its ResourceWarning would fail
# whichever test the collector happens to run in. Integration tests tolerate
# that one warning, and collect after each test so it is not carried further.
_LEAKED_CLIENT_SOCKET = "ignore:unclosed <socket.socket:ResourceWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Let this folder's tests, and only them, tolerate kafka-python's leaked sockets."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(_LEAKED_CLIENT_SOCKET))


@pytest.fixture(autouse=True)
def _collect_leaked_client_sockets() -> Iterator[None]:
    """Collect garbage after each test, while its warning filters still apply."""
    yield
    gc.collect()
