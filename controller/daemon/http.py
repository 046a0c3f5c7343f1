"""The daemon's HTTP endpoint: /metrics, /healthz, /readyz, /policies, /savings (waitress).

/policies is paged, so one answer stays bounded however many segments the
daemon holds: `{"policies": {segment: policy, ...}, "next": cursor}` in
segment order, at most `limit` (default `POLICIES_PAGE`, at most
`POLICIES_PAGE_MAX`) per page, from the first segment after `after`; `next`
is the last segment of the page while more follow (pass it as `after`), else
null. `?segment=S` answers S's policy alone (404 if there is none).

Handlers only read: the registry (thread-safe), two flags and a copy of the
published policies, so the loop never waits for a scrape. They read them
through `DaemonView`, so this module knows nothing else of the daemon.
"""

from __future__ import annotations

import bisect
import json
import threading
import urllib.parse
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
Query = dict[str, list[str]]

POLICIES_PAGE = 1000
POLICIES_PAGE_MAX = 10_000


def _metrics(daemon: DaemonView, _: Query) -> Response:
    return 200, CONTENT_TYPE_LATEST, generate_latest(daemon.metrics.registry)


def _healthz(daemon: DaemonView, _: Query) -> Response:
    return (200, "text/plain", b"ok\n") if daemon.healthy else (503, "text/plain", b"stale\n")


def _readyz(daemon: DaemonView, _: Query) -> Response:
    ok = daemon.ready
    return (200, "text/plain", b"ready\n") if ok else (503, "text/plain", b"not ready\n")


def _bad_request(reason: str) -> Response:
    return 400, "text/plain", f"{reason}\n".encode()


def _page(policies: Mapping[str, Policy], next_segment: str | None) -> Response:
    body = {
        "policies": {s: p.model_dump(mode="json", exclude_none=True) for s, p in policies.items()},
        "next": next_segment,
    }
    return 200, "application/json", json.dumps(body, sort_keys=True).encode()


def _policies(daemon: DaemonView, query: Query) -> Response:
    unknown = query.keys() - {"segment", "after", "limit"}
    if unknown:
        return _bad_request(f"unknown parameter {min(unknown)!r} (segment, after, limit)")
    if any(len(values) > 1 for values in query.values()):
        return _bad_request("each parameter at most once")
    policies = daemon.policies()
    if "segment" in query:
        segment = query["segment"][0]
        policy = policies.get(segment)
        if policy is None:
            return 404, "text/plain", b"no policy for that segment\n"
        return _page({segment: policy}, None)
    limit_text = query.get("limit", [str(POLICIES_PAGE)])[0]
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= POLICIES_PAGE_MAX:
        return _bad_request(f"limit: an integer from 1 to {POLICIES_PAGE_MAX}")
    limit = int(limit_text)
    segments = sorted(policies)
    start = bisect.bisect_right(segments, query["after"][0]) if "after" in query else 0
    names = segments[start : start + limit]
    more = start + limit < len(segments)
    return _page({s: policies[s] for s in names}, names[-1] if more and names else None)


def _savings(daemon: DaemonView, _: Query) -> Response:
    savings = json.dumps(daemon.savings(), sort_keys=True, allow_nan=False)
    return 200, "application/json", savings.encode()


ROUTES: dict[str, Callable[[DaemonView, Query], Response]] = {
    "/metrics": _metrics,
    "/healthz": _healthz,
    "/readyz": _readyz,
    "/policies": _policies,
    "/savings": _savings,
}


def respond(daemon: DaemonView, method: str, path: str, query: str = "") -> Response:
    """(status, content type, body) of one request: the whole API, without a server."""
    if method not in {"GET", "HEAD"}:
        return 405, "text/plain", b"method not allowed\n"
    route = ROUTES.get(path)
    if route is None:
        return 404, "text/plain", b"not found\n"
    return route(daemon, urllib.parse.parse_qs(query, keep_blank_values=True))


def wsgi_app(daemon: DaemonView) -> WSGIApplication:
    """The API as a WSGI application (waitress serves it; tests may call it directly)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path, query = environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", "")
        status, content_type, body = respond(daemon, method, path, query)
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
