"""Helpers for the daemon's integration tests: simulated events, configs, subprocess daemons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from brokers import fold_latest, read_to_end
from kafka import KafkaProducer

from stopbandit.controller.commands.simulate import simulated_event_lines, simulation_config
from stopbandit.controller.config import StopbanditConfig, load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import DirCheckpointStore, KafkaCheckpointStore
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.streams.codec import decode

if TYPE_CHECKING:
    from brokers import Broker, Topics

STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")
HMAC_KEY = "test-signing-key"


@cache
def simulated_lines(interactions: int, seed: int) -> tuple[bytes, ...]:
    """The events (decision, outcome, ...) of a simulated fleet on the shipped scenario."""
    return tuple(simulated_event_lines(DEFAULT_SCENARIO, interactions, seed))


def segment_of(line: bytes) -> bytes:
    """The message key of an event line: its segment."""
    return str(json.loads(line)["segment"]).encode()


def produce(
    bootstrap_servers: str,
    topic: str,
    messages: list[tuple[bytes | None, bytes | None]],
    *,
    rate_per_s: float | None = None,
) -> None:
    """Produce keyed messages (optionally paced) and wait for every ack."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=10)
    started_s = time.monotonic()
    try:
        for index, (key, value) in enumerate(messages):
            producer.send(topic, key=key, value=value)
            if rate_per_s is not None and index % 500 == 0:
                ahead_s = index / rate_per_s - (time.monotonic() - started_s)
                if ahead_s > 0:
                    time.sleep(ahead_s)
        producer.flush()
    finally:
        producer.close()


def base_settings(
    broker: Broker, topics: Topics, tmp_path: Path, **overrides: Any
) -> dict[str, Any]:
    """A daemon config as plain data: the shipped scenario's arms, the test's topics."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    settings: dict[str, Any] = simulation_config(scenario, None).model_dump(mode="json")
    settings.update(
        {
            "kafka": {
                "bootstrap_servers": [broker.bootstrap_servers],
                "events_topic": topics.events,
                "policies_topic": topics.policies,
                "dlq_topic": topics.dlq,
                "group_id": f"stopbandit-{topics.events.rsplit('.', 1)[-1]}",
                "session_timeout_ms": 2000,
                "create_topics": True,
            },
            "checkpoint": {
                "store": "dir",
                "dir": str(tmp_path / "checkpoints"),
                "topic": f"{topics.events}.checkpoints",
                "interval_s": 1.0,
            },
            "publish": {"interval_s": 0.5, "hmac_key": HMAC_KEY},
            "http": {"host": "127.0.0.1", "port": 0},
            "log": {"format": "json", "level": "info"},
        }
    )
    for section, values in overrides.items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


def config_of(settings: dict[str, Any]) -> StopbanditConfig:
    """Validate settings as the daemon would."""
    return load_config(None, **settings)


def write_config(settings: dict[str, Any], path: Path) -> Path:
    """Write settings as the YAML file `stopbandit run --config` reads."""
    path.write_text(yaml.safe_dump(settings))
    return path


def reference_core(settings: dict[str, Any], lines: list[bytes]) -> ControllerCore:
    """A core fed the events in order, with the daemon's clock (the event-time watermark)."""
    core = ControllerCore(config_of(settings))
    watermark_s = 0.0
    for line in lines:
        event = decode(segment_of(line), line)
        watermark_s = max(watermark_s, event.ts)
        core.offer(event, watermark_s)
    return core


def folded_policies(bootstrap_servers: str, topic: str) -> dict[str, dict[str, Any]]:
    """The policies topic folded (last value per segment), parsed."""
    latest = fold_latest(read_to_end(bootstrap_servers, topic))
    return {key.decode(): json.loads(value) for key, value in latest.items()}


class DaemonProcess:
    """`stopbandit run --config FILE` as a child process, its log in a file."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [STOPBANDIT, "run", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events written so far."""
        parsed = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return parsed

    def owned(self) -> set[int]:
        """The partitions it holds now, from its log's restore and revoke events."""
        held: set[int] = set()
        for event in self.events():
            if event["event"] == "partition.restored":
                held.add(event["partition"])
            elif event["event"] == "partitions.revoked":
                held.difference_update(event["partitions"])
        return held

    def restored(self) -> bool:
        """Whether it restored (and so consumes) at least one partition."""
        return any(e.get("event") == "partition.restored" for e in self.events())

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.process.kill()
        self.process.wait()
        self._log.close()

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()
        return code


def learned_in_checkpoints(config: StopbanditConfig, partitions: int) -> tuple[int, int]:
    """(interactions learned, events pending in the join), summed over the checkpoints."""
    if config.checkpoint.store == "dir":
        store: Any = DirCheckpointStore(config.checkpoint.dir)
    else:
        store = KafkaCheckpointStore(config.kafka, None, config.checkpoint.topic)  # type: ignore[arg-type]
    learned = pending = 0
    for partition in range(partitions):
        checkpoint = store.load(config.kafka.events_topic, partition)
        if checkpoint is None:
            continue
        learned += int(checkpoint.state["learner"]["learned"])
        join = checkpoint.state["join"]
        pending += len(join["decisions"]) + len(join["outcomes"])
    return learned, pending


def wait_for(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.5) -> None:
    """Poll `predicate` until true; fail with `what` after `timeout_s`."""
    deadline_s = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
