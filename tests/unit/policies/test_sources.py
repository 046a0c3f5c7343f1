"""EventEmitter's bounded queue, and the HTTP and file policy sources (no broker needed)."""

from __future__ import annotations

import bisect
import contextlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

import stopbandit.policies.emitter
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.emitter import EventEmitter
from stopbandit.policies.sources import HttpPoller, load_policy_file, policy_documents
from stopbandit.streams.events import Outcome, Policy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ARMS = [0.5, 0.9, 1.0]


def policy_document(segment: str, version: int) -> dict[str, Any]:
    """A valid policy document with its greedy arm at 0.9."""
    policy = Policy(
        segment=segment, version=version, issued_at=0.0, arms=ARMS, pmf=[0, 1, 0], greedy=0.9
    )
    return policy.model_dump(mode="json", exclude_none=True)


class BlockedProducer:
    """Stands in for KafkaProducer; `send` waits until the test releases it."""

    def __init__(self, **_settings: Any) -> None:
        self.release = threading.Event()
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> Any:
        """Wait for the release, then record the message."""
        self.release.wait(10.0)
        self.sent.append((topic, key, value))
        return DoneFuture()

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is buffered."""

    def close(self, timeout: float | None = None) -> None:
        """Nothing to release."""


class DoneFuture:
    """A delivered send: callbacks run at once."""

    def add_callback(self, callback: Any) -> None:
        """Already delivered: call back now."""
        callback(None)

    def add_errback(self, _errback: Any) -> None:
        """Never fails."""


def outcome(i: int) -> Outcome:
    """A small valid outcome."""
    return Outcome(v=1, request_id=f"r{i}", ts=0.0, segment="s", em=1.0, tokens=i)


def test_emit_drops_and_counts_when_the_queue_is_full(monkeypatch):
    """With the sender stuck, emit returns False at once past the queue size, and logs the drop."""
    producers: list[BlockedProducer] = []

    def make(**settings: Any) -> BlockedProducer:
        producers.append(BlockedProducer(**settings))
        return producers[-1]

    monkeypatch.setattr(stopbandit.policies.emitter, "KafkaProducer", make)
    emitter = EventEmitter("127.0.0.1:1", "events", queue_size=5)
    with capture_logs() as logs:
        results = [emitter.emit(outcome(i)) for i in range(20)]
    # One event may already sit in the sender's hands, so 5 or 6 get in.
    assert results.count(True) in (5, 6)
    assert emitter.stats.dropped == 20 - results.count(True)
    assert any(e["event"] == "emitter.dropped" for e in logs)
    producers[0].release.set()
    assert emitter.flush(timeout_s=10.0)
    emitter.close()
    assert emitter.stats.sent == results.count(True)
    assert [key for _, key, _ in producers[0].sent] == [b"s"] * results.count(True)
    assert not emitter.emit(outcome(99))  # closed


@pytest.mark.parametrize(
    "shape",
    [
        lambda docs: docs,
        lambda docs: {d["segment"]: d for d in docs},
        lambda docs: {"policies": docs},
        lambda docs: {"policies": {d["segment"]: d for d in docs}},
    ],
)
def test_policy_documents_accepts_lists_and_mappings(shape):
    """Every documented shape of a policies file or /policies answer yields the documents."""
    docs = [policy_document("a", 1), policy_document("*", 2)]
    assert policy_documents(shape(docs)) == docs


def test_policy_file_is_folded_into_the_client(tmp_path: Path):
    """A policies file loads through the same version and schema rules."""
    path = tmp_path / "policies.json"
    path.write_text(json.dumps([policy_document("a", 2), policy_document("a", 1), {"bad": 1}]))
    client = PolicyClient(fallback_threshold=1.0)
    assert load_policy_file(client, path) == 1
    assert client.version("a") == 2
    assert client.rejected["schema"] == 1
    with pytest.raises(ValueError, match="cannot read"):
        load_policy_file(client, tmp_path / "missing.json")


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server with `handler` in a thread; yields its /policies URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/policies"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def policies_server() -> Iterator[tuple[str, list[Any]]]:
    """A loopback HTTP server answering /policies with whatever the test puts in the list."""
    answer: list[Any] = [{"policies": {}}]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raw = answer[0]
            body = (raw if isinstance(raw, RawJson) else json.dumps(raw)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url, answer


def test_http_poller_follows_the_endpoint(policies_server):
    """Each poll offers what the endpoint lists; newer versions replace older ones."""
    url, answer = policies_server
    client = PolicyClient(fallback_threshold=1.0)
    poller = HttpPoller(client, url, interval_s=0.05)
    answer[0] = {"policies": {"a": policy_document("a", 1)}}
    assert poller.poll_once() == 1
    assert poller.poll_once() == 0
    with poller:
        answer[0] = {"policies": {"a": policy_document("a", 4)}}
        assert client.wait_for(4, timeout_s=10.0)
    assert client.version("a") == 4


def test_http_poller_refuses_non_http_urls():
    """A file: or other URL is a configuration error, caught before any request."""
    with pytest.raises(ValueError, match="url"):
        HttpPoller(PolicyClient(fallback_threshold=1.0), "file:///etc/passwd")


def _with_duplicated_pmf(document: dict[str, Any]) -> str:
    """The JSON text of a policy document whose `pmf` is written twice."""
    return json.dumps(document)[:-1] + ', "pmf": [1, 0, 0]}'


def test_policy_file_with_a_duplicated_key_rejects_only_that_policy(tmp_path: Path):
    """One policy with `pmf` twice is refused; the file's other policies still load."""
    path = tmp_path / "policies.json"
    good = json.dumps(policy_document("b", 1))
    path.write_text(f"[{_with_duplicated_pmf(policy_document('a', 2))}, {good}]")
    client = PolicyClient(fallback_threshold=1.0)
    assert load_policy_file(client, path) == 1
    assert client.version("a") == 0
    assert client.version("b") == 1
    assert client.rejected["json"] == 1


def test_policy_file_with_a_duplicated_segment_is_refused_whole(tmp_path: Path):
    """A mapping naming one segment twice has no single meaning: the file is an error."""
    path = tmp_path / "policies.json"
    doc = json.dumps(policy_document("a", 1))
    path.write_text(f'{{"a": {doc}, "a": {doc}}}')
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        load_policy_file(PolicyClient(fallback_threshold=1.0), path)


def test_http_answer_with_a_duplicated_key_rejects_that_policy(policies_server):
    """Over HTTP as from the topic: a policy with a key twice is not held, the others are."""
    url, answer = policies_server
    client = PolicyClient(fallback_threshold=1.0)
    answer[0] = RawJson(
        f'{{"policies": [{_with_duplicated_pmf(policy_document("a", 1))}, '
        f"{json.dumps(policy_document('b', 1))}]}}"
    )
    assert HttpPoller(client, url).poll_once() == 1
    assert client.version("a") == 0
    assert client.rejected["json"] == 1


class RawJson(str):
    """An answer the test server sends as written, not through json.dumps."""

    __slots__ = ()


class PagedPolicies:
    """What the paged test server serves: the daemon's paging over `documents`, and faults."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.documents = documents
        self.failing_after: str | None = None  # the page after this cursor answers 500
        self.stuck = False  # `next` repeats the request's cursor (or the first page's)
        self.queries: list[dict[str, list[str]]] = []

    def answer(self, query: dict[str, list[str]]) -> tuple[int, bytes]:
        """(status, body) for one GET: segment order, at most `limit`, from after `after`."""
        self.queries.append(query)
        after = query.get("after", [None])[0]
        if after is not None and after == self.failing_after:
            return 500, b"broken\n"
        limit = int(query.get("limit", ["1000"])[0])
        segments = sorted(self.documents)
        start = bisect.bisect_right(segments, after) if after is not None else 0
        names = segments[start : start + limit]
        more = start + limit < len(segments)
        cursor = names[-1] if more and names else None
        if self.stuck:
            cursor = after or names[-1]
        body = {"policies": {s: self.documents[s] for s in names}, "next": cursor}
        return 200, json.dumps(body).encode()


@pytest.fixture
def paged_server() -> Iterator[tuple[str, PagedPolicies]]:
    """A loopback HTTP server paging seven segments' policies two at a time (`?limit=2`)."""
    served = PagedPolicies({f"s{i}": policy_document(f"s{i}", 1) for i in range(7)})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            status, body = served.answer(query)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield f"{url}?limit=2", served


def test_http_poller_reads_every_page(paged_server):
    """Four pages of two: the node holds all seven segments, asking with each page's `next`."""
    url, served = paged_server
    client = PolicyClient(fallback_threshold=1.0)
    assert HttpPoller(client, url).poll_once() == 7
    assert {s: client.version(s) for s in served.documents} == dict.fromkeys(served.documents, 1)
    assert [q.get("after") for q in served.queries] == [None, ["s1"], ["s3"], ["s5"]]
    assert all(q["limit"] == ["2"] for q in served.queries)
    served.documents = {s: policy_document(s, 3) for s in served.documents}
    with HttpPoller(client, url, interval_s=0.05) as poller:
        assert poller.wait_caught_up(timeout_s=10.0)
        assert client.wait_covers(dict.fromkeys(served.documents, 3), timeout_s=10.0)


def test_http_poller_refuses_a_cursor_that_does_not_advance(paged_server):
    """A `next` already followed is an error after two requests, not a loop; nothing is offered."""
    url, served = paged_server
    served.stuck = True
    client = PolicyClient(fallback_threshold=1.0)
    with pytest.raises(ValueError, match="does not advance"):
        HttpPoller(client, url).poll_once()
    assert len(served.queries) == 2
    assert client.policies == {}


def test_http_poller_keeps_what_it_held_when_a_page_fails(paged_server):
    """A failing second page fails the poll whole, so the held policies stay; the next takes all."""
    url, served = paged_server
    client = PolicyClient(fallback_threshold=1.0)
    poller = HttpPoller(client, url)
    assert poller.poll_once() == 7
    served.documents = {s: policy_document(s, 2) for s in served.documents}
    served.failing_after = "s1"
    with pytest.raises(OSError, match="500"):
        poller.poll_once()
    assert {s: client.version(s) for s in served.documents} == dict.fromkeys(served.documents, 1)
    served.failing_after = None
    assert poller.poll_once() == 7
    assert all(client.version(s) == 2 for s in served.documents)


def test_http_poller_stops_at_max_pages_with_a_warning(paged_server):
    """Past `max_pages` the poll offers the pages it read and says what it left."""
    url, served = paged_server
    client = PolicyClient(fallback_threshold=1.0)
    with capture_logs() as logs:
        assert HttpPoller(client, url, max_pages=2).poll_once() == 4
    assert len(served.queries) == 2
    assert sorted(client.policies) == ["s0", "s1", "s2", "s3"]
    capped = [e for e in logs if e["event"] == "policy_source.pages_capped"]
    assert [(e["pages"], e["next"]) for e in capped] == [(2, "s3")]
    with pytest.raises(ValueError, match="max_pages"):
        HttpPoller(client, url, max_pages=0)


@pytest.mark.parametrize(
    "shape",
    [
        lambda docs: docs,
        lambda docs: {d["segment"]: d for d in docs},
    ],
)
def test_http_poller_reads_an_unpaged_answer_as_one_page(policies_server, shape):
    """A list or a bare mapping (even with a segment called `next`) is the whole answer."""
    url, answer = policies_server
    answer[0] = shape([policy_document("next", 1), policy_document("b", 1)])
    client = PolicyClient(fallback_threshold=1.0)
    assert HttpPoller(client, url).poll_once() == 2
    assert sorted(client.policies) == ["b", "next"]
