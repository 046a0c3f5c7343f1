"""Where a `PolicyClient` gets its policies: the policies topic, the daemon's HTTP, a file.

Thin edges: each one only moves bytes or parsed documents into the client,
which folds, verifies and validates them. Documents are parsed with the
client's reader (`parse_json`), so a policy with a repeated key is refused
there like one from the topic; a repeat in the answer's own frame (a segment
named twice) refuses the whole answer. The topic and HTTP followers run
in a background thread each and stop on `close()`. The HTTP follower reads
every page of the daemon's paged `/policies` on each poll and offers them as
one snapshot, so a node following a daemon with many segments holds them all.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Self

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stopbandit.policies.admission import DuplicateKey, parse_json

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from stopbandit.policies.client import PolicyClient

log = structlog.get_logger(__name__)

_POLL_TIMEOUT_MS = 200
_RETRY_MAX_S = 5.0
# 100,000 policies at the daemon's default page of 1,000: well past what a fleet of
# partitions holds at their default segment limit, and a bound on one poll's memory.
HTTP_MAX_PAGES = 100


def policy_documents(payload: Any) -> list[Any]:  # noqa: ANN401 - parsed JSON of any shape
    """The policy documents in a `/policies` answer or a policies file.

    Accepted shapes: a list of policies, a mapping of segment to policy, or
    either of those under a `"policies"` key.

    Raises:
        ValueError: the answer's frame repeats a key (`"policies"` or a segment),
            so it has no single meaning.
    """
    if isinstance(payload, dict) and "policies" in payload:
        payload = payload["policies"]
    if isinstance(payload, DuplicateKey):
        raise ValueError(f"policies: duplicate key {payload.key!r}")  # noqa: TRY004 - bad data
    if isinstance(payload, dict):
        return list(payload.values())
    if isinstance(payload, list):
        return payload
    return []


def load_policy_file(client: PolicyClient, path: Path) -> int:
    """Offer every policy of a JSON file to `client`.

    Returns:
        How many were newer than what the client held.

    Raises:
        ValueError: the file cannot be read, is not JSON, or names a segment twice.
    """
    try:
        payload = parse_json(path.read_bytes())
        documents = policy_documents(payload)
    except (OSError, ValueError) as error:
        raise ValueError(f"policies file {path}: cannot read ({error})") from None
    return sum(client.offer_document(document) for document in documents)


class _Follower(ABC):
    """A daemon thread running `_run` until `close()`."""

    name = "policy-source"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._guarded_run, name=self.name, daemon=True)

    def start(self) -> Self:
        """Start following in the background."""
        self._thread.start()
        return self

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Whether the first full read (topic to its end, or all HTTP pages once) ended in time."""
        return self._caught_up.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop following and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _guarded_run(self) -> None:
        backoff_s = 0.1
        while not self._stop.is_set():
            try:
                self._run()
            except (KafkaError, OSError, ValueError) as error:
                log.warning(
                    "policy_source.retry", source=self.name, error=repr(error), wait_s=backoff_s
                )
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, _RETRY_MAX_S)
            else:
                return

    @abstractmethod
    def _run(self) -> None:
        """Follow the source until stopped; raise to be retried after a backoff."""


class TopicFollower(_Follower):
    """Reads the policies topic from the beginning into a client, then keeps following.

    Every partition is assigned directly (no consumer group: each node needs
    all policies). Folding in the client makes a full re-read safe, so after
    a connection failure the follower simply starts over from the beginning.

    Args:
        client: the client to feed.
        bootstrap_servers: the brokers.
        topic: the policies topic.
        **consumer_settings: further kafka-python `KafkaConsumer` settings (security, ...).
    """

    name = "policy-topic"

    def __init__(
        self,
        client: PolicyClient,
        bootstrap_servers: str | list[str],
        topic: str,
        **consumer_settings: Any,  # noqa: ANN401 - passed through to kafka-python
    ) -> None:
        super().__init__()
        self.client = client
        self.topic = topic
        self._bootstrap_servers = bootstrap_servers
        self._settings = consumer_settings
        self._positions: dict[int, int] = {}
        self._moved = threading.Condition()

    def position(self) -> dict[int, int]:
        """Next offset to read, per partition (everything before it has been applied)."""
        with self._moved:
            return dict(self._positions)

    def wait_position(self, offsets: dict[int, int], timeout_s: float) -> bool:
        """Block until every record before `offsets` (partition -> offset) has been applied.

        Returns:
            Whether that happened within `timeout_s`.
        """
        with self._moved:
            return self._moved.wait_for(
                lambda: all(self._positions.get(p, 0) >= o for p, o in offsets.items()),
                timeout=timeout_s,
            )

    def _run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            enable_auto_commit=False,
            client_id="stopbandit-policies",
            **self._settings,
        )
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                raise ValueError(f"topic {self.topic}: no partitions (does it exist?)")
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning()
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=_POLL_TIMEOUT_MS)
                for tp, records in batches.items():
                    for record in records:
                        self.client.offer(record.key, record.value)
                    with self._moved:
                        self._positions[tp.partition] = records[-1].offset + 1
                        self._moved.notify_all()
                if not self._caught_up.is_set() and self._at_end(consumer, assigned):
                    self._caught_up.set()
                    log.info(
                        "policy_source.caught_up", topic=self.topic, held=len(self.client.policies)
                    )
        finally:
            consumer.close()

    def _at_end(self, consumer: KafkaConsumer, assigned: list[TopicPartition]) -> bool:
        # The fetch high-water mark, not end_offsets: Tansu's ListOffsets is short after batches.
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None or consumer.position(tp) < highwater:
                return False
        return True


def _next_cursor(payload: Any) -> str | None:  # noqa: ANN401 - parsed JSON of any shape
    """The `next` of a paged `/policies` answer: None on its last page and for unpaged shapes.

    Raises:
        ValueError: `next` is neither a string nor null.
    """
    if not isinstance(payload, dict) or "policies" not in payload:
        return None
    cursor = payload.get("next")
    if cursor is None or isinstance(cursor, str):
        return cursor
    raise ValueError(f"next: {cursor!r} is not a string or null")


def _page_url(url: str, after: str) -> str:
    """`url` asking for the page after `after`; its other parameters (`limit`) are kept."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(name, value) for name, value in query if name != "after"]
    query.append(("after", after))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class HttpPoller(_Follower):
    """Polls the daemon's `/policies` endpoint into a client.

    Each poll follows `next` (passed back as `after`) until it is null, then
    offers every page's policies together: a poll that fails on any page
    offers nothing and is retried, so the client keeps what it held. An
    endpoint answering a list, a mapping or a policies file (no `next`) is one
    page.

    Args:
        client: the client to feed.
        url: the endpoint, e.g. `http://controller:8080/policies` (a `limit`
            parameter in it sets the page size and is sent with every page).
        interval_s: time between polls.
        timeout_s: per-request timeout.
        max_pages: pages read in one poll; past them the poll offers what it
            read and logs a warning (`policy_source.pages_capped`).
    """

    name = "policy-http"

    def __init__(
        self,
        client: PolicyClient,
        url: str,
        *,
        interval_s: float = 5.0,
        timeout_s: float = 5.0,
        max_pages: int = HTTP_MAX_PAGES,
    ) -> None:
        super().__init__()
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url: {url!r} is not an http(s) URL")
        if max_pages < 1:
            raise ValueError(f"max_pages: {max_pages} is not at least 1")
        self.client = client
        self.url = url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_pages = max_pages

    def poll_once(self) -> int:
        """Fetch every page of the endpoint once and offer what they list.

        Returns:
            How many policies were newer than those held.

        Raises:
            OSError: a page could not be fetched (nothing is offered).
            ValueError: a page is not JSON, repeats a key of its frame, or
                its `next` names a cursor already followed (nothing is offered).
        """
        documents: list[Any] = []
        url, followed = self.url, set[str]()
        for _ in range(self.max_pages):
            payload = self._fetch(url)
            documents.extend(policy_documents(payload))
            cursor = _next_cursor(payload)
            if cursor is None:
                break
            if cursor in followed:
                raise ValueError(f"next: {cursor!r} does not advance (already followed)")
            followed.add(cursor)
            url = _page_url(self.url, cursor)
        else:
            log.warning(
                "policy_source.pages_capped",
                url=self.url,
                pages=self.max_pages,
                read=len(documents),
                next=cursor,
            )
        return sum(self.client.offer_document(d) for d in documents)

    def _fetch(self, url: str) -> Any:  # noqa: ANN401 - parsed JSON of any shape
        # The scheme is checked in __init__ and pages only add a query: only http(s) is opened.
        with urllib.request.urlopen(url, timeout=self.timeout_s) as response:  # noqa: S310
            return parse_json(response.read())

    def _run(self) -> None:
        while not self._stop.is_set():
            started_s = time.monotonic()
            newer = self.poll_once()
            self._caught_up.set()
            if newer:
                log.debug("policy_source.polled", url=self.url, newer=newer)
            self._stop.wait(max(self.interval_s - (time.monotonic() - started_s), 0.0))
