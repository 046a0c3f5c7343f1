"""Broker retries: jittered, bounded, and a stop request ends them promptly."""

from __future__ import annotations

import itertools

import pytest
from kafka.errors import KafkaTimeoutError

from stopbandit.streams import kafka as kafka_edge
from stopbandit.streams.kafka import RETRY_MAX_S, retry_until_up


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
