"""EmbeddedTansu's life cycle: start, reach, stop, and failing loudly."""

from __future__ import annotations

import gc
import os
import socket
import stat
from typing import TYPE_CHECKING

import pytest
from kafka import KafkaConsumer

import stopbandit.streams.embedded
from stopbandit.streams.embedded import BrokerStartError, EmbeddedTansu, pick_free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def fake_binary(tmp_path: Path, body: str) -> str:
    """A stand-in for `tansu`: a shell script with the given body."""
    path = tmp_path / "fake-tansu"
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_started_broker_answers_a_client_and_stop_reaps_it() -> None:
    """Inside the context a client lists topics; after it the process has exited."""
    with EmbeddedTansu() as broker:
        process = broker._process
        assert broker.bootstrap_servers.startswith("127.0.0.1:")
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
        try:
            assert consumer.topics() == set()
        finally:
            consumer.close()
    assert process is not None
    assert process.returncode is not None
    assert not broker.running


def test_stop_is_idempotent() -> None:
    """Stopping twice, or before starting, does nothing the second time."""
    broker = EmbeddedTansu()
    broker.stop()
    broker.start()
    broker.stop()
    broker.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = broker.bootstrap_servers


def test_forgotten_broker_is_terminated_when_collected() -> None:
    """A broker nobody stopped dies with its owner object, leaving no orphan."""
    broker = EmbeddedTansu().start()
    process = broker._process
    assert process is not None
    del broker
    gc.collect()
    assert process.returncode is not None


def test_exit_at_start_raises_with_the_output_tail(tmp_path: Path) -> None:
    """A binary that dies at once gives an error quoting what it printed."""
    binary = fake_binary(tmp_path, "echo 'cannot open storage' >&2; exit 3")
    with pytest.raises(BrokerStartError, match="code 3") as caught:
        EmbeddedTansu(binary=binary).start()
    assert "cannot open storage" in caught.value.log_tail


def test_silent_binary_times_out_and_is_reaped(tmp_path: Path) -> None:
    """A process that never answers is given up on and killed, not left behind."""
    pid_file = tmp_path / "pid"
    binary = fake_binary(tmp_path, f"echo $$ > {pid_file}; exec sleep 60")
    with pytest.raises(BrokerStartError, match="no answer"):
        EmbeddedTansu(binary=binary, startup_timeout_s=0.5).start()
    pid = int(pid_file.read_text(encoding="utf-8"))
    # Signal 0 only checks existence; the reaped process must be gone.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_taken_port_is_retried_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the picked port is taken before Tansu binds it, start tries a new one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, pick_free_port()])
        monkeypatch.setattr(stopbandit.streams.embedded, "pick_free_port", lambda: next(ports))
        with EmbeddedTansu() as broker:
            assert broker.port != taken
