"""The daemon's HTTP endpoint: /metrics, /healthz, /readyz, /policies, /savings (waitress).

Handlers only read: the registry (thread-safe), two flags and a copy of the
published policies, so the loop never waits for a scrape. They read them
through `DaemonView`, so this module knows nothing else of the daemon.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import waitress.server
import waitress.wasyncore
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

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


Response = tuple[int, str, bytes]


def _metrics(daemon: DaemonView) -> Response:
    return 200, CONTENT_TYPE_LATEST, generate_latest(daemon.metrics.registry)


def _healthz(daemon: DaemonView) -> Response:
    return (200, "text/plain", b"ok\n") if daemon.healthy else (503, "text/plain", b"stale\n")


def _readyz(daemon: DaemonView) -> Response:
    ok = daemon.ready
    return (200, "text/plain", b"ready\n") if ok else (503, "text/plain", b"not ready\n")


def _policies(daemon: DaemonView) -> Response:
    body = {s: p.model_dump(mode="json", exclude_none=True) for s, p in daemon.policies().items()}
    return 200, "application/json", json.dumps(body, sort_keys=True).encode()


def _savings(daemon: DaemonView) -> Response:
    savings = json.dumps(daemon.savings(), sort_keys=True, allow_nan=False)
    return 200, "application/json", savings.encode()


ROUTES: dict[str, Callable[[DaemonView], Response]] = {
    "/metrics": _metrics,
    "/healthz": _healthz,
    "/readyz": _readyz,
    "/policies": _policies,
    "/savings": _savings,
}


def respond(daemon: DaemonView, method: str, path: str) -> Response:
    """(status, content type, body) of one request: the whole API, without a server."""
    if method not in {"GET", "HEAD"}:
        return 405, "text/plain", b"method not allowed\n"
    route = ROUTES.get(path)
    return route(daemon) if route is not None else (404, "text/plain", b"not found\n")


def wsgi_app(daemon: DaemonView) -> WSGIApplication:
    """The API as a WSGI application (waitress serves it; tests may call it directly)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        status, content_type, body = respond(daemon, method, environ.get("PATH_INFO", "/"))
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [b"" if method == "HEAD" else body]

    return app


# Probes must answer while thousands of clients dawdle: waitress reads requests on one
# poll loop (no thread per connection) and hands only complete ones to its few threads.
HTTP_THREADS = 4
HTTP_CONNECTION_LIMIT = 4096
# A connection with no byte for this long is closed (a slow or stuck client).
HTTP_CHANNEL_TIMEOUT_S = 10


class HttpServer:
    """Serves the daemon's endpoints from a background thread (waitress)."""

    def __init__(self, daemon: DaemonView, host: str, port: int) -> None:
        self._map: dict[int, Any] = {}
        server = waitress.server.create_server(
            wsgi_app(daemon),
            map=self._map,
            host=host,
            port=port,
            threads=HTTP_THREADS,
            connection_limit=HTTP_CONNECTION_LIMIT,
            channel_timeout=HTTP_CHANNEL_TIMEOUT_S,
            cleanup_interval=HTTP_CHANNEL_TIMEOUT_S,
            asyncore_use_poll=True,  # select() cannot watch more than 1,024 sockets
            ident="stopbandit",  # the Server header: no Python or server version
            clear_untrusted_proxy_headers=True,
        )
        # One host and port give one TCP server (several would give a MultiSocketServer).
        assert isinstance(server, waitress.server.TcpWSGIServer)  # noqa: S101 - narrows the type
        self._server = server
        self._thread = threading.Thread(
            target=self._server.run, name="stopbandit-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked for a free one)."""
        return int(self._server.getsockname()[1])

    def start(self) -> None:
        """Start serving."""
        self._thread.start()
        log.info("http.started", port=self.port)

    def stop(self) -> None:
        """Stop serving: close the listening socket and every connection, end the threads."""
        self._server.task_dispatcher.shutdown()
        # Closing every channel of the poll loop's map (the listener too) ends its loop.
        waitress.wasyncore.close_all(self._map)
        self._thread.join(timeout=5)
