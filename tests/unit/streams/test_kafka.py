"""The broker edge: jittered retries a stop request ends, and the topics the daemon creates."""

from __future__ import annotations

import itertools

import pytest
from kafka.errors import KafkaTimeoutError
from structlog.testing import capture_logs

from stopbandit.streams import kafka as kafka_edge
from stopbandit.streams.kafka import RETRY_MAX_S, TopicSpec, ensure_topics, retry_until_up
from stopbandit.streams.kafka_config import KafkaConfig


class _Clock:
    """A monotonic clock that `time.sleep` advances, so no test really waits."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.slept_s: list[float] = []

    def monotonic(self) -> float:
        return self.now_s

    def sleep(self, delay_s: float) -> None:
        self.slept_s.append(delay_s)
        self.now_s += delay_s


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """The fake clock, with time.sleep of the broker edge patched to advance it."""
    fake = _Clock()
    monkeypatch.setattr(kafka_edge.time, "sleep", fake.sleep)
    return fake


def _failing(clock: _Clock, times: int) -> tuple[list[float], object]:
    """An action that fails `times` times, recording the clock at each attempt."""
    attempts_s: list[float] = []

    def action() -> str:
        attempts_s.append(clock.now_s)
        if len(attempts_s) <= times:
            raise KafkaTimeoutError
        return "up"

    return attempts_s, action


def test_retries_until_the_broker_answers_with_jittered_capped_waits(clock: _Clock) -> None:
    """Twelve failures, then success; wait k is at most 0.2 s * 2^k and never above 10 s."""
    attempts_s, action = _failing(clock, 12)
    result = retry_until_up("x", action, monotonic=clock.monotonic, stopping=lambda: False)  # type: ignore[arg-type]
    assert result == "up"
    assert len(attempts_s) == 13
    waits_s = [b - a for a, b in itertools.pairwise(attempts_s)]
    for k, wait_s in enumerate(waits_s):
        assert 0 <= wait_s <= min(RETRY_MAX_S, 0.2 * 2**k) + 0.1 + 1e-9
    assert len(set(waits_s)) > 1
    # Slept in slices of at most 0.1 s, so that a stop request is seen quickly.
    assert max(clock.slept_s) <= 0.1 + 1e-9


def test_waits_differ_between_runs(clock: _Clock) -> None:
    """Full jitter: two replicas that lost the same broker do not retry in step."""
    totals = []
    for _ in range(2):
        before_s = clock.now_s
        _, action = _failing(clock, 6)
        retry_until_up("x", action, monotonic=clock.monotonic, stopping=lambda: False)  # type: ignore[arg-type]
        totals.append(clock.now_s - before_s)
    assert totals[0] != totals[1]
    assert all(total <= 0.2 * (2**7) + 1 for total in totals)


def test_a_stop_request_ends_the_retries_with_the_last_error(clock: _Clock) -> None:
    """Stopping during a wait: the wait ends within 0.1 s and the broker's error is raised."""
    stop_at_s = 0.35

    def stopping() -> bool:
        return clock.now_s >= stop_at_s

    _, action = _failing(clock, 10**6)
    with pytest.raises(KafkaTimeoutError):
        retry_until_up("x", action, monotonic=clock.monotonic, stopping=stopping)  # type: ignore[arg-type]
    assert clock.now_s < stop_at_s + 0.1 + 1e-9


class _Admin:
    """The admin calls ensure_topics makes, on a cluster of `brokers` with no topics."""

    def __init__(self, brokers: int) -> None:
        self.brokers = brokers
        self.created: list[object] = []

    def list_topics(self) -> list[str]:
        return []

    def describe_cluster(self) -> dict[str, list[dict[str, int]]]:
        return {"brokers": [{"broker_id": i} for i in range(self.brokers)]}

    def create_topics(self, topics: list[object], **_: object) -> None:
        self.created += topics

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("brokers", "configured", "replicas", "warned"),
    [
        (1, None, 1, True),
        (2, None, 2, True),
        (3, None, 3, False),
        (5, None, 3, False),
        (5, 5, 5, False),
    ],
)
def test_created_topics_are_replicated_three_ways_or_by_every_broker_of_a_smaller_cluster(
    monkeypatch: pytest.MonkeyPatch,
    brokers: int,
    configured: int | None,
    replicas: int,
    warned: bool,
) -> None:
    """Default 3 (capped at the cluster, with a warning); compacted state; min.insync 2 at 3+."""
    admin = _Admin(brokers)
    monkeypatch.setattr(kafka_edge, "KafkaAdminClient", lambda **_: admin)
    config = KafkaConfig(create_topics=True, replication_factor=configured)
    with capture_logs() as logs:
        created = ensure_topics(
            config, [TopicSpec("events", 6), TopicSpec("policies", 1, compact=True)]
        )
    assert created == ["events", "policies"]
    events, policies = admin.created
    assert (events.replication_factor, policies.replication_factor) == (replicas, replicas)  # type: ignore[attr-defined]
    assert policies.topic_configs["cleanup.policy"] == "compact"  # type: ignore[attr-defined]
    assert "cleanup.policy" not in events.topic_configs  # type: ignore[attr-defined]
    insync = policies.topic_configs.get("min.insync.replicas")  # type: ignore[attr-defined]
    assert insync == ("2" if replicas >= 3 else None)
    assert any(e["event"] == "topics.under_replicated" for e in logs) == warned
