"""The HTTP endpoint: the API's answers, and probes that slow clients cannot starve."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from stopbandit.controller.daemon.http import (
    POLICIES_PAGE,
    POLICIES_PAGE_MAX,
    HttpServer,
    respond,
)
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.policies.sources import policy_documents
from stopbandit.streams.events import Policy

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

SLOW_CLIENTS = 2000


class _View:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.healthy = True
        self.ready = False

    def policies(self) -> Mapping[str, Policy]:
        return {}

    def savings(self) -> Mapping[str, Any]:
        return {"fleet": None}


@pytest.fixture
def server() -> Iterator[HttpServer]:
    """A running endpoint on a free loopback port."""
    http = HttpServer(_View(), "127.0.0.1", 0)
    http.start()
    yield http
    http.stop()


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_routes_answer_and_unknown_ones_are_404() -> None:
    """Each path's status and type; other methods 405; no server needed to check the API."""
    view = _View()
    assert respond(view, "GET", "/healthz") == (200, "text/plain", b"ok\n")
    assert respond(view, "GET", "/readyz")[0] == 503
    assert respond(view, "GET", "/savings") == (200, "application/json", b'{"fleet": null}')
    assert respond(view, "GET", "/metrics")[1].startswith("text/plain; version=")
    assert respond(view, "GET", "/nope")[0] == 404
    assert respond(view, "POST", "/healthz")[0] == 405
    view.healthy = False
    assert respond(view, "GET", "/healthz")[0] == 503


def test_the_server_header_names_no_python_or_server_version(server: HttpServer) -> None:
    """`Server: stopbandit`, not `BaseHTTP/0.6 Python/3.11.7`."""
    status, headers, body = _get(server.port, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["Server"] == "stopbandit"
    head_status, _, head_body = _get(server.port, "/healthz", method="HEAD")
    assert (head_status, head_body) == (200, b"")


@pytest.mark.slow
def test_healthz_answers_while_2000_slow_clients_hold_connections(server: HttpServer) -> None:
    """Slowloris: 2,000 connections send half a request and stall; probes still answer.

    No thread is made per connection, and the connections are closed when the clients leave.
    """
    baseline = threading.active_count()
    stalled: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            stalled.append(client)
        time.sleep(0.5)
        threads_meanwhile = threading.active_count()
        answers = [_get(server.port, "/healthz")[0] for _ in range(50)]
    finally:
        for client in stalled:
            client.close()
    assert answers == [200] * 50
    assert threads_meanwhile == baseline, "a thread per slow connection"
    time.sleep(0.5)
    assert threading.active_count() == baseline
    assert _get(server.port, "/healthz")[0] == 200


class _Policies(_View):
    def __init__(self, segments: int) -> None:
        super().__init__()
        self._policies = {
            f"seg{i:04d}": Policy(
                segment=f"seg{i:04d}",
                version=i + 1,
                issued_at=1.0,
                arms=[0.5, 1.0],
                pmf=[0.1, 0.9],
                greedy=1.0,
            )
            for i in range(segments)
        }

    def policies(self) -> Mapping[str, Policy]:
        return dict(self._policies)


def _json(view: _View, query: str) -> tuple[int, Any]:
    status, _, body = respond(view, "GET", "/policies", query)
    return status, json.loads(body) if status == 200 else body


def test_policies_are_paged_in_segment_order_with_a_cursor() -> None:
    """Pages of `limit` follow `next` until null; together they hold every policy once."""
    view = _Policies(25)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        status, page = _json(view, "limit=10" + (f"&after={cursor}" if cursor else ""))
        assert status == 200
        seen += list(page["policies"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
        assert cursor == seen[-1]
    assert pages == 3
    assert seen == sorted(f"seg{i:04d}" for i in range(25))


def test_policies_default_page_is_bounded() -> None:
    """Without parameters, at most POLICIES_PAGE policies, and a cursor to the rest."""
    view = _Policies(POLICIES_PAGE + 5)
    status, page = _json(view, "")
    assert status == 200
    assert len(page["policies"]) == POLICIES_PAGE
    assert page["next"] == f"seg{POLICIES_PAGE - 1:04d}"
    assert policy_documents(page)[0]["segment"] == "seg0000"  # the client reads the page


def test_policies_of_one_segment_and_bad_queries() -> None:
    """?segment= answers one policy (404 if none); bad limits and unknown parameters are 400."""
    view = _Policies(3)
    status, page = _json(view, "segment=seg0001")
    assert (status, list(page["policies"]), page["next"]) == (200, ["seg0001"], None)
    assert respond(view, "GET", "/policies", "segment=nope")[0] == 404
    for query in (
        "limit=0",
        "limit=x",
        f"limit={POLICIES_PAGE_MAX + 1}",
        "page=2",
        "limit=1&limit=2",
    ):
        assert respond(view, "GET", "/policies", query)[0] == 400, query


def test_the_server_passes_the_query_string(server: HttpServer) -> None:
    """Through waitress: a bad limit is refused, a good one answers a page."""
    assert _get(server.port, "/policies?limit=0")[0] == 400
    status, _, body = _get(server.port, "/policies?limit=5")
    assert (status, json.loads(body)) == (200, {"next": None, "policies": {}})
