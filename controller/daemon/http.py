"""The daemon's HTTP endpoint: /metrics, /healthz, /readyz, /policies, /savings (stdlib).

Handlers only read: the registry (thread-safe), two flags and a copy of the
published policies, so the loop never waits for a scrape. They read them
through `DaemonView`, so this module knows nothing else of the daemon.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.streams.events import Policy

log = structlog.get_logger(__name__)


class DaemonView(Protocol):
    """What the endpoint reads of the daemon (`controller.daemon.loop.Daemon`), from its threads."""

    @property
    def metrics(self) -> Metrics:
        """The daemon's metrics (their registry is what /metrics serves)."""

    @property
    def healthy(self) -> bool:
        """Whether the loop came round recently (/healthz)."""

    @property
    def ready(self) -> bool:
        """Whether the daemon owns, restored and published its partitions (/readyz)."""

    def policies(self) -> Mapping[str, Policy]:
        """A copy of the policies last published, by segment (/policies)."""

    def savings(self) -> Mapping[str, Any]:
        """Controlled vs control EM and tokens as of the last publish (/savings)."""


def _handler_for(daemon: DaemonView) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(daemon.metrics.registry))
            elif self.path == "/healthz":
                ok = daemon.healthy
                self._send(200 if ok else 503, "text/plain", b"ok\n" if ok else b"stale\n")
            elif self.path == "/readyz":
                ok = daemon.ready
                self._send(200 if ok else 503, "text/plain", b"ready\n" if ok else b"not ready\n")
            elif self.path == "/policies":
                body = {
                    s: p.model_dump(mode="json", exclude_none=True)
                    for s, p in daemon.policies().items()
                }
                self._send(200, "application/json", json.dumps(body, sort_keys=True).encode())
            elif self.path == "/savings":
                savings = json.dumps(daemon.savings(), sort_keys=True, allow_nan=False)
                self._send(200, "application/json", savings.encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            """Silence the stdlib's per-request stderr lines (probes would flood the log)."""

    return Handler


class HttpServer:
    """Serves the daemon's endpoints from a background thread."""

    def __init__(self, daemon: DaemonView, host: str, port: int) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler_for(daemon))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stopbandit-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked for a free one)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving."""
        self._thread.start()
        log.info("http.started", port=self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
